"""The real-length benchmark's material: real recordings transcoded into each compressed format.

Every source recording (3–7 minutes, from ``benchmarks/recordings.py``) is decoded once and
re-encoded with PyAV's bundled FFmpeg into MP3, Ogg/Vorbis, Opus, FLAC and AAC (M4A), stereo, at
44.1 or 48 kHz — the formats and rates a music library holds. The transcodes are cached next to the
recordings (nothing is committed). The quick form uses generated music encoded the same way, so
the test suite needs no download.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# format -> (file suffix, sample rate); both rates appear so both resampling ratios are exercised.
FORMATS: dict[str, tuple[str, int]] = {
    "mp3": (".mp3", 44100),
    "ogg": (".ogg", 44100),
    "opus": (".opus", 48000),
    "flac": (".flac", 48000),
    "aac": (".m4a", 44100),
}


@dataclass(frozen=True)
class CorpusFile:
    """One file of the benchmark corpus."""

    path: Path
    format: str
    title: str
    album: str
    duration_seconds: float


def transcode(source: Path, target: Path, sample_rate: int) -> Path:
    """Decode ``source`` (keeping its channels) and encode it to ``target`` (codec from the suffix)."""
    from navembed_pipeline.lib.library import decode_audio, write_audio

    decoded = decode_audio(source, sample_rate=sample_rate, mono=False)
    stereo = decoded.samples if decoded.samples.shape[0] == 2 else np.repeat(decoded.samples[:1], 2, axis=0)
    partial = target.with_name(target.stem + ".partial" + target.suffix)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_audio(partial, np.clip(stereo, -1.0, 1.0), sample_rate)
    partial.rename(target)  # a cut-short transcode is never mistaken for a finished one
    return target


def real_corpus(cache_dir: Path, *, per_format: int, formats: Sequence[str] = tuple(FORMATS),
                min_seconds: float = 180.0, max_seconds: float = 420.0) -> list[CorpusFile]:
    """``per_format`` real recordings in each format (transcoded once, then read from the cache).

    The recordings are spread over the albums (taken round-robin) so every format gets varied music.
    """
    from benchmarks.recordings import real_recordings

    recordings = _round_robin(real_recordings(cache_dir, min_seconds=min_seconds, max_seconds=max_seconds))
    if len(recordings) < per_format:
        raise SystemExit(f"only {len(recordings)} real recordings of {min_seconds:g}–{max_seconds:g} s; "
                         f"asked for {per_format} per format")
    corpus = []
    for name in formats:
        suffix, rate = FORMATS[name]
        for recording in recordings[:per_format]:
            target = cache_dir / "navembed-transcodes" / name / f"{recording.title}{suffix}"  # titles are unique
            if not target.exists():
                print(f"  transcoding {recording.path.name} -> {name} {rate} Hz", flush=True)
                transcode(recording.path, target, rate)
            corpus.append(CorpusFile(target, name, recording.title, recording.album, recording.duration_seconds))
    return corpus


def library_corpus(cache_dir: Path, *, tracks: int, min_seconds: float = 60.0,
                   max_seconds: float = 900.0) -> list[CorpusFile]:
    """Up to ``tracks`` real recordings of ``min_seconds``–``max_seconds`` as their packages ship them
    (Ogg Vorbis, Opus, MP3; mono or stereo; no transcoding), spread over the albums.

    The long run lists them two or three times under other names (``real_length.repeated``): each track
    then has one or two copies in the library, so the fingerprint store's duplicate search verifies one
    or two candidates a track, as on a library holding some albums twice — not the ten a track it
    verifies when one song is in the library thirty times, work no real library asks for.
    """
    from benchmarks.recordings import real_recordings

    recordings = _round_robin(real_recordings(cache_dir, min_seconds=min_seconds, max_seconds=max_seconds))
    return [CorpusFile(r.path, r.path.suffix.lstrip("."), r.title, r.album, r.duration_seconds)
            for r in recordings][:tracks]


def generated_corpus(folder: Path, *, per_format: int, seconds: float,
                     formats: Sequence[str] = tuple(FORMATS)) -> list[CorpusFile]:
    """The quick form: generated stereo songs of ``seconds`` encoded into every format."""
    from navembed_pipeline.lib.library import write_audio
    from navembed_pipeline.sample_data.synth import render_song

    corpus = []
    for name in formats:
        suffix, rate = FORMATS[name]
        for index in range(per_format):
            left = render_song(seconds=seconds, sample_rate=rate, seed=index)
            right = render_song(seconds=seconds, sample_rate=rate, seed=index + 1000)
            path = write_audio(folder / name / f"song {index:02d}{suffix}", np.stack([left, right]), rate)
            corpus.append(CorpusFile(path, name, f"song {index}", "Generated", seconds))
    return corpus


def _round_robin(recordings: list) -> list:
    by_album: dict[str, list] = {}
    for recording in recordings:
        by_album.setdefault(recording.album, []).append(recording)
    queues = list(by_album.values())
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered
