"""The Navidrome fixture writes databases shaped the way Navidrome's scanner leaves them."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from navembed_pipeline.sample_data.navidrome_fixture import (
    FixtureLibrary,
    FixtureTrack,
    add_tracks,
    create_navidrome_db,
    delete_track,
    folder_id,
    go_timestamp,
    mark_missing,
    navidrome_hash,
    touch_track,
)

LIBRARIES = [FixtureLibrary(1, "Music Library", "/music")]
TRACKS = [FixtureTrack("A/B/01.FLAC", title="One", artist="A"), FixtureTrack("A/02.mp3", title="Two", artist="A")]
# Every column Navidrome's model.MediaFile / model.Library persist (their `structs`/`db` tags).
MEDIA_FILE_MODEL_COLUMNS = {
    "id", "pid", "library_id", "folder_id", "path", "title", "album", "artist_id", "artist", "album_artist_id",
    "album_artist", "album_id", "has_cover_art", "track_number", "disc_number", "disc_subtitle", "year", "date",
    "original_year", "original_date", "release_year", "release_date", "size", "suffix", "duration", "bit_rate",
    "sample_rate", "bit_depth", "channels", "codec", "probe_data", "genre", "sort_title", "sort_album_name",
    "sort_artist_name", "sort_album_artist_name", "order_title", "order_album_name", "order_artist_name",
    "order_album_artist_name", "compilation", "comment", "lyrics", "bpm", "explicit_status", "catalog_num",
    "mbz_recording_id", "mbz_release_track_id", "mbz_album_id", "mbz_release_group_id", "mbz_artist_id",
    "mbz_album_artist_id", "mbz_album_type", "mbz_album_comment", "rg_album_gain", "rg_album_peak",
    "rg_track_gain", "rg_track_peak", "tags", "participants", "missing", "birth_time", "created_at", "updated_at",
}
LIBRARY_MODEL_COLUMNS = {
    "id", "name", "path", "remote_path", "last_scan_at", "last_scan_started_at", "full_scan_in_progress",
    "updated_at", "created_at", "total_songs", "total_albums", "total_artists", "total_folders", "total_files",
    "total_missing_files", "total_size", "total_duration", "default_new_users",
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "navidrome.db"
    create_navidrome_db(path, libraries=LIBRARIES, tracks=TRACKS)
    return path


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def columns(db: Path, table: str) -> set[str]:
    return {row[1] for row in query(db, f"PRAGMA table_info({table})")}


def test_schema_has_every_column_navidromes_models_persist(db: Path) -> None:
    assert MEDIA_FILE_MODEL_COLUMNS <= columns(db, "media_file")
    assert LIBRARY_MODEL_COLUMNS <= columns(db, "library")
    assert {"id", "library_id", "path", "name", "parent_id", "hash", "missing"} <= columns(db, "folder")


def test_ids_are_navidromes_md5_base62_hashes() -> None:
    # The expected values are Navidrome's own (model/id/id_test.go).
    assert navidrome_hash("test") == "5cLJPkLA5DK2BADhoeotPk"
    assert navidrome_hash("[unknown artist]") == "7lsE5pS09fPS1VuFqwXbia"


def test_timestamps_use_go_sqlite3s_text_format() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=timezone(timedelta(hours=-5)))
    assert go_timestamp(moment) == "2025-01-02 03:04:05.12-05:00"
    assert go_timestamp(datetime(2025, 1, 2, tzinfo=UTC)) == "2025-01-02 00:00:00+00:00"


def test_tracks_get_relative_paths_folders_and_suffixes(db: Path) -> None:
    rows = query(db, "SELECT path, suffix, folder_id, library_id FROM media_file ORDER BY path")
    assert rows == [("A/02.mp3", "mp3", folder_id(1, "A"), 1), ("A/B/01.FLAC", "flac", folder_id(1, "A/B"), 1)]


def test_every_directory_becomes_a_folder_chained_to_its_parent(db: Path) -> None:
    folders = {row[0]: row[1:] for row in query(db, "SELECT id, path, name, parent_id, num_audio_files FROM folder")}
    assert folders == {
        folder_id(1, "."): ("", ".", "", 0),
        folder_id(1, "A"): (".", "A", folder_id(1, "."), 1),
        folder_id(1, "A/B"): ("A", "B", folder_id(1, "A"), 1),
    }


def test_library_totals_match_its_tracks(db: Path) -> None:
    assert query(db, "SELECT total_songs, total_folders, total_duration FROM library") == [(2, 3, 360.0)]


def test_create_refuses_to_overwrite(db: Path) -> None:
    with pytest.raises(FileExistsError):
        create_navidrome_db(db, libraries=LIBRARIES, tracks=[])


def test_wal_option_leaves_the_database_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    create_navidrome_db(db, libraries=LIBRARIES, tracks=TRACKS, wal=True)
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


def test_mark_missing_flags_the_row_and_stamps_updated_at(db: Path) -> None:
    (track_id,) = add_tracks(db, [FixtureTrack("C/03.ogg", title="Three")])
    later = datetime(2026, 3, 1, tzinfo=UTC)
    mark_missing(db, track_id, now=later)
    assert query(db, "SELECT missing, updated_at FROM media_file WHERE id = ?", (track_id,)) == [
        (1, go_timestamp(later))
    ]
    assert query(db, "SELECT total_missing_files FROM library") == [(1,)]


def test_touch_and_delete_change_one_row(db: Path) -> None:
    first, second = (row[0] for row in query(db, "SELECT id FROM media_file ORDER BY path"))
    touched = datetime(2026, 4, 1, tzinfo=UTC)
    touch_track(db, first, updated_at=touched, size=42)
    delete_track(db, second)
    assert query(db, "SELECT id, updated_at, size FROM media_file") == [(first, go_timestamp(touched), 42)]


def test_helpers_reject_unknown_ids(db: Path) -> None:
    with pytest.raises(KeyError):
        delete_track(db, "no-such-id")
