"""The clips of the MusiCNN golden fixtures, and the script that made the fixtures ONCE with the
original TensorFlow implementation (the tests themselves need no TensorFlow).

``synth_clips()`` (numpy only) regenerates the generated clips bit for bit (they sit on the 16-bit
grid, and their int16 sha256 is stored with the goldens); the real excerpt is stored as a FLAC.

Run once, in a throw-away environment (``musicnn``'s wheel needs TensorFlow; its pinned
``numpy<1.17`` is ignored with ``--no-deps``; tensorflow-cpu 2.15 brings numpy 1.26):

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" librosa      # got 2.15.1, librosa 0.11.0
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0               # sha256 f38a4890…beb65cfa
    apt-get download fretsonfire-songs-sectoid && dpkg-deb -x fretsonfire-songs-sectoid_*.deb deb
    TF_CPP_MIN_LOG_LEVEL=2 /tmp/tfenv/bin/python tests/lib/models/musicnn_goldens.py \\
        --excerpt "deb/usr/share/games/fretsonfire/data/songs/sectoid/Metal madness/song.ogg" \\
        --out tests/lib/models/fixtures/musicnn

It writes ``goldens.npz`` (per clip and variant, float32: the first patch's log-mel input as
``musicnn.extractor.batch_data`` computes it, and per patch the taggram, penultimate, max_pool and
mean_pool that ``musicnn.extractor.extractor`` returns), the excerpt's FLAC, and ``top_tags.json``
(each clip's top mean-taggram tags by the original model).
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
EXCERPT_START_S = 30.0
CLIP_SECONDS = {"piano_chords": 6.2, "drum_beat": 3.5, "sine_440": 3.5, "real_excerpt": 6.2}
VARIANTS = ("MSD_musicnn", "MTT_musicnn")
LAYERS = ("taggram", "penultimate", "max_pool", "mean_pool")
EXCERPT_FILE = "sectoid_metal_madness_30s_16k.flac"
TOP_TAGS = 5


def on_16_bit_grid(wave: np.ndarray) -> np.ndarray:
    """``wave`` rounded to what a 16-bit file holds, as float32 (exactly reproducible)."""
    return (np.clip(np.round(wave * 32767.0), -32768, 32767) / 32768.0).astype(np.float32)


def int16_sha256(wave: np.ndarray) -> str:
    return hashlib.sha256(np.round(wave.astype(np.float64) * 32768.0).astype("<i2").tobytes()).hexdigest()


def synth_clips() -> dict[str, np.ndarray]:
    """The generated clips at 16 kHz: decaying piano-like chords, a drum beat, a plain 440 Hz tone."""
    return {"piano_chords": _piano_chords(), "drum_beat": _drum_beat(), "sine_440": _sine()}


def _time(name: str) -> np.ndarray:
    return np.arange(int(CLIP_SECONDS[name] * SAMPLE_RATE)) / SAMPLE_RATE


def _piano_chords() -> np.ndarray:
    t = _time("piano_chords")
    wave = np.zeros_like(t)
    chords = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    for i, chord in enumerate(chords):
        start = i * 1.55
        local = np.clip(t - start, 0, None)
        envelope = np.where(t >= start, np.exp(-2.5 * local) * (1 - np.exp(-200 * local)), 0.0)
        for f0 in chord:
            for harmonic, weight in ((1, 1.0), (2, 0.45), (3, 0.25), (4, 0.12), (5, 0.06)):
                wave += 0.06 * weight * envelope * np.sin(2 * np.pi * f0 * harmonic * t)
    return on_16_bit_grid(wave)


def _drum_beat() -> np.ndarray:
    t = _time("drum_beat")
    rng = np.random.default_rng(21)
    noise = rng.standard_normal(len(t))
    wave = np.zeros_like(t)
    beat = 0.25  # 120 bpm eighth notes
    for step in range(int(CLIP_SECONDS["drum_beat"] / beat)):
        start = step * beat
        local = t - start
        on = local >= 0
        if step % 4 == 0:  # kick: a falling sine
            phase = 2 * np.pi * (50 * local + 100 * (1 - np.exp(-local / 0.04)) * 0.04)
            wave += np.where(on, 0.7 * np.exp(-local / 0.12) * np.sin(phase), 0.0)
        if step % 4 == 2:  # snare: a noise burst over a 180 Hz body
            wave += np.where(on, np.exp(-local / 0.05) * (0.35 * noise + 0.3 * np.sin(2 * np.pi * 180 * local)), 0.0)
        hat = np.diff(noise, prepend=0.0)  # first difference: a crude high-pass
        wave += np.where(on, 0.08 * np.exp(-local / 0.015) * hat, 0.0)
    return on_16_bit_grid(wave)


def _sine() -> np.ndarray:
    return on_16_bit_grid(0.3 * np.sin(2 * np.pi * 440.0 * _time("sine_440")))


# ----- generation (TensorFlow environment only) ----------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--excerpt", type=Path, required=True, help="the real recording to cut from")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import librosa
    import soundfile as sf
    import tensorflow as tf
    from musicnn.extractor import batch_data, extractor

    tf.config.threading.set_intra_op_parallelism_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    clips = synth_clips()
    full, _ = librosa.load(args.excerpt, sr=SAMPLE_RATE)  # the original's own loading path
    start = int(EXCERPT_START_S * SAMPLE_RATE)
    clips["real_excerpt"] = on_16_bit_grid(full[start : start + int(CLIP_SECONDS["real_excerpt"] * SAMPLE_RATE)])
    _write_flac(sf, args.out / EXCERPT_FILE, clips["real_excerpt"])

    arrays: dict[str, np.ndarray] = {}
    top: dict[str, dict] = {}
    for name, wave in clips.items():
        path = args.out / EXCERPT_FILE if name == "real_excerpt" else args.out / f"_{name}.flac"
        if name != "real_excerpt":
            _write_flac(sf, path, wave)
        loaded, _ = librosa.load(path, sr=SAMPLE_RATE)
        assert np.array_equal(loaded, wave), f"{name}: the FLAC does not round-trip"
        arrays[f"{name}/int16_sha256"] = np.frombuffer(bytes.fromhex(int16_sha256(wave)), np.uint8)
        mel, _ = batch_data(str(path), 187, 187)
        arrays[f"{name}/mel_patch0"] = mel[0].astype(np.float32)
        top[name] = {}
        for variant in VARIANTS:
            taggram, labels, features = extractor(str(path), model=variant, input_length=3,
                                                  input_overlap=False, extract_features=True)
            arrays[f"{name}/{variant}/taggram"] = np.asarray(taggram, np.float32)
            for layer in LAYERS[1:]:
                arrays[f"{name}/{variant}/{layer}"] = np.asarray(features[layer], np.float32).reshape(
                    len(taggram), -1)
            mean = np.asarray(taggram).mean(axis=0)
            top[name][variant] = [[labels[i], round(float(mean[i]), 4)] for i in np.argsort(-mean)[:TOP_TAGS]]
        if name != "real_excerpt":
            path.unlink()
    np.savez_compressed(args.out / "goldens.npz", **arrays)
    versions = {"tensorflow": tf.__version__, "librosa": librosa.__version__, "numpy": np.__version__,
                "musicnn": "0.1.0"}
    (args.out / "top_tags.json").write_text(json.dumps(
        {"made_with": versions, "patches": "3-s, input_overlap=False", "score": "mean taggram over patches",
         "clips": top}, indent=1) + "\n")
    print(json.dumps(top, indent=1))
    return 0


def _write_flac(sf, path: Path, wave: np.ndarray) -> None:
    """Integers written as they are: libsndfile would scale floats by 32767, not 32768."""
    sf.write(path, np.round(wave.astype(np.float64) * 32768.0).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    sys.exit(main())
