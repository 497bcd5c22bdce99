"""Calibrated similarity on real recordings: what the 0..1 number means, and whether ranking should standardise.

For each weight-free model (``dsp`` v1 and the current ``dsp``) over the real recordings of
``benchmarks/recordings.py`` (one package = one album; tracks of 20 s and more):

- same-album precision@5 ranking by the stored vectors vs by library-standardised ones
  (``LibraryStats.apply``) — the choice ``FieldVectors`` makes (it ranks by the stored vectors);
- the calibrated similarity (``ScoreCalibration``, fitted on these tracks as the vector cache does)
  of random pairs, same-album pairs, each track's nearest and 5th-nearest neighbour, side by side
  with the old ``(1 + cos) / 2`` for random pairs.

Vectors are cached per model under ``--cache`` (keyed by the files and the model's source).
``--quick``: generated songs (three styles as albums), no downloads.
usage: python -m benchmarks.calibration [--recordings DIR] [--cache DIR] [--quick] [--json FILE]
"""

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.quality_measures import TOP_K, cosine_precision_at_k
from navembed_pipeline.lib.recommend import LibraryStats, ScoreCalibration

MIN_SECONDS = 20.0


def models() -> dict[str, object]:
    from navembed_pipeline.lib.models.dsp import DspModel
    from navembed_pipeline.lib.models.dsp import DspV1Model

    return {"dsp_v1": DspV1Model(), "dsp": DspModel()}


def material(args, work: Path) -> list[tuple[Path, str]]:
    """(file, album) pairs: real recordings, or generated songs with ``--quick``."""
    if args.quick:
        from navembed_pipeline.lib.library import write_audio
        from navembed_pipeline.sample_data.synth import render

        return [(write_audio(work / f"{style}{seed}.ogg", render(style, seconds=12, seed=seed), 44100), style)
                for style in ("piano", "drums", "chords") for seed in (1, 2, 3)]
    from benchmarks.recordings import DEFAULT_CACHE, real_recordings

    found = real_recordings(args.recordings or DEFAULT_CACHE, min_seconds=MIN_SECONDS)
    return [(r.path, r.album) for r in found]


def vectors(model, files: list[Path], cache: Path | None) -> np.ndarray:
    """One vector per file (cached by file list and model source when ``cache`` is given)."""
    from navembed_pipeline.lib.library import load_audio

    source = Path(sys.modules[type(model).__module__].__file__).read_bytes()
    key = hashlib.sha1(source + "\n".join(map(str, files)).encode()).hexdigest()[:16]
    target = cache / f"{type(model).__name__}-{key}.npy" if cache else None
    if target is not None and target.exists():
        return np.load(target)
    rows = np.stack([model.embed([load_audio(f, model.sample_rate)])[0].embedding for f in files])
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, rows)
    return rows


def measure(rows: np.ndarray, albums: np.ndarray) -> dict[str, float]:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    calibration = ScoreCalibration.fit(unit)
    cosines = unit @ unit.T
    upper = np.triu_indices(len(unit), 1)
    pairs = cosines[upper]
    same = (albums[:, None] == albums[None, :])[upper]
    np.fill_diagonal(cosines, -np.inf)
    ranked = -np.sort(-cosines, axis=1)
    k = min(TOP_K, len(unit) - 1)
    return {
        "tracks": len(unit),
        "precision_at_5": round(cosine_precision_at_k(rows, albums), 4),
        "precision_at_5_standardised": round(cosine_precision_at_k(LibraryStats.fit(rows).apply(rows), albums), 4),
        "random_pair_mean": round(float(calibration.similarity(pairs).mean()), 3),
        "random_pair_mean_old": round(float(((1 + pairs) / 2).mean()), 3),
        "same_album_mean": round(float(calibration.similarity(pairs[same]).mean()), 3) if same.any() else None,
        "nearest_median": round(float(np.median(calibration.similarity(ranked[:, 0]))), 3),
        "fifth_nearest_median": round(float(np.median(calibration.similarity(ranked[:, k - 1]))), 3),
        "self": float(calibration.similarity(1.0)),
    }


def table(report: dict) -> list[str]:
    lines = [f"Calibrated similarity ({report['material']}): precision@5 stored | standardised; calibrated "
             "similarity of random pairs (old (1+cos)/2), same-album pairs, nearest, 5th nearest"]
    for name, r in report["results"].items():
        same = "-" if r["same_album_mean"] is None else f"{r['same_album_mean']:.2f}"
        lines.append(f"  {name:<7} {r['tracks']:>3} tracks  P@5 {r['precision_at_5']:.3f} | "
                     f"{r['precision_at_5_standardised']:.3f}   random {r['random_pair_mean']:.2f} "
                     f"(old {r['random_pair_mean_old']:.2f})  same album {same}  nearest {r['nearest_median']:.2f}  "
                     f"5th {r['fifth_nearest_median']:.2f}  self {r['self']:.0f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, default=None, help="recordings cache directory")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "navembed" / "calibration")
    parser.add_argument("--quick", action="store_true", help="generated songs instead of real recordings")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    with tempfile.TemporaryDirectory() as tmp:
        found = material(args, Path(tmp))
        files, albums = [f for f, _ in found], np.asarray([a for _, a in found])
        cache = None if args.quick else args.cache
        results = {name: measure(vectors(model, files, cache), albums) for name, model in models().items()}
    report = {"material": "generated songs" if args.quick else "real recordings", "results": results}
    print("\n".join(table(report)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
