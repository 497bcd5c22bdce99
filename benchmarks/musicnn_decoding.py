"""How much navembed's decoder + resampler (``lib/audio.load_audio``: PyAV/FFmpeg, libswresample)
changes MusiCNN's output against the original's ``librosa.load(path, sr=16000)`` (soxr), on real files.

Per file: the waveforms' RMS and largest difference (over the common length) and the largest
difference of the port's taggram per 3-s patch when fed either waveform. Needs librosa (installed
with the deep-model packages) and MusiCNN's weights.
usage: python -m benchmarks.musicnn_decoding FILE... [--models-dir DIR] [--json PATH]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.models import ModelOptions, create_model


def compare(path: Path, model) -> dict:
    import librosa

    ours = load_audio(path, model.sample_rate)
    theirs, _ = librosa.load(path, sr=model.sample_rate)
    common = min(len(ours), len(theirs))
    difference = ours[:common] - theirs[:common]
    layers = model.patch_layers([ours[:common], theirs[:common]])
    taggram = np.abs(layers[0]["taggram"] - layers[1]["taggram"])
    return {"file": path.name, "seconds": round(common / model.sample_rate, 1),
            "length_difference_samples": int(len(ours) - len(theirs)),
            "wave_rms": float(np.sqrt(np.mean(theirs[:common] ** 2))),
            "wave_difference_rms": float(np.sqrt(np.mean(difference ** 2))),
            "wave_difference_max": float(np.abs(difference).max()),
            "taggram_difference_max": float(taggram.max()), "taggram_difference_mean": float(taggram.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--models-dir", type=Path, default=Path("var/models"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = create_model("musicnn", ModelOptions(device="cpu", models_dir=args.models_dir))
    rows = [compare(path, model) for path in args.files]
    model.shutdown()
    for r in rows:
        print(f"{r['file']}: {r['seconds']} s, length {r['length_difference_samples']:+d} samples; wave difference "
              f"RMS {r['wave_difference_rms']:.2e} (signal RMS {r['wave_rms']:.3f}), max {r['wave_difference_max']:.2e}; "
              f"taggram difference max {r['taggram_difference_max']:.2e}, mean {r['taggram_difference_mean']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
