"""The listening-history reader: users, library access and annotations from a real-schema navidrome.db,
read-only, and old databases (no annotation table, no user table, the pre-0.53 annotation shape)."""

import hashlib
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from navembed_pipeline.lib.errors import LibraryError
from navembed_pipeline.lib.library.history import NavidromeHistory
from navembed_pipeline.sample_data.navidrome_fixture import (FixtureAnnotation, FixtureLibrary, FixtureTrack,
                                                             FixtureUser, add_users, annotate, create_navidrome_db)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIBRARIES = [FixtureLibrary(1, "Music", "/music"), FixtureLibrary(2, "Vinyl", "/vinyl")]
TRACKS = [FixtureTrack("a/one.flac", title="One", artist="A"), FixtureTrack("b/two.flac", title="Two", artist="B"),
          FixtureTrack("c/three.flac", title="Three", artist="C", library_id=2)]


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "navidrome.db"
    ids = create_navidrome_db(path, libraries=LIBRARIES, tracks=TRACKS)
    add_users(path, [FixtureUser("admin", is_admin=True, library_ids=(1,)), FixtureUser("bob", library_ids=(1,)),
                     FixtureUser("Carol", library_ids=(1, 2)), FixtureUser("dave", library_ids=())])
    annotate(path, [
        FixtureAnnotation("bob", ids[0], play_count=7, play_date=NOW - timedelta(days=1), rating=4),
        FixtureAnnotation("bob", ids[1], starred=True, starred_at=NOW - timedelta(days=300)),
        FixtureAnnotation("Carol", ids[2], play_count=2, play_date=NOW - timedelta(days=40), starred=True,
                          starred_at=NOW - timedelta(days=2)),
        FixtureAnnotation("Carol", "album-id-1", item_type="album", starred=True, starred_at=NOW),
        FixtureAnnotation("Carol", "artist-id-1", item_type="artist", starred=True, starred_at=NOW),
    ])
    return path, ids


def test_users_with_their_libraries_admins_see_all(db) -> None:
    path, _ = db
    users = {u.user_name: u for u in NavidromeHistory(path).users()}
    assert sorted(users) == ["Carol", "admin", "bob", "dave"]
    assert users["admin"].is_admin and users["admin"].library_ids is None and users["admin"].sees(2)
    assert users["bob"].library_ids == frozenset({1}) and not users["bob"].sees(2)
    assert users["Carol"].library_ids == frozenset({1, 2})
    assert users["dave"].library_ids == frozenset() and not users["dave"].sees(1)


def test_histories_differ_per_user_with_dates_and_stars(db) -> None:
    path, ids = db
    reader = NavidromeHistory(path)
    histories = {h.user.user_name: h for h in reader.histories().values()}
    bob = histories["bob"]
    assert {a.track_id for a in bob.tracks} == {ids[0], ids[1]}
    played = bob.played()
    assert [a.track_id for a in played] == [ids[0]] and played[0].play_count == 7 and played[0].rating == 4
    assert played[0].play_date == NOW - timedelta(days=1)
    assert [a.track_id for a in bob.starred()] == [ids[1]] and bob.starred()[0].starred_at == NOW - timedelta(days=300)
    assert bob.played_since(NOW - timedelta(days=14)) == {ids[0]}
    carol = histories["Carol"]
    assert [a.track_id for a in carol.tracks] == [ids[2]]
    assert carol.starred_albums == {"album-id-1"} and carol.starred_artists == {"artist-id-1"}
    assert carol.played_since(NOW - timedelta(days=14)) == set()
    assert histories["dave"].empty and histories["admin"].empty
    assert reader.history(bob.user) == bob


def test_find_user_by_id_or_case_insensitive_name(db) -> None:
    path, _ = db
    reader = NavidromeHistory(path)
    carol = reader.find_user("carol")
    assert carol is not None and carol.user_name == "Carol"
    assert reader.find_user(carol.id) == carol
    assert reader.find_user("nobody") is None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reads_never_write_the_database(db) -> None:
    path, _ = db
    before = _digest(path)
    reader = NavidromeHistory(path)
    reader.histories()
    reader.find_user("bob")
    assert _digest(path) == before
    assert not path.with_name(path.name + "-wal").exists()


def _execute(path: Path, sql: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(sql)


def test_a_database_without_annotation_has_users_and_no_history(db) -> None:
    path, _ = db
    _execute(path, "DROP TABLE annotation;")
    reader = NavidromeHistory(path)
    histories = reader.histories()
    assert len(histories) == 4 and all(h.empty for h in histories.values())


def test_a_database_without_users_or_user_library(db) -> None:
    path, _ = db
    _execute(path, "DROP TABLE user_library;")
    users = {u.user_name: u for u in NavidromeHistory(path).users()}
    assert users["bob"].library_ids is None  # before Navidrome 0.58 every user saw the one library
    _execute(path, "DROP TABLE annotation; DROP TABLE user;")
    assert NavidromeHistory(path).users() == [] and NavidromeHistory(path).histories() == {}


def test_empty_annotation_table(db) -> None:
    path, _ = db
    _execute(path, "DELETE FROM annotation;")
    assert all(h.empty for h in NavidromeHistory(path).histories().values())


def test_the_old_annotation_shape_with_ann_id_and_without_rated_at(db) -> None:
    """Navidrome < 0.53 (migration 20200208222418's table): an ann_id key, no rated_at, NULL counts."""
    path, ids = db
    _execute(path, f"""
        DROP TABLE annotation;
        CREATE TABLE annotation (ann_id varchar(255) not null primary key, user_id varchar(255) default '' not null,
            item_id varchar(255) default '' not null, item_type varchar(255) default '' not null,
            play_count integer default 0, play_date datetime, rating integer default 0,
            starred bool default FALSE not null, starred_at datetime, unique (user_id, item_id, item_type));
        INSERT INTO annotation VALUES ('x1', (SELECT id FROM user WHERE user_name = 'bob'), '{ids[0]}', 'media_file',
            NULL, '2024-05-01T10:00:00Z', NULL, 1, '0000-00-00 00:00:00');
    """)
    bob = next(h for h in NavidromeHistory(path).histories().values() if h.user.user_name == "bob")
    (only,) = bob.tracks
    assert only.play_count == 0 and only.rating == 0 and only.starred and only.starred_at is None
    assert only.play_date == datetime(2024, 5, 1, 10, tzinfo=UTC) and only.rated_at is None


def test_missing_file_and_not_a_database_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no such file"):
        NavidromeHistory(tmp_path / "absent.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(LibraryError, match="listening history"):
        NavidromeHistory(junk).users()


def test_the_schema_file_matches_what_the_fixture_creates(db) -> None:
    """The fixture builds annotation/user/user_library from history.sql, verbatim."""
    path, _ = db
    with closing(sqlite3.connect(path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(annotation)")]
    assert columns == ["user_id", "item_id", "item_type", "play_count", "play_date", "rating", "starred",
                       "starred_at", "rated_at"]
