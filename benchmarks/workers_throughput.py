"""Re-embed throughput with 1 and with 2 workers (`navembed reembed --workers N`), side by side, dsp.

Both variants run the same coordinator (``navembed_pipeline.cli.fanout``): N worker processes over
disjoint bucket ranges, each a real Dagster run on its own instance, each against its own fresh
Milvus Lite server (so neither skips the other's work). Wall time from the first worker's start to
the last worker's end, so process start-up and model load count. It also checks what the speed-up
must not cost: every bucket materialized exactly once, every track stored.

Full form: real recordings of real length (``benchmarks/recordings.py``, Debian's archive);
``--quick``: generated audio (``--tracks`` × ``--seconds``), no downloads.
usage: python -m benchmarks.workers_throughput [--quick] [--tracks 24] [--seconds 2]
       [--recordings-dir DIR] [--max-recordings N] [--json PATH]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

WORKERS = (1, 2)


def generated_library(root: Path, *, tracks: int, seconds: float) -> tuple[Path, float]:
    """``tracks`` generated WAV files and their navidrome.db; (db path, seconds of audio)."""
    from tests.pipeline.helpers import write_bulk_library  # the same library the pipeline benchmark uses

    return write_bulk_library(root, tracks=tracks, seconds=seconds).db_path, tracks * seconds


def real_library(root: Path, cache: Path, *, limit: int) -> tuple[Path, float]:
    """A navidrome.db over real recordings (the files stay in the cache); (db path, seconds of audio)."""
    from benchmarks.recordings import real_recordings
    from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

    recordings = real_recordings(cache, min_seconds=60.0)[:limit or None]
    fixtures = [FixtureTrack(path=r.path.relative_to(cache).as_posix(), title=r.title, artist=r.album,
                             album=r.album, duration=r.duration_seconds, size=r.path.stat().st_size)
                for r in recordings]
    db = root / "navidrome.db"
    root.mkdir(parents=True, exist_ok=True)
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Real", str(cache))], tracks=fixtures)
    return db, sum(r.duration_seconds for r in recordings)


def measure(db: Path, work: Path, workers: int) -> dict:
    """One re-embed of the whole library with ``workers`` workers against a fresh store."""
    import dagster as dg

    from navembed_pipeline.cli.fanout import Fanout
    from navembed_pipeline.lib.library import NavidromeLibrary
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.lib.store import MilvusLiteServer, VectorStore

    server = MilvusLiteServer(work / "milvus")
    uri = server.start()
    try:
        settings = Settings(data_dir=work / "data", navidrome_db=db, milvus_uri=uri, models="dsp",
                            models_device="cpu", decode_workers=1)
        fanout = Fanout(settings, ["dsp"], workers=workers)
        started = time.perf_counter()
        fanout.start()
        summary = fanout.wait()
        seconds = time.perf_counter() - started
        materialized: Counter = Counter()
        for run_id in summary.runs:
            records = fanout.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            materialized.update(r.event_log_entry.asset_materialization.partition for r in records.records)
        ids = [t.id for t in NavidromeLibrary(db).tracks()]
        store = VectorStore(uri)
        stored = len(store.get_vectors("dsp", ids))
        store.close()
    finally:
        server.stop()
    return {"workers": workers, "seconds": round(seconds, 2), "success": summary.success,
            "embedded": summary.embedded, "failed": summary.failed, "tracks": len(ids), "stored": stored,
            "buckets_once": len(materialized) == 256 and set(materialized.values()) == {1}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="generated audio instead of real recordings")
    parser.add_argument("--tracks", type=int, default=24, help="quick form: generated tracks")
    parser.add_argument("--seconds", type=float, default=2.0, help="quick form: seconds per generated track")
    parser.add_argument("--recordings-dir", type=Path, default=None, help="where the real recordings are cached")
    parser.add_argument("--max-recordings", type=int, default=0, help="full form: at most this many recordings "
                        "(0 = all of them)")
    parser.add_argument("--json", type=Path)
    args, _ = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="navembed-bench-workers-") as tmp:
        root = Path(tmp)
        if args.quick:
            db, audio = generated_library(root / "lib", tracks=args.tracks, seconds=args.seconds)
            material = f"{args.tracks} generated tracks × {args.seconds:g} s"
        else:
            from benchmarks.recordings import DEFAULT_CACHE

            db, audio = real_library(root / "lib", args.recordings_dir or DEFAULT_CACHE, limit=args.max_recordings)
            material = "real recordings"
        results = {str(n): measure(db, root / f"w{n}", n) for n in WORKERS}
    tracks = results["1"]["tracks"]
    result = {"material": material, "tracks": tracks, "audio_minutes": round(audio / 60, 1), "cores": os.cpu_count(),
              "results": results, "speedup": round(results["1"]["seconds"] / results["2"]["seconds"], 2)}
    for n, r in results.items():
        print(f"{n} worker(s): {r['seconds']:.1f} s, {r['tracks'] / r['seconds']:.2f} tracks/s, every bucket once: "
              f"{r['buckets_once']}, stored {r['stored']}/{r['tracks']}", flush=True)
    print(f"speed-up of 2 workers over 1: {result['speedup']:.2f}x on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = all(r["success"] and r["buckets_once"] and r["stored"] == r["tracks"] - r["failed"] for r in results.values())
    return 0 if ok else 1


def report_lines(result: dict) -> list[str]:
    """The report's section (``benchmarks/__main__.py``)."""
    one, two = result["results"]["1"], result["results"]["2"]
    return [f"Workers, dsp, {result['tracks']} tracks ({result['material']}, {result['audio_minutes']} min of audio), "
            f"{result['cores']} cores:",
            f"  throughput        1 worker {one['tracks'] / one['seconds']:.2f} tracks/s | 2 workers "
            f"{two['tracks'] / two['seconds']:.2f} tracks/s | speed-up {result['speedup']:.2f}x",
            f"  exactly once      every bucket once: 1 worker {one['buckets_once']}, 2 workers {two['buckets_once']}; "
            f"stored {two['stored']}/{two['tracks']}"]


if __name__ == "__main__":
    sys.exit(main())
