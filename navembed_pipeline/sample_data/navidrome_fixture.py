"""Build real Navidrome SQLite databases, for tests and for the sample library.

The file is created from ``navidrome.sql`` (Navidrome's own DDL) and filled the way Navidrome's
scanner fills it: ``library`` rows with their roots and totals, a ``folder`` row for every directory
(ids as Navidrome's ``FolderID`` computes them), and ``media_file`` rows whose ``path`` is relative to
the library root with ``/`` separators and whose timestamps are in go-sqlite3's text format. Helpers
then change the database the way a later Navidrome scan would (file gone, file changed, row purged).
"""

import functools
import hashlib
import posixpath
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

SCHEMA_SQL = resources.files("navembed_pipeline.lib.library").joinpath("navidrome.sql")
HISTORY_SCHEMA_SQL = resources.files("navembed_pipeline.lib.library").joinpath("history.sql")
FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DEFAULT_BIT_RATE_KBPS = 320


@dataclass(frozen=True, slots=True)
class FixtureLibrary:
    """A ``library`` row as stored: ``path`` is the root as Navidrome sees it (inside its container, if
    any), unlike ``navidrome.Library.path``, which is the root mapped to this machine."""

    id: int
    name: str
    path: str


@dataclass(frozen=True, slots=True)
class FixtureTrack:
    """One audio file; ``path`` is relative to its library's root, with ``/`` separators."""

    path: str
    title: str = ""
    artist: str = ""
    album: str = ""
    album_artist: str = ""
    library_id: int = 1
    duration: float = 180.0
    size: int | None = None  # None: what the duration takes at 320 kbit/s
    missing: bool = False
    updated_at: datetime | None = None  # the file's mtime; None: FIXED_TIME
    id: str | None = None  # None: derived from library and path, shaped like Navidrome's ids
    track_number: int = 0
    disc_number: int = 1
    year: int = 0


@functools.lru_cache(maxsize=4096)
def navidrome_hash(*parts: str) -> str:
    """Navidrome's ``id.NewHash``: md5 over the parts (each followed by U+200B), base62, 22 chars."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        digest.update(part.encode())
        digest.update("\u200b".encode())
    number = int.from_bytes(digest.digest(), "big")
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)).rjust(22, "0")


def folder_id(library_id: int, folder_path: str) -> str:
    """Navidrome's ``model.FolderID`` for a folder path relative to the library root."""
    clean = posixpath.normpath(folder_path.strip("/")) if folder_path.strip("/") else "."
    return navidrome_hash(f"{library_id}:{clean}")


def go_timestamp(moment: datetime) -> str:
    """Format like go-sqlite3 stores a ``time.Time``: ``2006-01-02 15:04:05.999999999-07:00``."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0").rstrip(".")
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S}{fraction}{offset[:3]}:{offset[3:]}"


def create_navidrome_db(
    db_path: str | Path,
    *,
    libraries: Sequence[FixtureLibrary],
    tracks: Sequence[FixtureTrack],
    wal: bool = False,
    now: datetime = FIXED_TIME,
) -> list[str]:
    """Create a new Navidrome database at ``db_path``; return the track ids in ``tracks`` order.

    ``wal=True`` switches it to WAL, as a running Navidrome has it. Refuses to overwrite a file.
    """
    db_path = Path(db_path)
    if db_path.exists():
        raise FileExistsError(f"{db_path} exists; the fixture only creates new databases")
    with closing(_connect(db_path)) as conn:
        conn.executescript(f"BEGIN; {SCHEMA_SQL.read_text()} {HISTORY_SCHEMA_SQL.read_text()} COMMIT;")  # one fsync, not one per statement
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
        with conn:
            conn.executemany(
                "INSERT INTO library (id, name, path, last_scan_at, updated_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(lib.id, lib.name, lib.path, *[go_timestamp(now)] * 3) for lib in libraries],
            )
        return _insert_tracks(conn, tracks, now=now)


@dataclass(frozen=True, slots=True)
class FixtureUser:
    """A ``user`` row; ``library_ids`` are its ``user_library`` rows (admins see every library anyway)."""

    user_name: str
    is_admin: bool = False
    library_ids: tuple[int, ...] = (1,)
    id: str | None = None  # None: derived from the user name, shaped like Navidrome's ids


@dataclass(frozen=True, slots=True)
class FixtureAnnotation:
    """An ``annotation`` row, as Navidrome writes it when a user plays, rates or stars an item."""

    user_name: str
    item_id: str
    play_count: int = 0
    play_date: datetime | None = None
    rating: int = 0
    starred: bool = False
    starred_at: datetime | None = None
    item_type: str = "media_file"


def user_id(user_name: str) -> str:
    return navidrome_hash("user", user_name)


def add_users(db_path: str | Path, users: Sequence[FixtureUser], *, now: datetime = FIXED_TIME) -> list[str]:
    """Create users (and their library access) as Navidrome's user admin does; return their ids."""
    ids = [u.id or user_id(u.user_name) for u in users]
    with closing(_connect(db_path)) as conn, conn:
        conn.executemany(
            'INSERT INTO "user" (id, user_name, name, email, password, is_admin, created_at, updated_at)'
            " VALUES (?, ?, ?, '', '', ?, ?, ?)",
            [(i, u.user_name, u.user_name.title(), int(u.is_admin), go_timestamp(now), go_timestamp(now))
             for i, u in zip(ids, users, strict=True)])
        conn.executemany("INSERT INTO user_library (user_id, library_id) VALUES (?, ?)",
                         [(i, lib) for i, u in zip(ids, users, strict=True) for lib in u.library_ids])
    return ids


def annotate(db_path: str | Path, annotations: Sequence[FixtureAnnotation]) -> None:
    """Record plays, ratings and stars (one row per user and item, as Navidrome keeps them)."""
    with closing(_connect(db_path)) as conn, conn:
        names = dict(conn.execute('SELECT user_name, id FROM "user"').fetchall())
        conn.executemany(
            "INSERT INTO annotation (user_id, item_id, item_type, play_count, play_date, rating, starred,"
            " starred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(names[a.user_name], a.item_id, a.item_type, a.play_count,
              go_timestamp(a.play_date) if a.play_date else None, a.rating, int(a.starred),
              go_timestamp(a.starred_at) if a.starred_at else None) for a in annotations])


def add_tracks(db_path: str | Path, tracks: Sequence[FixtureTrack], *, now: datetime = FIXED_TIME) -> list[str]:
    """Add tracks to an existing fixture database, as a scan finding new files would."""
    with closing(_connect(db_path)) as conn:
        return _insert_tracks(conn, tracks, now=now)


def mark_missing(db_path: str | Path, track_id: str, *, missing: bool = True, now: datetime = FIXED_TIME) -> None:
    """Flag a track's file as gone (or back), stamping ``updated_at`` as Navidrome's MarkMissing does."""
    _update(db_path, "UPDATE media_file SET missing = ?, updated_at = ? WHERE id = ?",
            (int(missing), go_timestamp(now), track_id))


def touch_track(db_path: str | Path, track_id: str, *, updated_at: datetime, size: int | None = None) -> None:
    """Record that a track's file changed: new mtime, and optionally a new size."""
    _update(db_path, "UPDATE media_file SET updated_at = ?, size = coalesce(?, size) WHERE id = ?",
            (go_timestamp(updated_at), size, track_id))


def delete_track(db_path: str | Path, track_id: str) -> None:
    """Remove a track's row, as Navidrome's "purge missing files" does."""
    _update(db_path, "DELETE FROM media_file WHERE id = ?", (track_id,))


def _connect(db_path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA foreign_keys=ON")  # as Navidrome's DSN sets it
    return conn


def _update(db_path: str | Path, sql: str, params: tuple) -> None:
    with closing(_connect(db_path)) as conn, conn:
        if conn.execute(sql, params).rowcount != 1:
            raise KeyError(f"no media_file row with id {params[-1]!r} in {db_path}")
        _refresh_counts(conn)


def _insert_tracks(conn: sqlite3.Connection, tracks: Sequence[FixtureTrack], *, now: datetime) -> list[str]:
    with conn:
        conn.executemany(
            "INSERT OR IGNORE INTO folder (id, library_id, path, name, parent_id, updated_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row, go_timestamp(now), go_timestamp(now)) for row in _folder_rows(tracks)],
        )
        rows = [_media_file_row(track, now=now) for track in tracks]
        columns = list(rows[0]) if rows else []
        if rows:  # an empty library is valid (tracks are added later, as a first scan would)
            conn.executemany(
                f"INSERT INTO media_file ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [tuple(row.values()) for row in rows],
            )
        _refresh_counts(conn)
    return [row["id"] for row in rows]


def _folder_rows(tracks: Iterable[FixtureTrack]) -> list[tuple[str, int, str, str, str]]:
    """``(id, library_id, path, name, parent_id)`` for every directory holding a track, roots included."""
    folders: dict[tuple[int, str], None] = {}
    for track in tracks:
        directory = posixpath.dirname(track.path.strip("/"))
        while True:
            folders[(track.library_id, directory or ".")] = None
            if not directory:
                break
            directory = posixpath.dirname(directory)
    rows = []
    for library_id, directory in folders:
        if directory == ".":
            rows.append((folder_id(library_id, "."), library_id, "", ".", ""))
            continue
        parent, name = posixpath.split(directory)
        parent = parent or "."
        rows.append((folder_id(library_id, directory), library_id, parent, name, folder_id(library_id, parent)))
    return rows


def _media_file_row(track: FixtureTrack, *, now: datetime) -> dict[str, object]:
    rel_path = track.path.strip("/")
    album_artist = track.album_artist or track.artist
    mtime = go_timestamp(track.updated_at or now)
    return {
        "id": track.id or navidrome_hash(f"{track.library_id}:{rel_path}"),
        "pid": navidrome_hash("pid", f"{track.library_id}:{rel_path}"),
        "library_id": track.library_id,
        "folder_id": folder_id(track.library_id, posixpath.dirname(rel_path)),
        "path": rel_path,
        "title": track.title,
        "album": track.album,
        "artist": track.artist,
        "album_artist": album_artist,
        "artist_id": navidrome_hash(track.artist.lower()),
        "album_artist_id": navidrome_hash(album_artist.lower()),
        "album_id": navidrome_hash(str(track.library_id), album_artist.lower(), track.album.lower()),
        "order_title": track.title.lower(),
        "order_album_name": track.album.lower(),
        "order_artist_name": track.artist.lower(),
        "order_album_artist_name": album_artist.lower(),
        "track_number": track.track_number,
        "disc_number": track.disc_number,
        "year": track.year,
        "suffix": posixpath.splitext(rel_path)[1].lstrip(".").lower(),
        "duration": track.duration,
        "size": track.size if track.size is not None else int(track.duration * _DEFAULT_BIT_RATE_KBPS * 125),
        "bit_rate": _DEFAULT_BIT_RATE_KBPS,
        "sample_rate": 44100,
        "channels": 2,
        "missing": int(track.missing),
        "updated_at": mtime,
        "birth_time": mtime,
        "created_at": go_timestamp(now),
    }


def _refresh_counts(conn: sqlite3.Connection) -> None:
    """Keep folder and library totals as a finished scan leaves them."""
    # A join, not a correlated subquery: without ANALYZE stats SQLite would pick the (missing, ...) index.
    conn.execute("UPDATE folder SET num_audio_files = 0")
    conn.execute(
        "UPDATE folder SET num_audio_files = c.n FROM (SELECT folder_id, count(*) AS n FROM media_file"
        " WHERE missing = 0 GROUP BY folder_id) AS c WHERE c.folder_id = folder.id"
    )
    conn.execute(
        """UPDATE library SET
             total_songs = (SELECT count(*) FROM media_file WHERE library_id = library.id AND missing = 0),
             total_files = (SELECT count(*) FROM media_file WHERE library_id = library.id AND missing = 0),
             total_missing_files = (SELECT count(*) FROM media_file WHERE library_id = library.id AND missing = 1),
             total_size = (SELECT coalesce(sum(size), 0) FROM media_file WHERE library_id = library.id AND missing = 0),
             total_duration = (SELECT coalesce(sum(duration), 0) FROM media_file
                               WHERE library_id = library.id AND missing = 0),
             total_folders = (SELECT count(*) FROM folder WHERE library_id = library.id)"""
    )
