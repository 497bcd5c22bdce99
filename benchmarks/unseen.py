"""Real files the tuning never saw: a fixed, seeded draw from the held-out recordings, in realistic formats.

The speed claims of issue 25 are made on music the project was not tuned on. The tuning albums
(``recordings.TUNING``: dsp v2's reference and block weights, every excerpt and decode choice checked
on the quality harness) are left out; what remains are the ``HELD_OUT`` packages' recordings of
1–15 minutes (127 files, about 650 audio minutes), shuffled with ``SEED``. A library of ``n`` tracks
takes the first ``n`` of that order (so the 60-track library is part of the 200-track one); past the
127 recordings the order starts again, each recording then in another format (a library holding
some albums twice).

Formats, by position: the first ``ENCODED_UP_TO`` files are half as their packages ship them
(Ogg/Vorbis, Opus) and half re-encoded once into Opus (48 kHz), AAC (M4A, 44.1 kHz) or MP3
(44.1 kHz), stereo, with PyAV's bundled FFmpeg at its default bit rates; the files after them are as
shipped (encoding costs minutes a file on a busy machine), and past the 127 recordings a shipped
file is listed again under another name (a symbolic link: a library holding some albums twice). The
encodes and links are cached next to the recordings; nothing is committed.
"""

import random
from pathlib import Path

from benchmarks.real_corpus import CorpusFile, transcode
from benchmarks.recordings import DEFAULT_CACHE, HELD_OUT, Recording, real_recordings

SEED = 25  # issue 25
MIN_SECONDS, MAX_SECONDS = 60.0, 900.0
# position % 6 -> format: "shipped" keeps the package's own file.
CYCLE = ("shipped", "opus", "shipped", "aac", "shipped", "mp3")
ENCODED_UP_TO = 60  # positions before this follow CYCLE; later ones are as shipped
ENCODES = {"opus": (".opus", 48000), "aac": (".m4a", 44100), "mp3": (".mp3", 44100)}


class NoRecordings(RuntimeError):
    """The recordings cache is absent (and was not to be downloaded)."""


def cache_present(cache_dir: Path = DEFAULT_CACHE) -> bool:
    """Whether every held-out package is unpacked in ``cache_dir`` (no download needed)."""
    return all((cache_dir / f".{package}.unpacked").exists() for package in HELD_OUT)


def unseen_order(cache_dir: Path = DEFAULT_CACHE) -> list[Recording]:
    """The held-out recordings in the benchmark's fixed, seeded order."""
    if not cache_present(cache_dir):
        raise NoRecordings(f"no recordings cache at {cache_dir} (held-out packages {', '.join(HELD_OUT)}): "
                           "run `python -m benchmarks.recordings` or set NAVEMBED_RECORDINGS_DIR")
    recordings = real_recordings(cache_dir, min_seconds=MIN_SECONDS, max_seconds=MAX_SECONDS, packages=HELD_OUT)
    recordings.sort(key=lambda r: str(r.path))
    random.Random(SEED).shuffle(recordings)
    return recordings


def unseen_library(tracks: int, cache_dir: Path = DEFAULT_CACHE) -> list[CorpusFile]:
    """The first ``tracks`` files of the unseen library (encodes made once, then read from the cache)."""
    order = unseen_order(cache_dir)
    files = []
    for position in range(tracks):
        lap, index = divmod(position, len(order))
        recording = order[index]
        kind = CYCLE[position % len(CYCLE)] if position < ENCODED_UP_TO else "shipped"
        if kind == "shipped":
            path, label = recording.path, recording.path.suffix.lstrip(".")
            if lap:  # listed again under another name
                path = cache_dir / "navembed-unseen-links" / str(lap) / f"{recording.package}-{recording.path.name}"
                if not path.is_symlink():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.symlink_to(recording.path)
        else:
            suffix, rate = ENCODES[kind]
            path = cache_dir / "navembed-transcodes-unseen" / kind / f"{recording.package}-{recording.path.stem}{suffix}"
            label = kind
            if not path.exists():
                print(f"  encoding {recording.path.name} -> {kind} {rate} Hz", flush=True)
                transcode(recording.path, path, rate)
        files.append(CorpusFile(path, label, f"{recording.title} [{label}{f' #{lap}' if lap else ''}]",
                                recording.album, recording.duration_seconds))
    return files


def describe(files: list[CorpusFile]) -> str:
    """One line: how many files, audio minutes and formats."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.format] = counts.get(f.format, 0) + 1
    minutes = sum(f.duration_seconds for f in files) / 60
    return (f"{len(files)} files, {minutes:.0f} audio minutes ("
            + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f"; held-out albums, seed {SEED})")


if __name__ == "__main__":  # make the encodes ahead of a benchmark
    import sys

    print(describe(unseen_library(int(sys.argv[1]) if len(sys.argv) > 1 else 200)))
