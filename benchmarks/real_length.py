"""Real-length compressed music: the dsp job against bliss-audio on the same files, in one run.

Material: real 3–7-minute recordings (``benchmarks/recordings.py``) transcoded into MP3, Ogg/Vorbis,
Opus, FLAC and AAC at 44.1/48 kHz stereo (``benchmarks/real_corpus.py``). Measured side by side,
each in its own process (its peak RSS and CPU time are its own) against its own Milvus Lite server:

1. ``dagster``  the dsp job through Dagster (in-process ``reembed_job`` on a real instance, all files);
2. ``engine``   the same engine without Dagster (``EmbeddingRun`` on all files, fingerprinting as the
                job does) → Dagster overhead;
3. ``formats``  the engine once per format → per-format throughput and per-stage seconds;
4. ``bliss``    bliss-audio (``Song(path).analysis``) on the same files, one process per core as
                blissify runs it, all files in one pool and per format; a file bliss panics on
                counts as failed, not as done;
5. the long run: a library of ``--long-run-tracks`` (400) files — every real recording of 1–15 minutes
   as shipped, listed two or three times (``real_corpus.library_corpus``) — through Dagster, the engine
   alone and bliss: throughput at a library's scale and Dagster's share of it.

Reported per format and overall: tracks/s, audio-minutes/s, per-stage seconds (decode with resample
inside, the model, pooling, store writes; Dagster bookkeeping = Dagster − engine), cores busy (CPU
seconds / wall seconds, Milvus server included), peak RSS and the ratio to bliss. The machine may
be shared: only the ratios of variants measured in this one run mean anything.
usage: python -m benchmarks.real_length [--real-per-format 8] [--long-run-tracks 400] [--quick]
       [--recordings DIR] [--json PATH]
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.pipeline_throughput import peak_rss_of
from benchmarks.real_corpus import FORMATS, CorpusFile, generated_corpus, library_corpus, real_corpus
from benchmarks.recordings import DEFAULT_CACHE

STAGES = ("plan", "decode", "decode_wait", "model", "enrich", "write")
# The long run: a library of this many tracks made of every real recording of 1-15 minutes as shipped,
# each listed two or three times (~1,800 audio minutes): closer to our users' libraries (1k-100k
# tracks), where Dagster's per-run bookkeeping (a materialization and a check result per bucket,
# whatever the size) weighs what it does on a real library.
LONG_RUN_TRACKS = 400


def write_library(corpus: list[CorpusFile], db: Path) -> Path:
    """A Navidrome database listing ``corpus`` (one library rooted at the files' common folder)."""
    from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

    root = Path(os.path.commonpath([f.path.parent for f in corpus]))
    tracks = [FixtureTrack(path=f.path.relative_to(root).as_posix(), title=f"{f.title} ({f.format})",
                           artist="Benchmark", album=f.album, duration=f.duration_seconds) for f in corpus]
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Benchmark", str(root))], tracks=tracks)
    return db


def _cpu_seconds() -> float:
    """This process's CPU seconds and its finished children's: the decode worker processes are its
    children (``lib/engine/pool.py``), waited for when their run ends."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def dagster_variant(dbs: dict[str, Path], uri: str, work: Path, workers: int) -> dict:
    from navembed_pipeline.cli.local_run import run_reembed
    from navembed_pipeline.instance import open_instance
    from navembed_pipeline.lib.settings import Settings

    settings = Settings(data_dir=work / "dagster-data", navidrome_db=dbs["all"], milvus_uri=uri, models="dsp",
                        models_device="cpu", decode_workers=workers)
    # An installation's instance exists before its runs: its databases are created here, not timed.
    open_instance(settings.dagster_home, postgres_url=settings.postgres_url).dispose()
    cpu, started = _cpu_seconds(), time.perf_counter()
    summary = run_reembed(settings, ["dsp"], show_progress=False)
    seconds = time.perf_counter() - started
    assert summary.success, summary.error
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu,
            "embedded": summary.embedded, "failed": summary.failed}


def _engine(db: Path, store, model, workers: int) -> dict:
    """The engine as the job runs it: Chromaprint fingerprints from the decoded audio included."""
    from navembed_pipeline.lib.duplicates import FingerprintStore
    from navembed_pipeline.lib.engine import EmbeddingRun, RunOptions, TrackFingerprinter, group_by_bucket
    from navembed_pipeline.lib.library import NavidromeLibrary

    cpu, started = _cpu_seconds(), time.perf_counter()
    grouped = group_by_bucket(list(NavidromeLibrary(db).tracks()))
    fingerprinter = TrackFingerprinter(FingerprintStore(db.with_name(f"{db.stem}-fingerprints.sqlite")))
    run = EmbeddingRun(model=model, store=store, options=RunOptions(decode_workers=workers),
                       fingerprinter=fingerprinter)
    reports = list(run.run(grouped))
    seconds = time.perf_counter() - started
    use = run.utilisation
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu,
            "embedded": sum(r.embedded for r in reports), "failed": sum(r.failed for r in reports),
            "stages": run.stage_seconds,
            "utilisation": {"decode_busy": use.decode_busy, "model_busy": use.model_busy,
                            "cores_busy": use.cores_busy, "wall_seconds": use.wall_seconds,
                            "decode_workers": use.decode_workers, "decode_kind": use.decode_kind}}


def engine_variant(dbs: dict[str, Path], uri: str, work: Path, workers: int) -> dict:
    from navembed_pipeline.lib.models import ModelOptions, create_model
    from navembed_pipeline.lib.store import VectorStore

    model = create_model("dsp", ModelOptions(device="cpu"))
    result = _engine(dbs["all"], VectorStore(uri), model, workers)
    model.shutdown()
    return result


def formats_variant(dbs: dict[str, Path], uri: str, work: Path, workers: int) -> dict:
    """The engine once per format (distinct files, so no run skips another's tracks)."""
    from navembed_pipeline.lib.models import ModelOptions, create_model
    from navembed_pipeline.lib.store import VectorStore

    model = create_model("dsp", ModelOptions(device="cpu"))
    store = VectorStore(uri)
    model.load()  # not charged to the first format
    per_format = {name: _engine(db, store, model, workers) for name, db in dbs.items() if name != "all"}
    model.shutdown()
    return {"formats": per_format}


def _bliss_one(path: str) -> tuple[str, float, str | None, float]:
    import bliss_audio

    started = time.perf_counter()
    try:
        analysis = bliss_audio.Song(path).analysis
        error = None if len(analysis) > 0 else "empty analysis"
    except BaseException as exc:  # noqa: BLE001 - bliss panics (PanicException is a BaseException)
        error = f"{type(exc).__name__}: {exc}"
    return path, time.perf_counter() - started, error, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bliss_pool(paths: list[str], workers: int) -> dict:
    """bliss-audio on ``paths`` with ``workers`` processes (blissify analyses one song per core)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        results = list(pool.map(_bliss_one, paths))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    errors = [r[2] for r in results if r[2]]
    return {"seconds": elapsed, "embedded": len(paths) - len(errors), "failed": len(errors),
            "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "errors": errors[:3], "peak_rss_mb": max(r[3] for r in results)}  # of one worker process


def bliss_variant(corpus: list[CorpusFile], workers: int) -> dict:
    """bliss-audio on all the files in one pool (as the engine runs them: one queue, no per-format
    tails), and per format."""
    per_format = {name: bliss_pool([str(f.path) for f in corpus if f.format == name], workers)
                  for name in dict.fromkeys(f.format for f in corpus)}
    everything = bliss_pool([str(f.path) for f in corpus], workers)
    return {"formats": per_format, "all": everything,
            "peak_rss_mb": max(b["peak_rss_mb"] for b in [everything, *per_format.values()])}


def repeated(corpus: list[CorpusFile], folder: Path, times: int) -> list[CorpusFile]:
    """``corpus`` listed ``times`` times: symbolic links under distinct names (distinct tracks, no copies)."""
    out = []
    for k in range(times):
        for f in corpus:
            link = folder / f.format / f"{f.title} #{k}{f.path.suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f.path)
            out.append(CorpusFile(link, f.format, f"{f.title} #{k}", f.album, f.duration_seconds))
    return out


def overhead_run(long: list[CorpusFile], described: str, work: Path, workers: int) -> tuple[dict, list[str]]:
    """A library-sized run through Dagster, through the engine alone and through bliss-audio (one pool),
    side by side; Dagster's share of it."""
    dbs = {"all": write_library(long, work / "long.db")}
    minutes = sum(f.duration_seconds for f in long) / 60
    print(f"long run: {len(long)} tracks, {minutes:.0f} audio minutes", flush=True)
    results = {}
    for name in ("engine", "dagster"):
        (work / f"long-{name}").mkdir()
        results[name] = run_variant(name, dbs, work / f"long-{name}", workers)
        print(f"  long {name} done", flush=True)
    results["bliss"] = bliss_pool([str(f.path) for f in long], workers)
    print("  long bliss done", flush=True)
    header = (f"  {'what':<24}{'seconds':>8}{'tracks/s':>9}{'audio-min/s':>12}{'cores':>7}{'vs bliss':>10}"
              f"{'CPU s/min':>13}{'vs bliss':>10}")
    lines = [f"Long run: {len(long)} tracks ({described}), {minutes:.0f} audio minutes", header,
             _row("dsp job (Dagster)", results["dagster"], minutes, len(long), results["bliss"]),
             _row("dsp engine alone", results["engine"], minutes, len(long), results["bliss"]),
             _row("bliss", results["bliss"], minutes, len(long), None),
             *bookkeeping_lines(results["dagster"], results["engine"], minutes),
             "engine utilisation: " + utilisation_line(results["engine"])]
    return results, lines


def cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run_variant(name: str, dbs: dict[str, Path], work: Path, workers: int) -> dict:
    """Run one engine or Dagster variant in a child process against its own Milvus Lite server."""
    from navembed_pipeline.lib.store import MilvusLiteServer

    with MilvusLiteServer(work / f"milvus-{name}") as server:
        milvus_cpu = cpu_of(server.pid)
        child = subprocess.run([sys.executable, "-m", "benchmarks.real_length", "--variant", name,
                                "--dbs", json.dumps({k: str(v) for k, v in dbs.items()}), "--uri", server.uri,
                                "--work", str(work), "--workers", str(workers)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise SystemExit(f"variant {name} failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["milvus_cpu_seconds"] = cpu_of(server.pid) - milvus_cpu
        result["milvus_peak_rss_mb"] = peak_rss_of(server.pid)
    return result


def _row(label: str, r: dict, minutes: float, tracks: int, bliss: dict | None) -> str:
    """Wall-clock figures, and CPU seconds per audio minute (what a busy shared machine distorts least)."""
    cpu = r["cpu_seconds"] + r.get("milvus_cpu_seconds", 0.0)
    ratio = f"{bliss['seconds'] / r['seconds']:6.2f}x" if bliss else "      -"
    bliss_cpu = bliss["cpu_seconds"] + bliss.get("milvus_cpu_seconds", 0.0) if bliss else 0.0
    cpu_ratio = f"{bliss_cpu / cpu:6.2f}x" if bliss and cpu > 0 else "      -"
    return (f"  {label:<24}{r['seconds']:8.1f}{tracks / r['seconds']:9.2f}{minutes / r['seconds']:12.2f}"
            f"{cpu / r['seconds']:7.2f}{ratio:>10}{cpu / minutes:13.2f}{cpu_ratio:>10}")


def report(results: dict, corpus: list[CorpusFile]) -> list[str]:
    minutes = {name: sum(f.duration_seconds for f in corpus if f.format == name) / 60 for name in FORMATS}
    counts = {name: sum(1 for f in corpus if f.format == name) for name in FORMATS}
    minutes["all"], counts["all"] = sum(minutes.values()), len(corpus)
    bliss = results["bliss"]["formats"]
    bliss_all = results["bliss"]["all"]
    lines = [f"{counts['all']} files, {minutes['all']:.0f} audio minutes; vs bliss = bliss's seconds (or CPU "
             "seconds) / ours: above 1 is faster than bliss",
             f"  {'what':<24}{'seconds':>8}{'tracks/s':>9}{'audio-min/s':>12}{'cores':>7}{'vs bliss':>10}"
             f"{'CPU s/min':>13}{'vs bliss':>10}"]
    for name in FORMATS:
        if name not in bliss:
            continue
        lines.append(_row(f"{name} dsp engine", results["formats"]["formats"][name], minutes[name], counts[name], bliss[name]))
        lines.append(_row(f"{name} bliss", bliss[name], minutes[name], counts[name], None))
    if "dagster" in results:
        lines.append(_row("all: dsp job (Dagster)", results["dagster"], minutes["all"], counts["all"], bliss_all))
    lines += [_row("all: dsp engine alone", results["engine"], minutes["all"], counts["all"], bliss_all),
              _row("all: bliss", bliss_all, minutes["all"], counts["all"], None)]
    stages = results["engine"]["stages"]
    if "dagster" in results:
        lines += ["", *bookkeeping_lines(results["dagster"], results["engine"], minutes["all"])]
    else:
        lines += ["", "Dagster bookkeeping: not measured in the quick form (see the pipeline benchmark)"]
    lines += [
              "engine stages (s): " + ", ".join(f"{k} {stages[k]:.1f}" for k in STAGES)
              + "  (decode includes resampling and fingerprints; summed over the decode workers)",
              "engine utilisation: " + utilisation_line(results["engine"]),
              "per-format stages (s): " + "; ".join(
                  f"{n} decode {r['stages']['decode']:.1f} model {r['stages']['model']:.1f}"
                  for n, r in results["formats"]["formats"].items()),
              f"peak RSS: Dagster {results.get('dagster', {}).get('peak_rss_mb', float('nan')):.0f} MiB, engine "
              f"{results['engine']['peak_rss_mb']:.0f} MiB, bliss worker {results['bliss']['peak_rss_mb']:.0f} MiB, "
              f"Milvus Lite {results['engine'].get('milvus_peak_rss_mb') or 0:.0f} MiB"]
    return lines


def utilisation_line(engine: dict) -> str:
    use = engine.get("utilisation")
    if not use:
        return "-"
    return (f"{use['decode_workers']} decode {use['decode_kind']} {use['decode_busy']:.0%} busy, embedding "
            f"{use['model_busy']:.0%} of a core, {use['cores_busy']:.2f} cores busy over the run's {use['wall_seconds']:.1f} s")


def bookkeeping_lines(dagster: dict, engine: dict, audio_minutes: float) -> list[str]:
    """Dagster's share of the run, wall and CPU, and the run length at which it falls to 2 %.

    Most of the bookkeeping is per run and per bucket (256 materializations and check evaluations, the
    run's start), but not all: progress lines (one a second) and the checks' re-reads of changed buckets
    grow with the run. The break-even line treats the whole measured overhead as fixed, so it is a lower
    bound; the long run (``--long-run-tracks``) measures instead of extrapolating.
    """
    d, e = dagster["seconds"], engine["seconds"]
    overhead, cpu = d - e, dagster["cpu_seconds"] - engine["cpu_seconds"]
    lines = [f"Dagster bookkeeping: {overhead:.1f} s = {overhead / d * 100:.1f}% of the Dagster run "
             f"({cpu:.1f} CPU s = {cpu / dagster['cpu_seconds'] * 100:.1f}% of its CPU time)"]
    if overhead / d > 0.02 and e > 0:
        needed = overhead / 0.02 - overhead  # engine seconds at which the same overhead is 2 % of the run
        lines.append(f"  at 2 % from a run of {needed:.0f} engine seconds on: about {needed * audio_minutes / e:.0f} "
                     "audio minutes at this run's rate (if it were all fixed: a lower bound)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-per-format", type=int, default=8, help="real recordings per format")
    parser.add_argument("--quick", action="store_true", help="generated audio, seconds long (the test suite's form)")
    parser.add_argument("--recordings", type=Path, default=None, help="recordings cache (default: recordings.py's)")
    parser.add_argument("--workers", type=int, default=0,
                        help="decode workers (0: navembed's default) / bliss processes (0: one per core)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--long-run-tracks", type=int, default=None,
                        help=f"the long run's size: every file as often as it takes ({LONG_RUN_TRACKS}; "
                             "0: no long run; none in the quick form unless given)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--dbs", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    if args.variant:
        import dagster as dg

        dg.get_dagster_logger().setLevel("ERROR")
        dbs = {k: Path(v) for k, v in json.loads(args.dbs).items()}
        variant = {"dagster": dagster_variant, "engine": engine_variant, "formats": formats_variant}[args.variant]
        result = variant(dbs, args.uri, args.work, args.workers)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="navembed-real-") as tmp:
        work = Path(tmp)
        if args.quick:
            corpus = generated_corpus(work / "music", per_format=1, seconds=6.0)
        else:
            corpus = real_corpus(args.recordings or DEFAULT_CACHE, per_format=args.real_per_format)
        dbs = {"all": write_library(corpus, work / "all.db")}
        for name in FORMATS:
            dbs[name] = write_library([f for f in corpus if f.format == name], work / f"{name}.db")
        print(f"{len(corpus)} files, {sum(f.duration_seconds for f in corpus) / 60:.0f} audio minutes, "
              f"{args.workers or 'default'} decode workers", flush=True)
        results: dict = {"workers": args.workers}
        # The quick form leaves Dagster out: the pipeline benchmark's quick form already runs it.
        for name in ("engine", "formats") if args.quick else ("engine", "dagster", "formats"):
            results[name] = run_variant(name, dbs, work, args.workers)
            print(f"  {name} done", flush=True)
        results["bliss"] = bliss_variant(corpus, args.workers)
        print("  bliss done", flush=True)
        lines = report(results, corpus)
        print("\n".join(lines), flush=True)
        long_run_tracks = args.long_run_tracks if args.long_run_tracks is not None else 0 if args.quick else LONG_RUN_TRACKS
        if long_run_tracks > 0:
            if args.quick:
                times = max(2, math.ceil(long_run_tracks / len(corpus)))
                long = repeated(corpus, work / "repeated", times)
                described = f"the files above {times}× under distinct names"
            else:
                distinct = library_corpus(args.recordings or DEFAULT_CACHE, tracks=long_run_tracks)
                times = max(2, math.ceil(long_run_tracks / len(distinct)))
                long = repeated(distinct, work / "library", times)[:long_run_tracks]
                described = (f"{len(distinct)} real recordings of 1–15 minutes as shipped (Ogg Vorbis, Opus, MP3), "
                             f"each listed {times - 1}–{times}× under distinct names")
            results["long"], long_lines = overhead_run(long, described, work, args.workers)
            print("\n".join(long_lines))
            lines += ["", *long_lines]
    if args.json:
        args.json.write_text(json.dumps({"files": len(corpus), "quick": args.quick, "results": results,
                                         "report": lines}, indent=2))


if __name__ == "__main__":
    main()
