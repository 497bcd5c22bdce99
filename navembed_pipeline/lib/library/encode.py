"""Encode float waves to audio files (the codec follows the file suffix), with tags.

Used to write CUE splits and, in tests and demos, generated music. Every format goes through
PyAV's bundled FFmpeg so that what we write is exactly what we later decode.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np



@dataclass(frozen=True)
class _Target:
    container: str
    codec: str
    rates: tuple[int, ...] = ()  # sample rates the codec accepts; empty = any


_TARGETS: dict[str, _Target] = {
    ".wav": _Target("wav", "pcm_s16le"),
    ".flac": _Target("flac", "flac"),
    ".mp3": _Target("mp3", "libmp3lame", (32000, 44100, 48000, 22050, 24000, 16000)),
    ".ogg": _Target("ogg", "libvorbis"),
    ".opus": _Target("opus", "libopus", (48000, 24000, 16000, 12000, 8000)),
    ".m4a": _Target("ipod", "aac"),
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_TARGETS)

# FFmpeg's generic tag names; each muxer maps them to its own (Vorbis comment, ID3, MP4 atoms, RIFF INFO).
_TAG_KEYS = {"tracknumber": "track", "albumartist": "album_artist"}


def write_audio(
    path: str | Path,
    wave: np.ndarray,
    sample_rate: int,
    *,
    tags: Mapping[str, str] | None = None,
    bits: int = 16,
    bit_rate: int | None = None,
) -> Path:
    """Write ``wave`` (``(samples,)`` mono or ``(channels, samples)``, floats in [-1, 1]) to ``path``.

    The suffix picks the codec: .wav (PCM), .flac, .mp3 (LAME), .ogg (Vorbis), .opus, .m4a (AAC).
    ``bits`` (16 or 24) is the sample depth of the lossless formats. Opus and MP3 accept only some
    rates; other rates are resampled to the nearest higher accepted one (Opus: 48 kHz).
    ``tags`` use lower-case names such as title, artist, album, tracknumber, cuesheet.
    ``bit_rate`` (bits/s) sets the lossy codecs' rate (e.g. 96_000 for a 96 kbps MP3).
    """
    path = Path(path)
    target = _TARGETS.get(path.suffix.lower())
    if target is None:
        raise ValueError(f"cannot write {path.name}: suffix must be one of {SUPPORTED_SUFFIXES}")
    if bits not in (16, 24):
        raise ValueError("bits must be 16 or 24")
    channels = np.atleast_2d(np.asarray(wave, dtype=np.float32))
    if channels.shape[0] > 8:
        raise ValueError("wave must be (samples,) or (channels, samples)")
    layout = {1: "mono", 2: "stereo"}.get(channels.shape[0], f"{channels.shape[0]}c")
    codec = "pcm_s24le" if (target.codec == "pcm_s16le" and bits == 24) else target.codec
    metadata = {_TAG_KEYS.get(k.lower(), k.lower()): str(v) for k, v in (tags or {}).items()}
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(np.clip(channels, -1.0, 1.0).T).reshape(1, -1), format="flt", layout=layout
    )
    frame.sample_rate = sample_rate
    frame.pts = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=target.container) as out:
        out.metadata.update(metadata)
        stream = out.add_stream(codec, rate=_output_rate(sample_rate, target.rates), layout=layout)
        if target.codec == "flac":
            stream.format = "s32" if bits == 24 else "s16"
        stream.metadata.update(metadata)  # the Ogg muxers read tags from the stream
        if bit_rate:
            stream.bit_rate = bit_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _output_rate(sample_rate: int, accepted: tuple[int, ...]) -> int:
    if not accepted or sample_rate in accepted:
        return sample_rate
    higher = [rate for rate in accepted if rate >= sample_rate]
    return min(higher) if higher else max(accepted)

