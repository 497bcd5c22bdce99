"""Write playlists as M3U8 files that Navidrome imports, and only ever replace or remove our own.

How Navidrome reads them (``core/playlists/parse_m3u.go``, ``scanner/phase_4_playlists.go``): during a
scan it imports ``.m3u``/``.m3u8``/``.nsp`` files (not those whose name starts with a dot) from the
folders of its libraries that ``PlaylistsPath`` allows; ``#PLAYLIST:`` gives the name; every other
``#`` line is skipped; each remaining line, trimmed, is a path — an absolute one as it is, a relative
one joined to the playlist's own folder — that must fall under a library root, and is then matched
(case-insensitively, NFC or NFD) to ``media_file.path`` within that library.

So each track is written relative to the playlist's folder when both lie in the same library (the
relation holds inside and outside Navidrome's container alike), else as an absolute path in Navidrome's
own namespace (``library.path`` + ``media_file.path``). Lines that Navidrome would misread (starting
with ``#``, blanks, or ``file://``) get a ``./`` in front; a name with a line break cannot be written
and is left out.

Ownership: each file we write carries the ``MARKER`` line, and ``MANIFEST`` (a dot file, which
Navidrome ignores) lists the files of the last write. A rebuild replaces each file atomically (a
dot-named temporary file, fsynced, then ``os.replace``) and removes the files of the previous manifest
that it no longer writes — only those still carrying the marker. Any other file in the folder is left
alone, and a file of ours that someone replaced with their own (no marker) is neither overwritten
nor removed.
"""

import json
import os
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library.navidrome import Library, Track

PREFIX = "navembed · "
FILE_PREFIX = "navembed-"
SUFFIX = ".m3u8"
MARKER = "#NAVEMBED-GENERATED: this file is rewritten by navembed; edit a copy under another name"
MANIFEST = ".navembed-playlists.json"
FILE_MODE = 0o644  # Navidrome (often another user, in another container) must read them
_UNSAFE_START = ("#", "file://")


class PlaylistWriteError(NavembedError):
    """The playlists folder cannot be written."""


@dataclass(frozen=True)
class PlaylistSpec:
    """One playlist to write: ``slug`` names the file, ``title`` (prefixed) the playlist."""

    slug: str
    title: str
    comments: tuple[str, ...]
    tracks: tuple[Track, ...]


@dataclass(frozen=True)
class WriteReport:
    """What one ``write_playlists`` did."""

    directory: Path
    written: tuple[Path, ...]
    removed: tuple[Path, ...]
    foreign_kept: tuple[Path, ...]  # files of ours by name that someone else replaced: left alone
    unwritable_tracks: int  # tracks left out (a line break in the path, or no library to place them in)


def file_name(slug: str) -> str:
    """``navembed-<slug>.m3u8``; the slug may hold letters (any script), digits, ``-`` and ``_`` only."""
    if not slug or not all(c.isalnum() or c in "-_" for c in slug):
        raise ValueError(f"playlist slug {slug!r} must be letters, digits, '-' or '_'")
    return f"{FILE_PREFIX}{slug}{SUFFIX}"


def track_line(track: Track, directory: Path, libraries: Sequence[Library]) -> str | None:
    """The path line for ``track`` in a playlist in ``directory`` (local paths); None if unwritable."""
    library = next((lib for lib in libraries if lib.id == track.library_id), None)
    if library is None or "\n" in str(track.path) or "\r" in str(track.path):
        return None
    root = os.path.abspath(library.path)
    local = os.path.abspath(track.path)
    folder = os.path.abspath(directory)
    if _inside(folder, root):
        line = os.path.relpath(local, folder).replace(os.sep, "/")
        return f"./{line}" if line.startswith(_UNSAFE_START) or line != line.strip() else line
    relative = os.path.relpath(local, root).replace(os.sep, "/")
    base = library.navidrome_path or str(library.path)
    return posixpath.join(base.rstrip("/") or "/", relative)


def render(spec: PlaylistSpec, directory: Path, libraries: Sequence[Library], *, built: datetime,
           prefix: str = PREFIX) -> tuple[str, int]:
    """The file's text and how many tracks could not be written."""
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(prefix + spec.title)}", MARKER,
             f"# built {built:%Y-%m-%d %H:%M %Z} by navembed"]
    lines += [f"# {_one_line(c)}" for c in spec.comments]
    skipped = 0
    for track in spec.tracks:
        line = track_line(track, directory, libraries)
        if line is None:
            skipped += 1
            continue
        lines.append(f"#EXTINF:{int(round(track.duration_seconds))},{_one_line(track.display_name)}")
        lines.append(line)
    return "\n".join(lines) + "\n", skipped


def write_playlists(directory: Path, specs: Sequence[PlaylistSpec], libraries: Sequence[Library], *,
                    built: datetime, prefix: str = PREFIX) -> WriteReport:
    """Write ``specs`` into ``directory`` (created if needed), replacing and removing only our own files."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlaylistWriteError(f"cannot create the playlists folder {directory}: {exc}") from exc
    previous = _manifest(directory)
    written, foreign, skipped_total = [], [], 0
    names = [file_name(spec.slug) for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError("two playlists share one slug")
    for spec, name in zip(specs, names, strict=True):
        target = directory / name
        if target.exists() and not is_ours(target):
            foreign.append(target)
            continue
        text, skipped = render(spec, directory, libraries, built=built, prefix=prefix)
        skipped_total += skipped
        _atomic_write(target, text)
        written.append(target)
    removed = []
    for name in sorted(set(previous) - set(names)):
        stale = directory / name
        if Path(name).name == name and stale.is_file() and is_ours(stale):
            stale.unlink()
            removed.append(stale)
    _atomic_write(directory / MANIFEST, json.dumps(
        {"written_by": "navembed", "built": built.isoformat(), "files": sorted(p.name for p in written)}, indent=1))
    return WriteReport(directory, tuple(written), tuple(removed), tuple(foreign), skipped_total)


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a playlist navembed wrote (its marker line is among the first lines)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return any(line.rstrip("\n") == MARKER for _, line in zip(range(8), handle))
    except OSError:
        return False


def _manifest(directory: Path) -> list[str]:
    try:
        files = json.loads((directory / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str)]


def _atomic_write(target: Path, text: str) -> None:
    """Write ``text`` to a dot-named temporary file beside ``target``, fsync, then rename over it."""
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, FILE_MODE)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise PlaylistWriteError(f"cannot write {target}: {exc}") from exc


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _one_line(text: str) -> str:
    return " ".join(text.split())
