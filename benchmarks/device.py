"""GPU device benchmark, one command: deep models at real size on a lent GPU, alone and in the engine.

For each deep model (real-size architecture, random weights in the published layout, loaded through
navembed's own loader — see ``deep_models.py``):

1. ``model``  ``EmbeddingModel.embed`` on generated real-length tracks: tracks/s, seconds per audio
   minute, the windows per pass chosen from free GPU memory (``base.py``: sized after the first pass,
   halved on out-of-memory), peak GPU memory;
2. ``engine`` the whole engine (``EmbeddingRun``: decode on CPU threads ahead of the GPU, pinned-memory
   copies, upserts into a real Milvus Lite server) on the same number of compressed files (MP3, Opus,
   AAC, ... at 44.1/48 kHz stereo): tracks/s and how long the GPU waited for decoded audio.

Meant to finish in ~5 minutes on one H200 (defaults: 8 tracks of 240 s per model, bfloat16).
usage: python -m benchmarks.device [--models mert,latent,muq] [--tracks 8] [--seconds 240]
       [--dtype bfloat16|float16|float32] [--json var/bench/device.json]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.deep_models import _modules, build_checkpoint
from benchmarks.real_corpus import FORMATS, generated_corpus
from benchmarks.real_length import write_library


def model_alone(name: str, models_dir: Path, args: argparse.Namespace) -> dict:
    from navembed_pipeline.lib.models import ModelOptions, create_model
    from navembed_pipeline.sample_data.synth import render_song

    model = create_model(name, ModelOptions(device=args.device, dtype=args.dtype, models_dir=models_dir))
    network = model.load()
    parameters = sum(p.numel() for module in _modules(network) for p in module.parameters())
    model.embed([render_song(seconds=30.0, sample_rate=model.sample_rate, seed=10_000)])  # warm-up, sizes batches
    songs = [render_song(seconds=args.seconds, sample_rate=model.sample_rate, seed=i) for i in range(args.tracks)]
    _synchronize()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for start in range(0, len(songs), 4):  # the engine embeds 4 tracks per call (RunOptions.batch_tracks)
        vectors = model.embed(songs[start:start + 4])
        assert all(np.isfinite(v.embedding).all() for v in vectors)
    _synchronize()
    elapsed = time.perf_counter() - began
    result = {"parameters_m": round(parameters / 1e6, 1), "windows_per_pass": model.batch_size,
              "seconds": round(elapsed, 2), "tracks_per_second": round(len(songs) / elapsed, 3),
              "seconds_per_audio_minute": round(elapsed / (len(songs) * args.seconds / 60), 3),
              "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0.0}
    model.shutdown()
    return result


def engine(name: str, models_dir: Path, db: Path, work: Path, args: argparse.Namespace) -> dict:
    from navembed_pipeline.lib.engine import EmbeddingRun, RunOptions, group_by_bucket
    from navembed_pipeline.lib.library import NavidromeLibrary
    from navembed_pipeline.lib.models import ModelOptions, create_model
    from navembed_pipeline.lib.store import MilvusLiteServer, VectorStore

    model = create_model(name, ModelOptions(device=args.device, dtype=args.dtype, models_dir=models_dir))
    model.load()
    workers = max(1, (os.cpu_count() or 2) - 1)
    with MilvusLiteServer(work / f"milvus-{name}") as server:
        run = EmbeddingRun(model=model, store=VectorStore(server.uri), options=RunOptions(decode_workers=workers))
        grouped = group_by_bucket(list(NavidromeLibrary(db).tracks()))
        began = time.perf_counter()
        reports = list(run.run(grouped))
        _synchronize()
        elapsed = time.perf_counter() - began
    model.shutdown()
    embedded = sum(r.embedded for r in reports)
    assert embedded == args.tracks and not any(r.failed for r in reports), reports
    stages = {k: round(v, 2) for k, v in run.stage_seconds.items()}
    return {"seconds": round(elapsed, 2), "tracks_per_second": round(embedded / elapsed, 3),
            "decode_workers": workers, "stages": stages}


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mert,latent,muq", help="comma-separated deep models")
    parser.add_argument("--tracks", type=int, default=8, help="tracks per model (and compressed files for the engine)")
    parser.add_argument("--seconds", type=float, default=240.0, help="length of each track")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--json", type=Path, default=Path("var/bench/device.json"))
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a slow smoke test of this script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for a GPU machine (a CUDA build of torch, see README)")
    device = torch.cuda.get_device_properties(0) if args.device == "cuda" else None
    device_name, memory = (device.name, device.total_memory / 2**30) if device else ("cpu", 0.0)
    print(f"{device_name}, {memory:.0f} GiB, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{args.dtype}; {args.tracks} tracks × {args.seconds:g} s per model", flush=True)
    results: dict = {"device": device_name, "dtype": args.dtype, "tracks": args.tracks, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="navembed-device-") as tmp:
        work = Path(tmp)
        corpus = generated_corpus(work / "music", per_format=-(-args.tracks // len(FORMATS)), seconds=args.seconds)
        corpus = sorted(corpus, key=lambda f: (f.title, f.format))[:args.tracks]  # formats taken in turn
        db = write_library(corpus, work / "library.db")
        print(f"{'model':<7}{'params':>8}{'win/pass':>9}{'tracks/s':>9}{'s/audio-min':>12}{'peak GPU':>10}"
              f"{'engine tracks/s':>16}{'GPU waited s':>13}", flush=True)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            models_dir = work / f"weights-{name}"
            started = time.perf_counter()
            build_checkpoint(name, models_dir)
            alone = model_alone(name, models_dir, args)
            run = engine(name, models_dir, db, work, args)
            results[name] = {"model": alone, "engine": run, "build_seconds": round(time.perf_counter() - started, 1)}
            print(f"{name:<7}{alone['parameters_m']:>7.0f}M{alone['windows_per_pass']:>9}{alone['tracks_per_second']:>9.2f}"
                  f"{alone['seconds_per_audio_minute']:>12.3f}{alone['peak_gpu_memory_gib']:>8.1f}GiB"
                  f"{run['tracks_per_second']:>16.2f}{run['stages']['decode_wait']:>13.1f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
