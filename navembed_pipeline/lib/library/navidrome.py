"""Read-only access to a Navidrome library database.

Navidrome (>= 0.55) keeps one row per audio file in ``media_file``; its ``path`` is relative to the
root of the ``library`` it belongs to, and rows whose file vanished stay behind with ``missing = 1``.
The schema we rely on is ``navidrome.sql`` (taken from Navidrome's own migrations).

The database belongs to Navidrome and is usually open in WAL mode by a running server, so it is
opened strictly read-only (``mode=ro`` URI: never created, never written) with a busy timeout, and
every query is a short read transaction: ``tracks()`` pages by primary key instead of holding one
cursor open, so a slow consumer never pins a WAL snapshot while Navidrome scans.

Navidrome has no CUE-sheet columns: a CUE image (one audio file plus a ``.cue``) is one row for the
whole file. navembed detects CUE sheets itself from ``.cue`` files next to the audio (``lib/library/audio.py``).
"""

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from navembed_pipeline.lib.errors import LibraryError

DEFAULT_BUSY_TIMEOUT_S = 10.0
PAGE_SIZE = 1000
# SQLite's historical bound on host parameters per statement (999) is the portable one.
_MAX_PARAMS = 900
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Columns navembed reads; a database lacking any of them is not (a recent enough) Navidrome.
REQUIRED_COLUMNS: Mapping[str, frozenset[str]] = {
    "library": frozenset({"id", "name", "path"}),
    "media_file": frozenset(
        {"id", "path", "title", "artist", "album", "album_artist", "duration", "size",
         "suffix", "updated_at", "library_id", "missing"}
    ),
}

# The unary + on `missing` keeps SQLite on the primary key for id lookups instead of scanning the
# `missing` index (34 ms → 3 ms for 256 ids at 100k tracks).
_TRACK_SELECT = """
SELECT m.id, m.path, m.title, m.artist, m.album, m.album_artist, m.duration, m.size,
       m.updated_at, m.library_id, l.name, l.path, m.suffix, m.artist_id
FROM media_file AS m JOIN library AS l ON l.id = m.library_id
WHERE +m.missing = 0
"""


@dataclass(frozen=True, slots=True)
class Library:
    """One Navidrome library; ``path`` is its root as seen from this machine (path map applied),
    ``navidrome_path`` as Navidrome itself sees it (``library.path``, e.g. inside its container)."""

    id: int
    name: str
    path: Path
    navidrome_path: str = ""


@dataclass(frozen=True, slots=True)
class Track:
    """One present (not missing) audio file of the Navidrome library."""

    id: str
    path: Path
    title: str
    artist: str
    album: str
    album_artist: str
    duration_seconds: float
    size: int
    updated_at: datetime
    library_id: int
    library_name: str
    suffix: str
    artist_id: str = ""  # Navidrome's artist id (media_file.artist_id), what artist radio asks by

    @property
    def display_name(self) -> str:
        """``"Artist - Title"``, the name the original system stored next to each vector."""
        return f"{self.artist} - {self.title}"


@dataclass(frozen=True, slots=True)
class RowState:
    """What the deletion guard needs of any ``media_file`` row, present or missing."""

    library_id: int
    missing: bool
    path: str  # relative to its library's root, as Navidrome stores it
    size: int


def parse_path_map(text: str) -> dict[str, str]:
    """``"/music=/mnt/nas/music;/b=/c"`` → ``{"/music": "/mnt/nas/music", "/b": "/c"}`` (NAVEMBED_PATH_MAP)."""
    pairs = [part.split("=", 1) for part in text.split(";") if "=" in part]
    return {source.strip(): target.strip() for source, target in pairs}


def map_path(path: str, path_map: Mapping[str, str] | None) -> str:
    """Rewrite ``path`` by the longest ``path_map`` prefix matching whole components.

    ``{"/music": "/mnt/nas/music"}`` turns Navidrome's (container) ``/music/a.flac`` into
    ``/mnt/nas/music/a.flac`` and leaves ``/musicals/b.flac`` alone.
    """
    path_map = path_map or {}
    for prefix in sorted(path_map, key=lambda p: len(p.rstrip("/")), reverse=True):
        stem = prefix.rstrip("/")
        if path == stem or path.startswith(stem + "/"):
            rest = path[len(stem):].lstrip("/")
            target = path_map[prefix].rstrip("/")
            return f"{target}/{rest}" if rest else (target or "/")
    return path


def parse_timestamp(value: object) -> datetime:
    """Parse a Navidrome timestamp into an aware datetime.

    go-sqlite3 writes ``2024-05-01 12:34:56.123456789+02:00``; older releases wrote RFC 3339 with
    ``T``/``Z``; SQLite defaults write naive UTC. Naive values are taken as UTC; empty, zero
    (``0000-00-00 ...``) or unreadable values become the Unix epoch, which means "unknown/old".
    """
    try:
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=UTC)
        if not isinstance(value, str) or value.startswith("0000"):
            return EPOCH
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError, OSError):
        return EPOCH
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class NavidromeLibrary:
    """Reads tracks and libraries from Navidrome's SQLite database without ever writing to it."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        path_map: Mapping[str, str] | None = None,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        """Open ``db_path`` read-only and check it is a Navidrome database; raise LibraryError if not."""
        self.db_path = Path(db_path)
        self.path_map = dict(path_map or {})
        self.busy_timeout_s = busy_timeout_s
        self._roots: dict[str, Path] = {}  # library.path as stored -> the mapped root on this machine
        if not self.db_path.exists():
            raise LibraryError(f"Navidrome database {self.db_path}: no such file; check the DB path setting")
        if not self.db_path.is_file():
            raise LibraryError(f"Navidrome database {self.db_path} is not a file; point to navidrome.db")
        with self._read() as conn:
            _check_schema(conn, self.db_path)

    def libraries(self) -> list[Library]:
        """All libraries, ordered by id, with their roots mapped to this machine."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, name, path FROM library ORDER BY id").fetchall()
        return [Library(id=i, name=name, path=Path(map_path(path, self.path_map)), navidrome_path=path)
                for i, name, path in rows]

    def tracks(self, *, library_ids: Iterable[int] | None = None) -> Iterator[Track]:
        """Yield every present track (``missing = 0``) ordered by id, optionally for some libraries."""
        where, params = _library_filter(library_ids)
        last_id = ""
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    f"{_TRACK_SELECT}{where} AND m.id > ? ORDER BY m.id LIMIT ?",
                    (*params, last_id, PAGE_SIZE),
                ).fetchall()
            yield from (self._track(row) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            last_id = rows[-1][0]

    def count(self, *, library_ids: Iterable[int] | None = None) -> int:
        """How many present tracks ``tracks()`` would yield."""
        return self._count(missing=False, library_ids=library_ids)

    def count_missing(self, *, library_ids: Iterable[int] | None = None) -> int:
        """How many rows Navidrome keeps for files it no longer finds (skipped by ``tracks()``)."""
        return self._count(missing=True, library_ids=library_ids)

    def get(self, ids: Iterable[str]) -> dict[str, Track]:
        """The present tracks among ``ids``, by id; unknown and missing ids are left out."""
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Track] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), _MAX_PARAMS):
                chunk = wanted[start:start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"{_TRACK_SELECT} AND m.id IN ({marks})", chunk).fetchall()
                found.update((row[0], self._track(row)) for row in rows)
        return found

    def track_columns(self) -> list[tuple[str, str, str, str, str, int, float]]:
        """Every present track's (id, title, artist, album artist, album, library id, duration) in one read:
        what the recommender filters by, without building a ``Track`` (a path, a timestamp) per row."""
        with self._read() as conn:
            return conn.execute(
                "SELECT m.id, m.title, m.artist, m.album_artist, m.album, m.library_id, m.duration "
                "FROM media_file AS m JOIN library AS l ON l.id = m.library_id WHERE +m.missing = 0").fetchall()

    def row_states(self) -> dict[str, RowState]:
        """Every ``media_file`` row (missing ones too) by id: library, missing flag, path and size."""
        with self._read() as conn:
            rows = conn.execute("SELECT id, library_id, missing, path, size FROM media_file").fetchall()
        return {id_: RowState(int(lib), bool(missing), path or "", int(size or 0))
                for id_, lib, missing, path, size in rows}

    def library_counts(self) -> dict[str, tuple[int, int]]:
        """Per library (by name): how many of its files are present and how many missing."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT l.name, coalesce(sum(m.missing = 0), 0), coalesce(sum(m.missing != 0), 0) "
                "FROM library AS l LEFT JOIN media_file AS m ON m.library_id = l.id GROUP BY l.id").fetchall()
        return {name: (int(present), int(missing)) for name, present, missing in rows}

    def _count(self, *, missing: bool, library_ids: Iterable[int] | None) -> int:
        where, params = _library_filter(library_ids)
        sql = f"SELECT count(*) FROM media_file AS m WHERE m.missing = ?{where}"
        with self._read() as conn:
            (n,) = conn.execute(sql, (int(missing), *params)).fetchone()
        return int(n)

    def _track(self, row: Sequence) -> Track:
        (id_, rel_path, title, artist, album, album_artist, duration, size,
         updated_at, library_id, library_name, library_path, suffix, artist_id) = row
        root = self._roots.get(library_path)
        if root is None:  # one Path per library root, not per row: half of a row's cost was path parsing
            root = self._roots[library_path] = Path(map_path(library_path, self.path_map))
        return Track(
            id=id_,
            path=root / rel_path,
            title=title or "",
            artist=artist or "",
            album=album or "",
            album_artist=album_artist or "",
            duration_seconds=float(duration or 0.0),
            size=int(size or 0),
            updated_at=parse_timestamp(updated_at),
            library_id=int(library_id),
            library_name=library_name,
            suffix=suffix or "",
            artist_id=artist_id or "",
        )

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A fresh read-only connection for one short read; sqlite errors become LibraryError."""
        with read_only(self.db_path, self.busy_timeout_s,
                       lambda exc: _library_error(exc, self.db_path, self.busy_timeout_s)) as conn:
            yield conn


@contextmanager
def read_only(db_path: Path, timeout: float,
              on_error: Callable[[sqlite3.Error], Exception]) -> Iterator[sqlite3.Connection]:
    """A fresh read-only connection to the SQLite file at ``db_path`` for one short read (waiting up to
    ``timeout`` seconds for a lock), closed after; an sqlite error is raised as ``on_error(exc)``."""
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=timeout)) as conn:
            yield conn
    except sqlite3.Error as exc:
        raise on_error(exc) from exc


def _library_filter(library_ids: Iterable[int] | None) -> tuple[str, tuple[int, ...]]:
    if library_ids is None:
        return "", ()
    ids = tuple(int(i) for i in library_ids)
    return f" AND m.library_id IN ({','.join('?' * len(ids)) or 'NULL'})", ids


def _check_schema(conn: sqlite3.Connection, db_path: Path) -> None:
    for table, needed in REQUIRED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not present:
            raise LibraryError(
                f"{db_path} is not a Navidrome database (it has no '{table}' table); point to navidrome.db"
            )
        if lacking := sorted(needed - present):
            raise LibraryError(
                f"{db_path}: table '{table}' lacks columns {lacking}; this Navidrome is older than 0.55 "
                "(or not Navidrome) — upgrade Navidrome and let it rescan"
            )


def _library_error(exc: sqlite3.Error, db_path: Path, busy_timeout_s: float) -> LibraryError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc):
        return LibraryError(
            f"Navidrome database {db_path} is locked by another process (waited {busy_timeout_s:g}s); "
            "try again when it releases the lock"
        )
    if code == sqlite3.SQLITE_NOTADB or "not a database" in str(exc):
        return LibraryError(f"{db_path} is not an SQLite database, so not a Navidrome database")
    return LibraryError(f"cannot read Navidrome database {db_path}: {exc}")
