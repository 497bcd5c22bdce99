"""Real recordings for the benchmarks: the recipe, not the audio.

Freely licensed music that installs on this machine from Debian's archive (game soundtracks and
songs by real composers and bands, OGG/Vorbis, Opus and MP3). ``ensure_recordings`` downloads the
.deb files with ``apt-get download`` (no root needed), unpacks them with ``dpkg-deb -x`` into a
cache directory and, for the two packages that ship their music inside a game archive (``.pk3``, a
zip), extracts the audio members next to it; nothing is installed system-wide and no audio is
committed to the repository.

Each album is one group for the retrieval proxy (same album in the top 5): a package, or for the
packages that hold several, a sub-album (Warzone 2100's three soundtracks) or a composer (UFO: Alien
Invasion's tracks by composer prefix; its one-off tracks by other composers are left out).

| package | what | licence (see the package's /usr/share/doc/*/copyright) |
|---|---|---|
| wesnoth-1.16-music | Battle for Wesnoth soundtrack, orchestral, several composers | GPL (Wesnoth) |
| drascula-music | Drascula: The Vampire Strikes Back soundtrack | BSD-like freeware licence (DFSG-free) |
| fretsonfire-songs-muldjord | four metal songs by Muldjord (song stems: song.ogg only) | Creative Commons |
| fretsonfire-songs-sectoid | four rock songs by Sectoid (song.ogg only) | GPL |
| asc-music | Advanced Strategic Command soundtrack (MP3) | GPL-2+ |
| hyperrogue-music | HyperRogue soundtrack (several composers) | CC-BY(-SA) 3.0/4.0 |
| nexuiz-music | Nexuiz soundtrack, electronic (inside music.pk3) | GPL-2 |
| planetblupi-music-ogg | Planet Blupi soundtrack | GPL-3+ |
| singularity-music | Endgame: Singularity soundtrack by Max McCracken | Creative Commons |
| ufoai-music | UFO: Alien Invasion soundtrack (inside 0music.pk3), five composers | GPL-2+, CC-BY(-SA) 3.0 |
| warzone2100-music | Warzone 2100: original, legacy and aftermath soundtracks (Opus) | GPL-2+, CC-BY-SA 3.0, CC0 |

The first five are the *tuning* albums (dsp v2's reference and block weights were measured on
them); the others arrived later and are *held out* (``HELD_OUT``): quality claims are reported on
them separately.
"""

import os
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

AUDIO_SUFFIXES = (".ogg", ".mp3", ".flac", ".opus", ".wav")


@dataclass(frozen=True)
class Source:
    """Where a package keeps its music and how its files map to albums.

    ``folder`` is inside the unpacked package; with ``archive`` set it is inside that zip's extracted
    copy. ``album_of(path)`` names a file's album (``None`` leaves the file out); by default the
    package's one ``album``.
    """

    album: str
    folder: str
    skipped: tuple[str, ...] = ()
    archive: str | None = None
    album_of: Callable[[Path], str | None] | None = None


def _warzone_album(path: Path) -> str | None:
    names = {"original_soundtrack": "original", "legacy_soundtrack": "legacy", "aftermath_soundtrack": "aftermath"}
    album = names.get(path.parent.name)
    return f"Warzone 2100 ({album})" if album else None


_UFOAI_COMPOSERS = ("Crystan", "David", "Marine", "Psymong", "van_")


def _ufoai_album(path: Path) -> str | None:
    for composer in _UFOAI_COMPOSERS:
        if path.name.startswith(composer):
            return f"UFO: Alien Invasion ({composer.rstrip('_')})"
    return None


PACKAGES: dict[str, Source] = {
    "wesnoth-1.16-music": Source("Battle for Wesnoth", "usr/share/games/wesnoth/1.16/data/core/music"),
    "drascula-music": Source("Drascula", "usr/share/scummvm/drascula/audio"),
    "fretsonfire-songs-muldjord": Source("Muldjord", "usr/share/games/fretsonfire/data/songs/muldjord", ("guitar.ogg",)),
    "fretsonfire-songs-sectoid": Source("Sectoid", "usr/share/games/fretsonfire/data/songs/sectoid", ("guitar.ogg",)),
    "asc-music": Source("Advanced Strategic Command", "usr/share/games/asc/music"),
    "hyperrogue-music": Source("HyperRogue", "usr/share/hyperrogue/music"),
    "nexuiz-music": Source("Nexuiz", "sound/cdtracks", archive="usr/share/games/nexuiz/data/music.pk3"),
    "planetblupi-music-ogg": Source("Planet Blupi", "usr/share/planetblupi/music"),
    "singularity-music": Source("Endgame: Singularity", "usr/share/games/singularity/music"),
    "ufoai-music": Source("UFO: Alien Invasion", "music", archive="usr/share/games/ufoai/base/0music.pk3",
                          album_of=_ufoai_album),
    "warzone2100-music": Source("Warzone 2100", "usr/share/games/warzone2100/music/albums", album_of=_warzone_album),
}
TUNING = ("wesnoth-1.16-music", "drascula-music", "fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid", "asc-music")
HELD_OUT = tuple(p for p in PACKAGES if p not in TUNING)
DEFAULT_CACHE = Path(os.environ.get("NAVEMBED_RECORDINGS_DIR", Path.home() / ".cache" / "navembed" / "recordings"))


class RecordingsUnavailable(RuntimeError):
    """The Debian archive could not be reached or a package did not unpack."""


@dataclass(frozen=True)
class Recording:
    """One real recording: its file, album label, title, length and package."""

    path: Path
    album: str
    title: str
    duration_seconds: float
    package: str = ""


def _extracted(cache_dir: Path, archive: str) -> Path:
    return cache_dir / f"{archive}.extracted"


def ensure_recordings(cache_dir: Path = DEFAULT_CACHE, packages: tuple[str, ...] = tuple(PACKAGES)) -> Path:
    """Download and unpack the packages into ``cache_dir`` once; return it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for package in packages:
        marker = cache_dir / f".{package}.unpacked"
        if not marker.exists():
            with tempfile.TemporaryDirectory(prefix="navembed-deb-") as tmp:
                fetched = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
                debs = list(Path(tmp).glob("*.deb"))
                if fetched.returncode != 0 or not debs:
                    raise RecordingsUnavailable(f"apt-get download {package} failed: {fetched.stderr.strip()[-300:]}")
                subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(cache_dir)], check=True)
            marker.touch()
        archive = PACKAGES[package].archive
        if archive and not (_extracted(cache_dir, archive) / ".done").exists():
            _extract_audio(cache_dir / archive, _extracted(cache_dir, archive))
    return cache_dir


def _extract_audio(archive: Path, into: Path) -> None:
    """The audio members of a zip archive, written under ``into`` (member paths are kept, confined)."""
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            name = Path(member.filename)
            if member.is_dir() or name.suffix.lower() not in AUDIO_SUFFIXES or ".." in name.parts or name.is_absolute():
                continue
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            with zipped.open(member) as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            partial.replace(target)
    (into / ".done").touch()


def real_recordings(cache_dir: Path = DEFAULT_CACHE, *, min_seconds: float = 0.0,
                    max_seconds: float = float("inf"), packages: tuple[str, ...] = tuple(PACKAGES)) -> list[Recording]:
    """Every recording of ``packages`` whose length is within the bounds, in a stable order."""
    import av  # imported here: the module is also read by tests that only need the recipe

    root = ensure_recordings(cache_dir, packages)
    found: list[Recording] = []
    for package in packages:
        source = PACKAGES[package]
        base = _extracted(root, source.archive) if source.archive else root
        for path in sorted((base / source.folder).rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES or path.name in source.skipped or path.name.startswith("."):
                continue
            album = source.album_of(path) if source.album_of else source.album
            if album is None:
                continue
            try:
                with av.open(str(path)) as container:
                    seconds = float(container.duration or 0) / 1_000_000
            except av.error.FFmpegError:  # one HyperRogue file does not open in FFmpeg: not a usable recording
                continue
            if min_seconds <= seconds <= max_seconds:
                title = path.parent.name if path.name == "song.ogg" else path.stem
                found.append(Recording(path, album, title, seconds, package))
    return found
