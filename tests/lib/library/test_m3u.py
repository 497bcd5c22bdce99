"""M3U8 playlists that Navidrome resolves to the exact media_file rows, written atomically, leaving
every playlist we did not write alone.

``navidrome_import`` below does what Navidrome's ``core/playlists/parse_m3u.go`` does with a playlist
file (at commit 295886cb9): ``#PLAYLIST:`` names it, other ``#`` lines are skipped, each line is trimmed,
``file://`` is unescaped, a relative line is joined to the playlist's folder (as Navidrome sees it) and
cleaned, the longest library root that contains the result wins, and the path relative to that root is
matched to ``media_file.path`` of that library, case-insensitively and NFC/NFD alike.
"""

import os
import posixpath
import sqlite3
import unicodedata
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from navembed_pipeline.lib.library import m3u
from navembed_pipeline.lib.library.m3u import (MANIFEST, MARKER, PlaylistSpec, PlaylistWriteError, is_ours,
                                               write_playlists)
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, map_path
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

BUILT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ["Björk/Homogénic/01 Jóga.flac", "日本のバンド/アルバム/02 曲.mp3", "#Hash Band/# One/03 #3.ogg",
         " Leading Space/x/04 Four.flac", "Plain/Album/05 Five.wav"]


def navidrome_import(playlist: Path, db: Path, *, to_navidrome: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """(name, media_file ids) as Navidrome would import ``playlist`` (a local path; ``to_navidrome`` maps
    local prefixes to Navidrome's own, the inverse of NAVEMBED_PATH_MAP)."""
    with closing(sqlite3.connect(db)) as conn:
        libraries = sorted(conn.execute("SELECT id, path FROM library").fetchall(), key=lambda r: -len(r[1]))
        folder = map_path(str(playlist.parent), to_navidrome)
        name, ids = playlist.stem, []
        for raw in playlist.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line.startswith("#PLAYLIST:"):
                name = line[len("#PLAYLIST:"):]
                continue
            if not line or line.startswith("#"):
                continue
            if line.startswith("file://"):
                line = unquote(line[len("file://"):])
            absolute = posixpath.normpath(line if line.startswith("/") else posixpath.join(folder, line))
            library = next(((i, p) for i, p in libraries if absolute == posixpath.normpath(p)
                            or absolute.startswith(posixpath.normpath(p) + "/")), None)
            assert library is not None, f"{line!r} is in no library"
            relative = posixpath.relpath(absolute, posixpath.normpath(library[1]))
            candidates = {unicodedata.normalize(f, relative) for f in ("NFC", "NFD")}
            rows = conn.execute(
                f"SELECT id FROM media_file WHERE library_id = ? AND path COLLATE NOCASE IN "
                f"({','.join('?' * len(candidates))})", (library[0], *candidates)).fetchall()
            assert len(rows) == 1, f"{line!r} → {relative!r} matches {rows}"
            ids.append(rows[0][0])
    return name, ids


def _library(tmp_path: Path, *, roots: dict[int, str], local: dict[int, Path]) -> tuple[Path, NavidromeLibrary]:
    """Two libraries whose roots Navidrome sees as ``roots`` and this machine as ``local``."""
    db = tmp_path / "navidrome.db"
    tracks = [FixtureTrack(name, title=f"T{i}", artist="A", library_id=1 + i % 2) for i, name in enumerate(NAMES)]
    create_navidrome_db(db, libraries=[FixtureLibrary(i, f"Library {i}", roots[i]) for i in roots], tracks=tracks)
    path_map = {roots[i]: str(local[i]) for i in roots if roots[i] != str(local[i])}
    return db, NavidromeLibrary(db, path_map=path_map or None)


def _spec(library: NavidromeLibrary, slug: str = "sound-01", title: str = "Sound of A") -> PlaylistSpec:
    tracks = sorted(library.tracks(), key=lambda t: t.title)
    return PlaylistSpec(slug=slug, title=title, comments=("why: a test",), tracks=tuple(tracks))


@pytest.mark.parametrize("where", ["inside the first library", "the first library's root", "outside every library"])
def test_paths_resolve_to_the_exact_media_files_with_local_roots(tmp_path: Path, where: str) -> None:
    local = {1: tmp_path / "music", 2: tmp_path / "vinyl"}
    db, library = _library(tmp_path, roots={i: str(p) for i, p in local.items()}, local=local)
    folder = {"inside the first library": local[1] / "Playlists" / "navembed",
              "the first library's root": local[1], "outside every library": tmp_path / "data" / "playlists"}[where]
    spec = _spec(library)
    report = write_playlists(folder, [spec], library.libraries(), built=BUILT)
    (written,) = report.written
    name, ids = navidrome_import(written, db)
    assert name == "navembed · Sound of A"
    assert ids == [t.id for t in spec.tracks] and report.unwritable_tracks == 0
    lines = [line for line in written.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    if where == "outside every library":
        assert all(line.startswith("/") for line in lines)
    else:  # the first library's tracks relative to the playlist, the second's absolute
        assert sum(not line.startswith("/") for line in lines) == 3
    if where == "the first library's root":  # lines Navidrome would misread get "./"
        assert "./#Hash Band/# One/03 #3.ogg" in lines


def test_paths_resolve_in_navidromes_namespace_when_its_roots_differ(tmp_path: Path) -> None:
    """Navidrome in a container sees /music and /vinyl; here they are mounted elsewhere (NAVEMBED_PATH_MAP)."""
    local = {1: tmp_path / "mnt" / "music", 2: tmp_path / "mnt" / "vinyl"}
    db, library = _library(tmp_path, roots={1: "/music", 2: "/vinyl"}, local=local)
    spec = _spec(library)
    for folder in (local[1] / "navembed", tmp_path / "var" / "playlists"):
        (written,) = write_playlists(folder, [spec], library.libraries(), built=BUILT).written
        inverse = {str(local[1]): "/music", str(local[2]): "/vinyl"}
        assert navidrome_import(written, db, to_navidrome=inverse)[1] == [t.id for t in spec.tracks]
        text = written.read_text(encoding="utf-8")
        assert "/vinyl/日本のバンド/アルバム/02 曲.mp3" in text and str(tmp_path) not in text


def test_the_file_says_why_and_when_and_carries_the_marker(tmp_path: Path) -> None:
    local = {1: tmp_path / "music", 2: tmp_path / "vinyl"}
    _, library = _library(tmp_path, roots={i: str(p) for i, p in local.items()}, local=local)
    (written,) = write_playlists(tmp_path / "out", [_spec(library)], library.libraries(), built=BUILT).written
    lines = written.read_text(encoding="utf-8").splitlines()
    assert lines[:5] == ["#EXTM3U", "#PLAYLIST:navembed · Sound of A", MARKER,
                         "# built 2026-03-01 12:00 UTC by navembed", "# why: a test"]
    assert written.name == "navembed-sound-01.m3u8" and is_ours(written)
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)


def test_regeneration_replaces_ours_atomically_and_leaves_foreign_playlists(tmp_path: Path) -> None:
    local = {1: tmp_path / "music", 2: tmp_path / "vinyl"}
    _, library = _library(tmp_path, roots={i: str(p) for i, p in local.items()}, local=local)
    folder = local[1] / "playlists"
    folder.mkdir(parents=True)
    foreign = folder / "My Favourites.m3u8"
    foreign.write_text("#EXTM3U\n../Plain/Album/05 Five.wav\n", encoding="utf-8")
    taken = folder / "navembed-sound-09.m3u8"  # someone's own file under one of our names
    taken.write_text("#EXTM3U\n#PLAYLIST:mine\n", encoding="utf-8")
    first = write_playlists(folder, [_spec(library, "sound-01"), _spec(library, "sound-02"),
                                     _spec(library, "sound-09")], library.libraries(), built=BUILT)
    assert [p.name for p in first.written] == ["navembed-sound-01.m3u8", "navembed-sound-02.m3u8"]
    assert first.foreign_kept == (taken,) and taken.read_text(encoding="utf-8") == "#EXTM3U\n#PLAYLIST:mine\n"
    inode = (folder / "navembed-sound-01.m3u8").stat().st_ino
    second = write_playlists(folder, [_spec(library, "sound-01", "Renamed")], library.libraries(), built=BUILT)
    assert second.removed == (folder / "navembed-sound-02.m3u8",)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "My Favourites.m3u8", "navembed-sound-01.m3u8",
                                                         "navembed-sound-09.m3u8"]
    assert foreign.read_text(encoding="utf-8") == "#EXTM3U\n../Plain/Album/05 Five.wav\n"
    rewritten = folder / "navembed-sound-01.m3u8"
    assert "#PLAYLIST:navembed · Renamed" in rewritten.read_text(encoding="utf-8")
    assert rewritten.stat().st_ino != inode  # a new file renamed over the old, never rewritten in place


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    local = {1: tmp_path / "music", 2: tmp_path / "vinyl"}
    _, library = _library(tmp_path, roots={i: str(p) for i, p in local.items()}, local=local)
    folder = tmp_path / "out"
    write_playlists(folder, [_spec(library, "sound-01", "Old")], library.libraries(), built=BUILT)
    before = (folder / "navembed-sound-01.m3u8").read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(m3u.os, "fsync", failing_fsync)
    with pytest.raises(PlaylistWriteError, match="No space left"):
        write_playlists(folder, [_spec(library, "sound-01", "New")], library.libraries(), built=BUILT)
    assert (folder / "navembed-sound-01.m3u8").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "navembed-sound-01.m3u8"]


def test_the_manifest_cannot_make_it_remove_files_elsewhere_or_not_ours(tmp_path: Path) -> None:
    local = {1: tmp_path / "music", 2: tmp_path / "vinyl"}
    _, library = _library(tmp_path, roots={i: str(p) for i, p in local.items()}, local=local)
    folder = tmp_path / "out"
    folder.mkdir()
    outside = tmp_path / "precious.m3u8"
    outside.write_text(f"#EXTM3U\n{MARKER}\n", encoding="utf-8")
    unmarked = folder / "navembed-old.m3u8"
    unmarked.write_text("#EXTM3U\n", encoding="utf-8")
    (folder / MANIFEST).write_text('{"files": ["../precious.m3u8", "navembed-old.m3u8"]}', encoding="utf-8")
    report = write_playlists(folder, [_spec(library)], library.libraries(), built=BUILT)
    assert report.removed == () and outside.exists() and unmarked.exists()


def test_unsafe_slugs_and_unwritable_tracks(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "", ".hidden", "a b"):
        with pytest.raises(ValueError):
            m3u.file_name(bad)
    assert m3u.file_name("for-you-björk") == "navembed-for-you-björk.m3u8"
    local = {1: tmp_path / "music", 2: tmp_path / "vinyl"}
    _, library = _library(tmp_path, roots={i: str(p) for i, p in local.items()}, local=local)
    track = next(iter(library.tracks()))
    broken = track.__class__(**{**{f: getattr(track, f) for f in track.__slots__},
                                "path": Path(str(track.path) + "\nnext.flac")})
    report = write_playlists(tmp_path / "out", [PlaylistSpec("x", "X", (), (track, broken))],
                             library.libraries(), built=BUILT)
    assert report.unwritable_tracks == 1
    assert sum(not line.startswith("#") for line in report.written[0].read_text().splitlines()) == 1
    assert os.listdir(tmp_path / "out")
