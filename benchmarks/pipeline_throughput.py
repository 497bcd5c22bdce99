"""Pipeline throughput with `dsp`, measured side by side in one run, printed as ratios.

1. the Dagster run (reembed_job over all 256 buckets, in-process executor, real instance),
2. the same engine without Dagster (EmbeddingRun called directly) → Dagster overhead, and where
   the time goes per stage (plan, decode, model, enrich, write),
3. a seed-style sequential loop like the original system: per track decode → embed → one insert per
   row, timed per stage the same way.

Each variant runs in its own process (so its peak RSS is its own) against its own fresh Milvus Lite
server (so none skips another's work); the server's peak RSS is read from /proc as it stops.
usage: python -m benchmarks.pipeline_throughput [--tracks 2000] [--seconds 10] [--json PATH]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("dagster", "engine", "seed")
STAGE_LABELS = {"plan": "plan (store reads)", "decode": "decode (worker-seconds)",
                "decode_wait": "embedding waited for audio", "model": "model forward",
                "enrich": "enrich (pooling)", "write": "write (store)"}


def dagster_run(db: Path, uri: str, work: Path) -> dict:
    from navembed_pipeline.cli.local_run import run_reembed
    from navembed_pipeline.lib.settings import Settings

    settings = Settings(data_dir=work / "dagster-data", navidrome_db=db, milvus_uri=uri, models="dsp",
                        models_device="cpu", decode_workers=1)
    started = time.perf_counter()
    summary = run_reembed(settings, ["dsp"], show_progress=False)
    assert summary.success, summary.error
    return {"seconds": time.perf_counter() - started, "embedded": summary.embedded}


def engine_run(db: Path, uri: str, work: Path) -> dict:
    from navembed_pipeline.lib.engine import EmbeddingRun, RunOptions, group_by_bucket
    from navembed_pipeline.lib.library import NavidromeLibrary
    from navembed_pipeline.lib.models import ModelOptions, create_model
    from navembed_pipeline.lib.store import VectorStore

    model = create_model("dsp", ModelOptions(device="cpu"))
    store = VectorStore(uri)
    started = time.perf_counter()
    grouped = group_by_bucket(list(NavidromeLibrary(db).tracks()))
    run = EmbeddingRun(model=model, store=store, options=RunOptions(decode_workers=1))
    embedded = sum(report.embedded for report in run.run(grouped))
    elapsed = time.perf_counter() - started
    model.shutdown()
    return {"seconds": elapsed, "embedded": embedded, "stages": run.stage_seconds}


def seed_loop(db: Path, uri: str, work: Path) -> dict:
    """The original system's batch job shape: one track at a time, one insert per row."""
    from pymilvus import DataType, MilvusClient

    from navembed_pipeline.lib.library import NavidromeLibrary, load_audio
    from navembed_pipeline.lib.models import ModelOptions, create_model

    model = create_model("dsp", ModelOptions(device="cpu"))
    client = MilvusClient(uri=uri)
    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("name", DataType.VARCHAR, max_length=512)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=model.dimension)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="HNSW", metric_type="COSINE")
    client.create_collection("dsp_embedding", schema=schema, index_params=index)
    stages = {"decode": 0.0, "model": 0.0, "enrich": 0.0, "write": 0.0}
    embedded = 0
    started = time.perf_counter()
    for track in NavidromeLibrary(db).tracks():
        mark = time.perf_counter()
        try:
            wave = load_audio(track.path, model.sample_rate)
        except Exception:  # noqa: BLE001 - the seed loop logs and continues
            continue
        finally:
            stages["decode"] += time.perf_counter() - mark
        vector = model.embed([wave], timings=stages)[0].embedding
        mark = time.perf_counter()
        client.insert("dsp_embedding", [{"name": track.display_name, "embedding": vector.tolist()}])
        stages["write"] += time.perf_counter() - mark
        embedded += 1
    elapsed = time.perf_counter() - started
    model.shutdown()
    client.close()
    return {"seconds": elapsed, "embedded": embedded, "stages": stages}


def run_variant(name: str, db: Path, work: Path) -> dict:
    """Run one variant in a child process against its own Milvus Lite server."""
    from navembed_pipeline.lib.store import MilvusLiteServer

    with MilvusLiteServer(work / f"milvus-{name}") as server:
        child = subprocess.run([sys.executable, "-m", "benchmarks.pipeline_throughput", "--variant", name,
                                "--db", str(db), "--uri", server.uri, "--work", str(work)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise SystemExit(f"variant {name} failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["milvus_peak_rss_mb"] = peak_rss_of(server.pid)
    return result


def peak_rss_of(pid: int | None) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def report(results: dict[str, dict], tracks: int) -> list[str]:
    lines = [f"  {'variant':<9}{'seconds':>9}{'tracks/s':>10}{'peak RSS':>11}{'Milvus RSS':>12}"]
    for name in VARIANTS:
        r = results[name]
        milvus = f"{r['milvus_peak_rss_mb']:.0f} MiB" if r.get("milvus_peak_rss_mb") else "?"
        lines.append(f"  {name:<9}{r['seconds']:9.1f}{tracks / r['seconds']:10.1f}{r['peak_rss_mb']:7.0f} MiB"
                     f"{milvus:>12}")
    d, e, s = (results[n]["seconds"] for n in VARIANTS)
    lines += ["", f"Dagster overhead: {(d - e) / d * 100:.1f}% of the run ({d - e:.1f} s)",
              f"pipeline (Dagster) vs seed-style loop: {s / d:.2f}x the throughput",
              f"engine alone vs seed-style loop:      {s / e:.2f}x the throughput",
              f"peak RSS, pipeline (Dagster) vs seed loop: {results['dagster']['peak_rss_mb'] / results['seed']['peak_rss_mb']:.2f}x",
              "", f"  {'stage seconds':<28}{'engine':>9}{'seed':>9}   engine/seed"]
    for stage, label in STAGE_LABELS.items():
        engine, seed = results["engine"]["stages"].get(stage), results["seed"]["stages"].get(stage)
        ratio = f"{engine / seed:6.2f}x" if engine is not None and seed else "     -"
        cells = "".join(f"{v:9.1f}" if v is not None else f"{'-':>9}" for v in (engine, seed))
        lines.append(f"  {label:<28}{cells}   {ratio}")
    model = results["engine"]["stages"]["model"] + results["engine"]["stages"]["enrich"]
    lines += ["", f"dsp: {tracks / e:.1f} tracks/s end to end (engine), {tracks / model:.1f} tracks/s in the model "
                  f"alone (forward + pooling, {model / tracks * 1000:.1f} ms per track)"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    if args.variant:
        import dagster as dg

        dg.get_dagster_logger().setLevel("ERROR")
        result = {"dagster": dagster_run, "engine": engine_run, "seed": seed_loop}[args.variant](
            args.db, args.uri, args.work)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    from tests.pipeline.helpers import write_bulk_library

    with tempfile.TemporaryDirectory(prefix="navembed-bench-") as tmp:
        work = Path(tmp)
        print(f"generating {args.tracks} WAV tracks of {args.seconds:g} s ...", flush=True)
        library = write_bulk_library(work / "library", tracks=args.tracks, seconds=args.seconds)
        results = {}
        for name in VARIANTS:
            results[name] = run_variant(name, library.db_path, work)
            assert results[name]["embedded"] == args.tracks, results[name]
            print(f"  {name} done in {results[name]['seconds']:.1f} s", flush=True)
    print()
    for line in report(results, args.tracks):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"tracks": args.tracks, "seconds_per_track": args.seconds,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
