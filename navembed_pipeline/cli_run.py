"""`navembed reembed` and `navembed demo`: run the main job in this process with a progress bar."""

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
    cmd.add_argument("--data-dir", type=Path, help="navembed data dir (default: NAVEMBED_DATA_DIR or ./var)")
    cmd.add_argument("--navidrome-db", type=Path, help="Navidrome's navidrome.db")
    cmd.set_defaults(handler=_reembed)


def register_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "demo", help="generate the sample library, embed it, show similar tracks",
        description="Write the sample library, run the main job on it with the models available on this "
                    "machine (dsp plus any deep model whose weights are present), then print a "
                    "similar-track list. Exits non-zero if anything fails.")
    cmd.add_argument("--dir", type=Path, default=Path("var/demo"), help="where to put everything")
    cmd.add_argument("--seconds", type=float, default=20.0, help="length of each generated track")
    cmd.set_defaults(handler=_demo)


def _reembed(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.local_run import run_reembed

    overrides = {k: v for k, v in {"data_dir": args.data_dir, "navidrome_db": args.navidrome_db}.items() if v}
    settings = Settings(**overrides)
    if settings.navidrome_db is None:
        raise NavembedError("no Navidrome database: set NAVEMBED_NAVIDROME_DB (or NAVIDROME_DB_PATH) "
                            "or pass --navidrome-db")
    models = args.models or settings.enabled_models()
    summary = run_reembed(settings, models, force=args.force, clear_existing=args.clear_existing)
    _print_summary(summary, models)
    return 0 if summary.success else 1


def _demo(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.milvus_server import stop_running
    from navembed_pipeline.lib.sample_library import write_sample_library
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.local_run import run_reembed

    root = args.dir.resolve()
    print(f"==> writing the sample library to {root / 'library'}")
    library = write_sample_library(root / "library", seconds=args.seconds)
    print(f"    {library.track_count} tracks ({library.format_summary}); navidrome.db: {library.db_path}")
    settings = Settings(data_dir=root / "data", navidrome_db=library.db_path, milvus_uri="")
    models = settings.enabled_models()
    print(f"==> embedding with {', '.join(models)} (deep models join once their weights are downloaded: "
          "navembed models download)")
    try:
        summary = run_reembed(settings, models)
        _print_summary(summary, models)
        if summary.success:
            _print_similar(settings, library)
    finally:
        stop_running(settings.milvus_data_dir)
    expected_failures = 1  # the sample library's deliberately corrupt file
    ok = summary.success and summary.failed == expected_failures * len(models)
    print("==> demo " + ("finished" if ok else "FAILED"))
    return 0 if ok else 1


def _print_summary(summary, models: list[str]) -> None:
    print(f"run {summary.run_id}: {'succeeded' if summary.success else 'FAILED'} — embedded {summary.embedded}, "
          f"skipped {summary.skipped} (unchanged), failed {summary.failed} across {', '.join(models)}")
    if summary.error:
        print(f"error: {summary.error}")


def _print_similar(settings, library) -> None:
    from navembed_pipeline.lib.milvus_server import ensure_running
    from navembed_pipeline.lib.navidrome import NavidromeLibrary
    from navembed_pipeline.lib.store import VectorStore

    store = VectorStore(settings.milvus_uri or ensure_running(settings.milvus_data_dir))
    tracks = {str(t.path): t for t in NavidromeLibrary(library.db_path).tracks()}
    seed = tracks[str(library.duplicate_pair[0])]
    vector = store.get_vectors("dsp", [seed.id])[seed.id][0]
    print(f"==> tracks most similar to {seed.display_name!r} (dsp):")
    for hit in store.search("dsp", vector, limit=6):
        if hit.track_id != seed.id:
            note = "  (near-duplicate: the MP3 re-encode)" if hit.score >= 0.97 else ""
            print(f"    {hit.score:.3f}  {hit.name}{note}")
    store.close()
