"""`navembed reembed` (the main job in this process, with a progress bar) and `navembed demo`."""

import argparse
from pathlib import Path

from navembed_pipeline.lib.errors import NavembedError


def register_reembed(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "reembed", help="embed the library now (the main job), with a progress bar",
        description="Run reembed_job over all 256 buckets in this process, on the Dagster instance under the "
                    "data dir (the run shows in the Dagster UI). Unchanged tracks are skipped. Reads "
                    "NAVEMBED_* settings (NAVEMBED_NAVIDROME_DB / NAVIDROME_DB_PATH is required).")
    cmd.add_argument("--models", nargs="+", help="models to embed with (default: NAVEMBED_MODELS, "
                                                 "'auto' = dsp + deep models whose weights are present)")
    cmd.add_argument("--force", action="store_true", help="re-embed unchanged tracks too")
    cmd.add_argument("--clear-existing", action="store_true",
                     help="rebuild each collection from scratch; search keeps the old vectors until done")
    cmd.add_argument("--workers", type=int, default=1, metavar="N",
                     help="embed with N worker processes over disjoint bucket ranges, each loading the model "
                          "once (default 1: in this process); a worker that dies is resumed")
    cmd.add_argument("--buckets", metavar="FIRST-LAST", type=_bucket_range,
                     help="only these buckets, e.g. 00-7f on one machine and 80-ff on another (default 00-ff)")
    cmd.add_argument("--job", metavar="ID", help="job id shared by the machines of one re-embed, so progress "
                                                 "shows their runs as one job (default: a new one)")
    cmd.add_argument("--data-dir", type=Path, help="navembed data dir (default: NAVEMBED_DATA_DIR or ./var)")
    cmd.add_argument("--navidrome-db", type=Path, help="Navidrome's navidrome.db")
    cmd.set_defaults(handler=_reembed)


def register_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "demo", help="the whole product on a generated library: stack up, main job via the API, playlists",
        description="Write the sample library, start the embedded stack (Milvus Lite, Dagster webserver "
                    "and daemon, API) on 127.0.0.1, run the main job through POST /batch/start with the "
                    "models available on this machine (dsp plus any deep model whose weights are "
                    "present) with a progress bar fed by GET /batch/progress, print a similar-track "
                    "playlist (and a text search when muq is enabled), then stop the stack. Exits "
                    "non-zero if anything fails.")
    cmd.add_argument("--dir", type=Path, default=Path("var/demo"), help="where to put everything "
                     "(library/ and data/; default var/demo)")
    cmd.add_argument("--seconds", type=float, default=20.0, help="length of each generated track (default 20)")
    cmd.add_argument("--dagster-port", type=int, help="Dagster UI port (default 3000, another if taken)")
    cmd.add_argument("--api-port", type=int, help="API port (default 9002, another if taken)")
    cmd.add_argument("--keep", action="store_true", help="keep the stack running afterwards until Ctrl-C")
    cmd.set_defaults(handler=_demo)


def _reembed(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.cli.local_run import run_reembed

    overrides = {k: v for k, v in {"data_dir": args.data_dir, "navidrome_db": args.navidrome_db}.items() if v}
    settings = Settings(**overrides)
    if settings.navidrome_db is None:
        raise NavembedError("no Navidrome database: set NAVEMBED_NAVIDROME_DB (or NAVIDROME_DB_PATH) "
                            "or pass --navidrome-db")
    models = args.models or settings.enabled_models()
    if args.workers != 1 or args.buckets or args.job:
        return _reembed_with_workers(settings, models, args)
    summary = run_reembed(settings, models, force=args.force, clear_existing=args.clear_existing)
    _print_summary(summary, models)
    return 0 if summary.success else 1


def _reembed_with_workers(settings, models: list[str], args: argparse.Namespace) -> int:
    from navembed_pipeline.cli.fanout import run_fanout

    if args.clear_existing:
        raise NavembedError("--clear-existing rebuilds each collection in one run over every bucket: use it "
                            "without --workers, --buckets and --job")
    summary = run_fanout(settings, models, workers=args.workers, force=args.force,
                         buckets=args.buckets or ("00", "ff"), job=args.job, show_progress=True)
    print(f"job {summary.job}: {'succeeded' if summary.success else 'FAILED'} with {args.workers} workers in "
          f"{summary.seconds:.1f} s ({len(summary.runs)} runs, {len(summary.resumed)} resumed) — embedded "
          f"{summary.embedded}, skipped {summary.skipped} (unchanged), failed {summary.failed} across "
          f"{', '.join(models)}")
    return 0 if summary.success else 1


def _bucket_range(text: str) -> tuple[str, str]:
    from navembed_pipeline.lib.buckets import BUCKETS

    first, _, last = text.lower().partition("-")
    if first not in BUCKETS or last not in BUCKETS or first > last:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST between 00 and ff (e.g. 00-7f), got {text!r}")
    return first, last


def _demo(args: argparse.Namespace) -> int:
    from navembed_pipeline.cli.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(root=args.dir, seconds=args.seconds, dagster_port=args.dagster_port,
                                api_port=args.api_port, keep=args.keep))


def _print_summary(summary, models: list[str]) -> None:
    print(f"run {summary.run_id}: {'succeeded' if summary.success else 'FAILED'} — embedded {summary.embedded}, "
          f"skipped {summary.skipped} (unchanged), failed {summary.failed} across {', '.join(models)}")
    if summary.error:
        print(f"error: {summary.error}")
