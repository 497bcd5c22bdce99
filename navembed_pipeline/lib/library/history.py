"""Read-only access to Navidrome's listening history: its users and their per-track annotations.

Navidrome keeps one ``annotation`` row per (user, item, item type): how often and when the user
last played it, a 0..5 rating, a star and when it was starred. Items are tracks (``media_file``),
albums and artists. ``user_library`` says which libraries a user may see; admins see all of them.
The schema is ``history.sql`` (from Navidrome's migrations).

Old databases are read as far as they go: no ``annotation`` table (or no ``user`` table) means no
history, no ``rated_at`` column means no rating dates, no ``user_library`` means every user sees
every library. The database is opened like ``navidrome.py`` opens it: ``mode=ro``, short reads.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from navembed_pipeline.lib.errors import LibraryError
from navembed_pipeline.lib.library.navidrome import DEFAULT_BUSY_TIMEOUT_S, EPOCH, parse_timestamp, read_only

TRACK_ITEM = "media_file"


@dataclass(frozen=True, slots=True)
class User:
    """A Navidrome user; ``library_ids`` None = every library (admins, and Navidrome < 0.58)."""

    id: str
    user_name: str
    name: str
    is_admin: bool
    library_ids: frozenset[int] | None = None

    def sees(self, library_id: int) -> bool:
        return self.library_ids is None or library_id in self.library_ids


@dataclass(frozen=True, slots=True)
class TrackAnnotation:
    """One user's history of one track; dates are None when Navidrome recorded none."""

    track_id: str
    play_count: int
    play_date: datetime | None
    rating: int
    starred: bool
    starred_at: datetime | None
    rated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ListeningHistory:
    """What one user did with the library: tracks played, rated or starred, and starred albums/artists."""

    user: User
    tracks: tuple[TrackAnnotation, ...] = ()
    starred_albums: frozenset[str] = frozenset()
    starred_artists: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.tracks or self.starred_albums or self.starred_artists)

    def played(self) -> list[TrackAnnotation]:
        """Tracks played at least once, most played first."""
        return sorted((a for a in self.tracks if a.play_count > 0), key=lambda a: (-a.play_count, a.track_id))

    def starred(self) -> list[TrackAnnotation]:
        """Starred tracks, most recently starred first."""
        return sorted((a for a in self.tracks if a.starred), key=lambda a: (a.starred_at or EPOCH, a.track_id),
                      reverse=True)

    def played_since(self, moment: datetime) -> set[str]:
        """Ids of tracks last played at or after ``moment``."""
        return {a.track_id for a in self.tracks if a.play_date is not None and a.play_date >= moment}


class NavidromeHistory:
    """Users and annotations of one Navidrome database, never written to."""

    def __init__(self, db_path: str | Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        """Check ``db_path`` exists; the tables are looked at on each read (Navidrome may migrate meanwhile)."""
        self.db_path = Path(db_path)
        self.busy_timeout_s = busy_timeout_s
        if not self.db_path.is_file():
            raise LibraryError(f"Navidrome database {self.db_path}: no such file; check the DB path setting")

    def users(self) -> list[User]:
        """Every user, by user name; none when the database has no ``user`` table."""
        with self._read() as conn:
            columns = _columns(conn, "user")
            if not {"id", "user_name"} <= columns:
                return []
            name = "name" if "name" in columns else "user_name"
            admin = "is_admin" if "is_admin" in columns else "0"
            rows = conn.execute(f'SELECT id, user_name, {name}, {admin} FROM "user" ORDER BY user_name').fetchall()
            access: dict[str, set[int]] = {}
            if {"user_id", "library_id"} <= _columns(conn, "user_library"):
                for user_id, library_id in conn.execute("SELECT user_id, library_id FROM user_library"):
                    access.setdefault(user_id, set()).add(int(library_id))
            limited = bool(_columns(conn, "user_library"))
        return [User(id=i, user_name=u, name=n or u, is_admin=bool(a),
                     library_ids=None if a or not limited else frozenset(access.get(i, ())))
                for i, u, n, a in rows]

    def library_ids(self) -> list[int]:
        """Every library's id (those a user does not see are left out of their mixes)."""
        with self._read() as conn:
            if not _columns(conn, "library"):
                return []
            return [int(i) for (i,) in conn.execute("SELECT id FROM library ORDER BY id")]

    def find_user(self, name_or_id: str) -> User | None:
        """The user with this id, else with this user name (case-insensitive, as Navidrome logs in)."""
        users = self.users()
        for user in users:
            if user.id == name_or_id:
                return user
        wanted = name_or_id.casefold()
        return next((u for u in users if u.user_name.casefold() == wanted), None)

    def history(self, user: User) -> ListeningHistory:
        """``user``'s annotations; empty when the database has no ``annotation`` table."""
        return self.histories([user])[user.id]

    def histories(self, users: list[User] | None = None) -> dict[str, ListeningHistory]:
        """Every user's (or ``users``') history, by user id, in one read."""
        users = self.users() if users is None else users
        tracks: dict[str, list[TrackAnnotation]] = {u.id: [] for u in users}
        albums: dict[str, set[str]] = {u.id: set() for u in users}
        artists: dict[str, set[str]] = {u.id: set() for u in users}
        with self._read() as conn:
            for row in _annotation_rows(conn):
                user_id, item_id, item_type, play_count, play_date, rating, starred, starred_at, rated_at = row
                if user_id not in tracks:
                    continue
                if item_type == TRACK_ITEM:
                    tracks[user_id].append(TrackAnnotation(
                        track_id=item_id, play_count=int(play_count or 0), play_date=_moment(play_date),
                        rating=int(rating or 0), starred=bool(starred), starred_at=_moment(starred_at),
                        rated_at=_moment(rated_at)))
                elif starred and item_type == "album":
                    albums[user_id].add(item_id)
                elif starred and item_type == "artist":
                    artists[user_id].add(item_id)
        return {u.id: ListeningHistory(u, tuple(tracks[u.id]), frozenset(albums[u.id]), frozenset(artists[u.id]))
                for u in users}

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with read_only(self.db_path, self.busy_timeout_s, lambda exc: LibraryError(
                f"cannot read the listening history in {self.db_path}: {exc}")) as conn:
            yield conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def _annotation_rows(conn: sqlite3.Connection) -> list[tuple]:
    """(user_id, item_id, item_type, play_count, play_date, rating, starred, starred_at, rated_at) rows."""
    columns = _columns(conn, "annotation")
    needed = ("user_id", "item_id", "item_type")
    if not set(needed) <= columns:
        return []
    optional = ("play_count", "play_date", "rating", "starred", "starred_at", "rated_at")
    select = ", ".join([*needed, *(c if c in columns else "NULL" for c in optional)])
    return conn.execute(f"SELECT {select} FROM annotation ORDER BY user_id, item_id").fetchall()


def _moment(value: object) -> datetime | None:
    """A Navidrome timestamp, or None when it is unset (NULL, empty or zero)."""
    if value is None or value == "" or (isinstance(value, str) and value.startswith("0000")):
        return None
    return parse_timestamp(value)
