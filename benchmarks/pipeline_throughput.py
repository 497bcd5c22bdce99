"""Pipeline throughput with `dsp`, measured side by side in one run, printed as ratios.

1. the Dagster run (reembed_job over all 256 buckets, in-process executor, real instance),
2. the same engine without Dagster (EmbeddingRun called directly) → Dagster overhead,
3. a seed-style sequential loop like the original system: per track decode → embed → one insert per row.

Each variant writes into its own fresh Milvus Lite server data dir, so none skips another's work.
usage: python -m benchmarks.pipeline_throughput [--tracks 2000] [--seconds 10]
"""

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
from pymilvus import DataType, MilvusClient

from navembed_pipeline.lib.audio import load_audio
from navembed_pipeline.lib.embedding_run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.milvus_server import MilvusLiteServer
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.navidrome import NavidromeLibrary
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.local_run import run_reembed
from tests.pipeline.helpers import write_bulk_library


def dagster_run(db: Path, work: Path, uri: str) -> float:
    settings = Settings(data_dir=work / "dagster-data", navidrome_db=db, milvus_uri=uri, models="dsp",
                        models_device="cpu")
    started = time.perf_counter()
    summary = run_reembed(settings, ["dsp"], show_progress=False)
    assert summary.success, summary.error
    return time.perf_counter() - started


def engine_run(db: Path, uri: str) -> float:
    model = create_model("dsp", ModelOptions(device="cpu"))
    store = VectorStore(uri)
    started = time.perf_counter()
    grouped = group_by_bucket(list(NavidromeLibrary(db).tracks()))
    for _ in EmbeddingRun(model=model, store=store, options=RunOptions(decode_workers=1)).run(grouped):
        pass  # bucket reports; the Dagster variant turns them into materializations
    elapsed = time.perf_counter() - started
    model.shutdown()
    return elapsed


def seed_loop(db: Path, uri: str) -> float:
    """The original system's batch job shape: one track at a time, one insert per row."""
    model = create_model("dsp", ModelOptions(device="cpu"))
    client = MilvusClient(uri=uri)
    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("name", DataType.VARCHAR, max_length=512)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=model.dimension)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="HNSW", metric_type="COSINE")
    client.create_collection("dsp_embedding", schema=schema, index_params=index)
    started = time.perf_counter()
    for track in NavidromeLibrary(db).tracks():
        try:
            wave = load_audio(track.path, model.sample_rate)
        except Exception:  # noqa: BLE001 - the seed loop logs and continues
            continue
        vector = model.embed([wave])[0].embedding
        client.insert("dsp_embedding", [{"name": track.display_name, "embedding": vector.tolist()}])
    elapsed = time.perf_counter() - started
    model.shutdown()
    client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="navembed-bench-") as tmp:
        work = Path(tmp)
        print(f"generating {args.tracks} tracks of {args.seconds:g} s ...", flush=True)
        library = write_bulk_library(work / "library", tracks=args.tracks, seconds=args.seconds)
        results = {}
        for name, variant in (("dagster", dagster_run), ("engine", engine_run), ("seed", seed_loop)):
            with MilvusLiteServer(work / f"milvus-{name}") as server:
                if name == "dagster":
                    results[name] = variant(library.db_path, work, server.uri)
                else:
                    results[name] = variant(library.db_path, server.uri)
            print(f"  {name:8} {results[name]:8.1f} s  {args.tracks / results[name]:7.1f} tracks/s", flush=True)
        overhead = (results["dagster"] - results["engine"]) / results["dagster"] * 100
        print(f"\nDagster overhead: {overhead:.1f}% of the run ({results['dagster'] - results['engine']:.1f} s)")
        print(f"pipeline (Dagster) vs seed-style loop: {results['seed'] / results['dagster']:.2f}x the throughput")
        print(f"engine alone vs seed-style loop:      {results['seed'] / results['engine']:.2f}x the throughput")


if __name__ == "__main__":
    dg.get_dagster_logger().setLevel("ERROR")
    main()
