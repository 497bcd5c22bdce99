"""Deep-model throughput (the GPU section): tracks/s per deep model with real-size architectures.

No weights can be downloaded for benchmarks (and they are CC BY-NC 4.0), and speed does not depend
on the weights' values: each model's checkpoint is built at the published sizes with random
weights, in the published layout, and loaded through navembed's own loader — the same path
real weights take. Sizes: MERT-v1-330M (24 × 1024, 512-channel conv encoder); Music2Latent at the
package's real widths; MuQ-MuLan with the muq package's large defaults (12 × 1024 conformer,
8 × 768 MuLan towers) and XLM-R base. Measured: load seconds, tracks/s and seconds per minute of
audio through ``EmbeddingModel.embed`` (windowing, batching, pooling included), peak GPU memory.

Runs on CUDA; without a CUDA device it reports the section as skipped, unless ``--cpu`` asks
for a (slow) CPU measurement.
usage: python -m benchmarks.deep_models [--deep-models muq,mert,latent] [--deep-tracks 8] [--deep-seconds 240]
       [--batch-size 4] [--dtype float32|float16|bfloat16] [--cpu] [--json PATH]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from navembed_pipeline.lib.models import ModelOptions, create_model
from navembed_pipeline.sample_data.synth import render_song

DEEP = ("muq", "mert", "latent")


def build_checkpoint(model: str, models_dir: Path) -> None:
    """Write ``model``'s real-size random checkpoint under ``models_dir`` (the published layout)."""
    if model == "mert":
        from tests.lib.models.tiny_mert import FULL_SIZE_OVERRIDES, write_tiny_mert

        write_tiny_mert(models_dir, config_overrides=FULL_SIZE_OVERRIDES)
    elif model == "latent":
        from tests.lib.models.tiny_latent import write_tiny_checkpoint

        write_tiny_checkpoint(models_dir, full_size=True)
    else:
        from tests.lib.models.tiny_muq import build_tiny_muq

        build_tiny_muq(models_dir, full_size=True)


def measure(model_name: str, models_dir: Path, args: argparse.Namespace) -> dict:
    device = "cpu" if args.cpu else "cuda"
    model = create_model(model_name, ModelOptions(device=device, dtype=args.dtype, batch_size=args.batch_size,
                                                  models_dir=models_dir))
    songs = [render_song(seconds=args.deep_seconds, sample_rate=model.sample_rate, seed=i) for i in range(args.deep_tracks)]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    network = model.load()
    loaded = time.perf_counter() - began
    parameters = sum(p.numel() for module in _modules(network) for p in module.parameters())
    # Warm-up (kernels, allocator) on other audio: muq remembers the clips it has embedded.
    model.embed([render_song(seconds=min(args.deep_seconds, 30.0), sample_rate=model.sample_rate, seed=10_000)])
    if device == "cuda":
        torch.cuda.synchronize()
    timings: dict[str, float] = {}
    began = time.perf_counter()
    for start in range(0, len(songs), 4):  # the pipeline embeds 4 tracks per call (RunOptions.batch_tracks)
        vectors = model.embed(songs[start:start + 4], timings=timings)
        assert all(np.isfinite(v.embedding).all() for v in vectors)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - began
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dtype": args.dtype,
              "parameters_m": round(parameters / 1e6, 1), "load_seconds": round(loaded, 1),
              "tracks": len(songs), "track_seconds": args.deep_seconds, "seconds": round(elapsed, 2),
              "tracks_per_second": round(len(songs) / elapsed, 3),
              "seconds_per_audio_minute": round(elapsed / (len(songs) * args.deep_seconds / 60), 3),
              "model_seconds": round(timings.get("model", 0.0), 2), "enrich_seconds": round(timings.get("enrich", 0.0), 2),
              "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None}
    model.shutdown()
    return result


def _modules(loaded: object) -> list[torch.nn.Module]:
    """The torch modules inside a loaded model (a module, or a holder of several)."""
    if isinstance(loaded, torch.nn.Module):
        return [loaded]
    values = vars(loaded).values() if hasattr(loaded, "__dict__") else (loaded if isinstance(loaded, tuple) else ())
    return [v for v in values if isinstance(v, torch.nn.Module)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deep-models", default=",".join(DEEP), help="comma-separated deep models")
    parser.add_argument("--deep-tracks", type=int, default=8, help="tracks per model (after one warm-up track)")
    parser.add_argument("--deep-seconds", type=float, default=240.0, help="length of each track")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU when there is no CUDA device")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    results: dict = {}
    if not torch.cuda.is_available() and not args.cpu:
        results["skipped"] = "no CUDA device on this machine"
        print("GPU section skipped: no CUDA device on this machine "
              "(`python -m benchmarks.deep_models --cpu --deep-tracks 1 --deep-seconds 30` measures the CPU instead)")
    else:
        print(f"{'model':<7}{'params':>9}{'load s':>8}{'tracks/s':>10}{'s per audio min':>17}{'peak GPU':>10}  device")
        for name in [m.strip() for m in args.deep_models.split(",") if m.strip()]:
            with tempfile.TemporaryDirectory(prefix=f"navembed-{name}-") as tmp:
                build_checkpoint(name, Path(tmp))
                r = results[name] = measure(name, Path(tmp), args)
            gpu = f"{r['peak_gpu_memory_gib']:.1f} GiB" if r["peak_gpu_memory_gib"] is not None else "-"
            print(f"{name:<7}{r['parameters_m']:>8.0f}M{r['load_seconds']:8.1f}{r['tracks_per_second']:10.3f}"
                  f"{r['seconds_per_audio_minute']:17.2f}{gpu:>10}  {r['device']} {r['dtype']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
