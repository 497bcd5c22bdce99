"""Near-copies of a recording, derived with PyAV/FFmpeg: what a duplicate detector must still catch.

Each variant is written as a real file through a real encoder, so decoding it again goes through
the same path as a user's file. ``VARIANTS`` names them; ``derive`` writes one.
"""

from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library import load_audio, write_audio

SOURCE_RATE = 44100
# name -> what it does
VARIANTS: dict[str, str] = {
    "mp3_96k": "re-encoded to MP3 at 96 kbps",
    "trim_3s": "first 3 s cut off (Ogg Vorbis)",
    "trim_10s": "first 10 s cut off (Ogg Vorbis)",
    "gain_-6db": "6 dB quieter (Ogg Vorbis)",
    "silence_5s": "5 s of leading silence added (FLAC)",
    "resample_22k": "resampled to 22.05 kHz (FLAC)",
    "trim_end_10s": "last 10 s cut off, 128 kbps MP3",
}


def derive(source: Path, variant: str, out_dir: Path, *, max_seconds: float | None = None) -> Path:
    """Write ``variant`` of ``source`` under ``out_dir`` and return its path."""
    wave = load_audio(source, SOURCE_RATE, duration_seconds=max_seconds)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _Stem(out_dir / f"{source.stem}.{variant}")
    if variant == "mp3_96k":
        return write_audio(stem.with_suffix(".mp3"), wave, SOURCE_RATE, bit_rate=96_000)
    if variant == "trim_3s":
        return write_audio(stem.with_suffix(".ogg"), wave[3 * SOURCE_RATE:], SOURCE_RATE)
    if variant == "trim_10s":
        return write_audio(stem.with_suffix(".ogg"), wave[10 * SOURCE_RATE:], SOURCE_RATE)
    if variant == "gain_-6db":
        return write_audio(stem.with_suffix(".ogg"), wave * 10 ** (-6 / 20), SOURCE_RATE)
    if variant == "silence_5s":
        return write_audio(stem.with_suffix(".flac"), np.concatenate([np.zeros(5 * SOURCE_RATE, np.float32), wave]),
                           SOURCE_RATE)
    if variant == "resample_22k":
        return write_audio(stem.with_suffix(".flac"), load_audio(source, 22050, duration_seconds=max_seconds), 22050)
    if variant == "trim_end_10s":
        return write_audio(stem.with_suffix(".mp3"), wave[: max(len(wave) - 10 * SOURCE_RATE, SOURCE_RATE)],
                           SOURCE_RATE, bit_rate=128_000)
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


class _Stem(type(Path())):
    """A path whose ``with_suffix`` appends (``song.trim_3s`` + ``.ogg``) instead of replacing
    ``.trim_3s``, so the variants of one source do not overwrite each other."""

    def with_suffix(self, suffix: str) -> Path:
        return Path(f"{self}{suffix}")
