"""Real recordings for the benchmarks: the recipe, not the audio.

Freely licensed music that installs on this machine from Debian's archive (game soundtracks and
songs by real composers and bands, OGG/Vorbis and MP3). ``ensure_recordings`` downloads the .deb
files with ``apt-get download`` (no root needed) and unpacks them with ``dpkg-deb -x`` into a cache
directory; nothing is installed system-wide and no audio is committed to the repository.

Each package is one "album" for the retrieval proxy (same album in the top 5).

| package | what | licence (see the package's /usr/share/doc/*/copyright) |
|---|---|---|
| wesnoth-1.16-music | Battle for Wesnoth soundtrack, orchestral, several composers | GPL (Wesnoth) |
| drascula-music | Drascula: The Vampire Strikes Back soundtrack | BSD-like freeware licence (DFSG-free) |
| fretsonfire-songs-muldjord | four metal songs by Muldjord (song stems: song.ogg only) | Creative Commons |
| fretsonfire-songs-sectoid | four rock songs by Sectoid (song.ogg only) | GPL |
| asc-music | Advanced Strategic Command soundtrack (MP3) | GPL-2+ |
"""

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

AUDIO_SUFFIXES = (".ogg", ".mp3", ".flac", ".opus", ".wav")
# package -> (album label, folder inside the package, file names to skip)
PACKAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "wesnoth-1.16-music": ("Battle for Wesnoth", "usr/share/games/wesnoth/1.16/data/core/music", ()),
    "drascula-music": ("Drascula", "usr/share/scummvm/drascula/audio", ()),
    "fretsonfire-songs-muldjord": ("Muldjord", "usr/share/games/fretsonfire/data/songs/muldjord", ("guitar.ogg",)),
    "fretsonfire-songs-sectoid": ("Sectoid", "usr/share/games/fretsonfire/data/songs/sectoid", ("guitar.ogg",)),
    "asc-music": ("Advanced Strategic Command", "usr/share/games/asc/music", ()),
}
DEFAULT_CACHE = Path(os.environ.get("NAVEMBED_RECORDINGS_DIR", Path.home() / ".cache" / "navembed" / "recordings"))


class RecordingsUnavailable(RuntimeError):
    """The Debian archive could not be reached or a package did not unpack."""


@dataclass(frozen=True)
class Recording:
    """One real recording: its file, album label, title and length."""

    path: Path
    album: str
    title: str
    duration_seconds: float


def ensure_recordings(cache_dir: Path = DEFAULT_CACHE, packages: tuple[str, ...] = tuple(PACKAGES)) -> Path:
    """Download and unpack the packages into ``cache_dir`` once; return it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for package in packages:
        marker = cache_dir / f".{package}.unpacked"
        if marker.exists():
            continue
        with tempfile.TemporaryDirectory(prefix="navembed-deb-") as tmp:
            fetched = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
            debs = list(Path(tmp).glob("*.deb"))
            if fetched.returncode != 0 or not debs:
                raise RecordingsUnavailable(f"apt-get download {package} failed: {fetched.stderr.strip()[-300:]}")
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(cache_dir)], check=True)
        marker.touch()
    return cache_dir


def real_recordings(cache_dir: Path = DEFAULT_CACHE, *, min_seconds: float = 0.0,
                    max_seconds: float = float("inf"), packages: tuple[str, ...] = tuple(PACKAGES)) -> list[Recording]:
    """Every recording of ``packages`` whose length is within the bounds, in a stable order."""
    import av  # imported here: the module is also read by tests that only need the recipe

    root = ensure_recordings(cache_dir, packages)
    found: list[Recording] = []
    for package in packages:
        album, folder, skipped = PACKAGES[package]
        for path in sorted((root / folder).rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES or path.name in skipped:
                continue
            with av.open(str(path)) as container:
                seconds = float(container.duration or 0) / 1_000_000
            if min_seconds <= seconds <= max_seconds:
                title = path.parent.name if path.name == "song.ogg" else path.stem
                found.append(Recording(path, album, title, seconds))
    return found
