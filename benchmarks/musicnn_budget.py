"""Does MusiCNN need every 3-s patch of a track? Same-album precision@5 of the shipped vectors computed
from every patch (what navembed stores) against the same vectors from at most N evenly spaced patches
(first and last included), on the real recordings of ``benchmarks/recordings.py`` (30 s or more).

Every patch of every recording goes through navembed's own path (``load_audio`` at 16 kHz, the whole
track, then ``MusicnnModel.patch_layers``: the shipped front end, network and CPU batching); its
layers are cached per file (key: file, weights variant, a digest of the port's source), so a rerun
only scores. A budget keeps the patches ``musicnn_patches.evenly_spaced`` picks, so the budget's
vector is exactly what analysing those patches alone would store.

Scored, per budget, against every patch: MusiCNN alone (the stored ``embedding``, cosine) and the
shipped default fusion (dsp v2 + musicnn, equal weights, as the recommender fuses one seed track),
each as the paired difference in precision@5 with a 95 % bootstrap interval over the queries, over
all recordings, the held-out albums ranked among themselves, and the tuning albums among themselves.
Also the share of the patches a budget analyses (MusiCNN's CPU scales with it).
usage: python -m benchmarks.musicnn_budget [--budgets 6,12,24] [--jobs 2] [--models-dir DIR] [--json PATH]
"""

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.musicnn_patches import PORT_MODULES, evenly_spaced
from benchmarks.musicnn_quality import cosine_shares, field, fused_shares, real_tracks
from benchmarks.quality_measures import paired_difference
from benchmarks.quality_methods import Methods, file_key, source_digest
from benchmarks.recordings import DEFAULT_CACHE

RESAMPLES = 2000
_MODEL = None  # in a pool process: its MusicnnModel


def _layers(path: Path, models_dir: Path | None, variant: str) -> dict[str, np.ndarray]:
    """Every patch's layers of ``path`` (in a pool process: one torch thread)."""
    global _MODEL  # noqa: PLW0603 - one model per pool process
    import torch

    from navembed_pipeline.lib.library import load_audio
    from navembed_pipeline.lib.models import ModelOptions
    from navembed_pipeline.lib.models.musicnn.model import MusicnnModel
    from navembed_pipeline.lib.models.options import MUSICNN_VARIANT_OPTION

    if _MODEL is None:
        torch.set_num_threads(1)
        _MODEL = MusicnnModel(ModelOptions(device="cpu", models_dir=models_dir, extra={MUSICNN_VARIANT_OPTION: variant}))
    [layers] = _MODEL.patch_layers([load_audio(path, _MODEL.sample_rate)])
    return {name: np.asarray(values, np.float32) for name, values in layers.items()}


def all_patches(paths: list[Path], cache: Path, models_dir: Path | None, variant: str, jobs: int) -> list[dict]:
    """Every patch's layers per file, through the cache (computed on ``jobs`` processes)."""
    folder = cache / "musicnn" / f"{variant}-all-{source_digest(*PORT_MODULES)}"
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{file_key(p)}.npz" for p in paths]
    missing = [i for i, f in enumerate(files) if not f.exists()]
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        futures = {i: pool.submit(_layers, paths[i], models_dir, variant) for i in missing}
        for done, (i, future) in enumerate(futures.items(), 1):
            np.savez(files[i].with_name(f"{files[i].stem}.partial.npz"), **future.result())
            files[i].with_name(f"{files[i].stem}.partial.npz").replace(files[i])
            if done % 20 == 0:
                print(f"  {done}/{len(missing)} computed ({time.perf_counter() - started:.0f} s)", flush=True)
    out = []
    for f in files:
        with np.load(f) as stored:
            out.append({name: stored[name] for name in stored.files})
    return out


def run(args: argparse.Namespace) -> dict:
    from navembed_pipeline.lib.models.dsp import weighted_vector
    from navembed_pipeline.lib.models.musicnn import similarity_vector
    from navembed_pipeline.lib.settings import Settings

    tracks = real_tracks(args.recordings)
    models_dir = args.models_dir or Settings().weights_dir
    layers = all_patches([t.path for t in tracks], args.cache, models_dir, args.variant, args.jobs)
    methods = Methods(args.cache, only=("dsp_v2_raw",))
    try:
        dsp = np.stack([weighted_vector(methods.compute(t.path).values["dsp_v2_raw"]) for t in tracks])
    finally:
        methods.close()
    counts = np.asarray([len(one["max_pool"]) for one in layers])

    def vectors(budget: int) -> np.ndarray:
        return np.stack([similarity_vector({k: v[evenly_spaced(len(v), budget)] for k, v in one.items()})
                         for one in layers])

    held = np.asarray([t.held_out for t in tracks])
    sets = {"all": np.arange(len(tracks)), "held_out": np.flatnonzero(held), "tuning": np.flatnonzero(~held)}

    def shares(rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name, chosen in sets.items():
            albums = [tracks[i].album for i in chosen]
            out[name] = {"musicnn": cosine_shares(rows[chosen], albums),
                         "fusion": fused_shares({"dsp": field("dsp", dsp[chosen]), "musicnn": field("musicnn", rows[chosen])},
                                                {"dsp": 1.0, "musicnn": 1.0}, albums)}
        return out

    whole = shares(vectors(0))
    result = {"tracks": len(tracks), "held_out": int(held.sum()), "patches_total": int(counts.sum()),
              "every_patch": {s: {k: float(v.mean()) for k, v in c.items()} for s, c in whole.items()}, "budgets": {}}
    for budget in args.budgets:
        rows = vectors(budget)
        scored = shares(rows)
        full = vectors(0)
        cosines = np.sum(rows * full, axis=1)
        result["budgets"][budget] = {
            "patch_share": float(np.minimum(counts, budget).sum() / counts.sum()),
            "cosine_min": float(cosines.min()), "cosine_median": float(np.median(cosines)),
            "precision": {s: {k: float(v.mean()) for k, v in c.items()} for s, c in scored.items()},
            "minus_every_patch": {s: {k: paired_difference(scored[s][k], whole[s][k], resamples=RESAMPLES)
                                      for k in c} for s, c in scored.items()}}
    return result


def table(result: dict) -> list[str]:
    lines = [f"MusiCNN patch budget on {result['tracks']} real recordings ({result['held_out']} held out), "
             f"{result['patches_total']} patches in all; same-album precision@5",
             "every patch (shipped): " + "   ".join(
                 f"{s}: musicnn {v['musicnn']:.3f} fusion {v['fusion']:.3f}" for s, v in result["every_patch"].items()),
             f"{'budget':>6} {'patches':>8} {'cos min/med':>13}  " + "  ".join(
                 f"{s + ' ' + k + ' - every':<34}" for s in ("all", "held_out", "tuning") for k in ("musicnn", "fusion"))]
    for budget, row in result["budgets"].items():
        cells = []
        for s in ("all", "held_out", "tuning"):
            for k in ("musicnn", "fusion"):
                mean, low, high = row["minus_every_patch"][s][k]
                cells.append(f"{mean:+.3f} ({low:+.3f}..{high:+.3f})".ljust(34))
        lines.append(f"{budget:>6} {row['patch_share']:>8.2f} {row['cosine_min']:>6.3f}/{row['cosine_median']:.3f}  "
                     + "  ".join(cells))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="6,12,24", help="patches per track at most, comma-separated")
    parser.add_argument("--recordings", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE.parent / "quality")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--variant", default="MSD_musicnn", choices=("MSD_musicnn", "MTT_musicnn"))
    parser.add_argument("--jobs", type=int, default=2, help="processes computing patches (one torch thread each)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    result = run(args)
    print("\n".join(table(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
