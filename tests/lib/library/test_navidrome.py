"""The Navidrome reader: read-only, multi-library, path-mapped, and clear about bad databases."""

import os
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from navembed_pipeline.lib.errors import LibraryError
from navembed_pipeline.lib.library import navidrome
from navembed_pipeline.lib.library.navidrome import EPOCH, NavidromeLibrary, map_path, parse_timestamp
from navembed_pipeline.sample_data.navidrome_fixture import (FixtureLibrary, FixtureTrack, create_navidrome_db,
                                                             mark_missing)

LIBRARIES = [FixtureLibrary(1, "Music Library", "/music"), FixtureLibrary(2, "Vinyl Rips", "/srv/vinyl")]
MTIME = datetime(2025, 6, 7, 8, 9, 10, 500000, tzinfo=timezone(timedelta(hours=2)))
TRACKS = [
    FixtureTrack("Artist A/Album 1/01 - One.flac", title="One", artist="Artist A", album="Album 1",
                 duration=201.5, size=12345678, updated_at=MTIME, track_number=1),
    FixtureTrack("Artist A/Album 1/02 - Two.mp3", title="Two", artist="Artist A", album="Album 1",
                 album_artist="Various", track_number=2),
    FixtureTrack("Gone/03 - Three.flac", title="Three", artist="Artist B", missing=True),
    FixtureTrack("Side A/04 - Four.ogg", title="Four", artist="Artist C", library_id=2),
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "navidrome.db"
    create_navidrome_db(path, libraries=LIBRARIES, tracks=TRACKS)
    return path


def by_title(library: NavidromeLibrary) -> dict:
    return {track.title: track for track in library.tracks()}


def test_tracks_resolve_paths_under_each_librarys_root(db: Path) -> None:
    tracks = by_title(NavidromeLibrary(db))
    assert tracks["One"].path == Path("/music/Artist A/Album 1/01 - One.flac")
    assert tracks["Four"].path == Path("/srv/vinyl/Side A/04 - Four.ogg")
    assert (tracks["Four"].library_id, tracks["Four"].library_name) == (2, "Vinyl Rips")


def test_track_carries_navidromes_metadata(db: Path) -> None:
    one = by_title(NavidromeLibrary(db))["One"]
    assert (one.artist, one.album, one.album_artist, one.suffix) == ("Artist A", "Album 1", "Artist A", "flac")
    assert (one.duration_seconds, one.size) == (201.5, 12345678)
    assert one.updated_at == MTIME and one.updated_at.tzinfo is not None
    assert one.display_name == "Artist A - One"


def test_missing_rows_are_skipped_everywhere(db: Path) -> None:
    library = NavidromeLibrary(db)
    one = by_title(library)["One"]
    mark_missing(db, one.id)
    assert set(by_title(library)) == {"Two", "Four"}  # "Three" was missing from the start
    assert (library.count(), library.count_missing()) == (2, 2)
    assert library.get([one.id]) == {}


def test_library_filter_selects_tracks_and_counts(db: Path) -> None:
    library = NavidromeLibrary(db)
    assert [t.title for t in library.tracks(library_ids=[2])] == ["Four"]
    assert library.count(library_ids=[1]) == 2
    assert library.count(library_ids=[]) == 0


def test_tracks_are_ordered_by_id(db: Path) -> None:
    ids = [track.id for track in NavidromeLibrary(db).tracks()]
    assert ids == sorted(ids) and len(ids) == 3


def test_get_returns_known_present_tracks_by_id(db: Path) -> None:
    library = NavidromeLibrary(db)
    one = by_title(library)["One"]
    assert library.get([one.id, "no-such-id", one.id]) == {one.id: one}


def test_libraries_lists_roots(db: Path) -> None:
    libraries = NavidromeLibrary(db).libraries()
    assert [(lib.id, lib.name, lib.path) for lib in libraries] == [
        (1, "Music Library", Path("/music")), (2, "Vinyl Rips", Path("/srv/vinyl"))
    ]


def test_path_map_rewrites_docker_mount_roots(db: Path) -> None:
    library = NavidromeLibrary(db, path_map={"/music": "/mnt/nas/music"})
    assert by_title(library)["One"].path == Path("/mnt/nas/music/Artist A/Album 1/01 - One.flac")
    assert by_title(library)["Four"].path == Path("/srv/vinyl/Side A/04 - Four.ogg")
    assert library.libraries()[0].path == Path("/mnt/nas/music")


def test_path_map_matches_whole_components_and_prefers_the_longest_prefix() -> None:
    path_map = {"/music": "/nas", "/music/classical/": "/archive/"}
    assert map_path("/musicals/a.flac", path_map) == "/musicals/a.flac"
    assert map_path("/music/classical/b.flac", path_map) == "/archive/b.flac"
    assert map_path("/music", path_map) == "/nas"
    assert map_path("/music/x.flac", None) == "/music/x.flac"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-07 08:09:10.123456789+02:00", datetime(2025, 6, 7, 6, 9, 10, 123456, tzinfo=UTC)),
        ("2025-06-07T08:09:10Z", datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)),
        ("2025-06-07 08:09:10", datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)),
        ("0000-00-00 00:00:00", EPOCH),
        (None, EPOCH),
        ("garbage", EPOCH),
    ],
)
def test_timestamps_parse_to_aware_datetimes(text: str | None, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


def test_reading_leaves_the_database_file_untouched(db: Path) -> None:
    before = (db.read_bytes(), db.stat().st_mtime_ns, sorted(os.listdir(db.parent)))
    library = NavidromeLibrary(db)
    list(library.tracks())
    library.count(), library.libraries(), library.get(["x"])
    assert (db.read_bytes(), db.stat().st_mtime_ns, sorted(os.listdir(db.parent))) == before


def test_reads_while_a_wal_writer_holds_an_open_transaction(tmp_path: Path) -> None:
    db = tmp_path / "navidrome.db"
    create_navidrome_db(db, libraries=LIBRARIES, tracks=TRACKS, wal=True)
    library = NavidromeLibrary(db, busy_timeout_s=0.05)
    with closing(sqlite3.connect(db)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE media_file SET title = 'Renamed' WHERE title = 'One'")
        assert "One" in by_title(library)  # not blocked, and sees only committed data
        writer.commit()
        assert "Renamed" in by_title(library)


def test_paused_iteration_pins_no_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(navidrome, "PAGE_SIZE", 1)
    db = tmp_path / "navidrome.db"
    create_navidrome_db(db, libraries=LIBRARIES, tracks=TRACKS, wal=True)
    pages = NavidromeLibrary(db).tracks()
    first = next(pages)
    with closing(sqlite3.connect(db, timeout=0.1)) as writer:
        writer.execute("UPDATE media_file SET title = 'Late' WHERE id > ?", (first.id,))
        writer.commit()
        busy, _, _ = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0  # Navidrome can checkpoint while a consumer sits on the iterator
    assert [track.title for track in pages] == ["Late", "Late"]


def test_database_with_uri_characters_in_its_path_opens(tmp_path: Path) -> None:
    db = tmp_path / "odd ?dir #1 %20" / "navidrome.db"
    db.parent.mkdir()
    create_navidrome_db(db, libraries=LIBRARIES, tracks=TRACKS)
    assert NavidromeLibrary(db).count() == 3


def test_missing_path_fails_without_creating_a_file(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    with pytest.raises(LibraryError, match="no such file"):
        NavidromeLibrary(db)
    assert not db.exists()


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="not a file"):
        NavidromeLibrary(tmp_path)


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        (["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"], "not a Navidrome database"),
        ([], "not a Navidrome database"),
        (["CREATE TABLE library (id INTEGER PRIMARY KEY, name TEXT, path TEXT)",
          "CREATE TABLE media_file (id TEXT PRIMARY KEY, path TEXT, title TEXT)"], "older than 0.55"),
    ],
    ids=["another-program", "zero-bytes", "pre-0.55-navidrome"],
)
def test_sqlite_database_without_navidromes_tables_is_rejected(tmp_path: Path, ddl: list[str], message: str) -> None:
    db = tmp_path / "other.db"
    db.touch()  # SQLite takes a zero-byte file for an empty database
    with closing(sqlite3.connect(db)) as conn:
        for statement in ddl:
            conn.execute(statement)
    with pytest.raises(LibraryError, match=message):
        NavidromeLibrary(db)


def test_non_sqlite_file_is_rejected(tmp_path: Path) -> None:
    db = tmp_path / "navidrome.db"
    db.write_text("this is a text file, not a database\n" * 50)
    with pytest.raises(LibraryError, match="not an SQLite database"):
        NavidromeLibrary(db)


def test_exclusively_locked_database_fails_after_the_busy_timeout(db: Path) -> None:
    with closing(sqlite3.connect(db)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(LibraryError, match="locked by another process"):
            NavidromeLibrary(db, busy_timeout_s=0.1)
        assert time.monotonic() - started >= 0.1


def test_lock_taken_after_opening_surfaces_as_library_error(db: Path) -> None:
    library = NavidromeLibrary(db, busy_timeout_s=0.05)
    with closing(sqlite3.connect(db)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(LibraryError, match="locked"):
            list(library.tracks())


def test_five_thousand_tracks_page_through_quickly(tmp_path: Path) -> None:
    db = tmp_path / "big.db"
    tracks = [FixtureTrack(f"Artist {i % 50}/Album {i % 500}/{i:05d}.flac", title=f"T{i}", artist=f"A{i % 50}",
                           library_id=1 + i % 2, missing=i % 10 == 0) for i in range(5000)]
    create_navidrome_db(db, libraries=LIBRARIES, tracks=tracks)
    library = NavidromeLibrary(db)
    started = time.monotonic()
    ids = [track.id for track in library.tracks()]
    elapsed = time.monotonic() - started
    assert len(ids) == len(set(ids)) == library.count() == 4500
    assert ids == sorted(ids)
    assert len(library.get(ids[:2000])) == 2000
    assert elapsed < 2.0, f"iterating 4500 tracks took {elapsed:.2f}s"


def test_path_map_setting_parses_into_pairs() -> None:
    from navembed_pipeline.lib.library.navidrome import parse_path_map

    assert parse_path_map(" /music = /mnt/nas/music ;/b=/c;junk") == {"/music": "/mnt/nas/music", "/b": "/c"}
    assert parse_path_map("") == {}
