"""Damaged SQLite state files are set aside and rebuilt, never a crash loop and never "not present".

navembed's own bookkeeping in the data dir (the failure log, fingerprints and upload records, missing-
file tombstones) is rebuilt by the pipeline as it runs. When one of these files cannot be read as a
database (a torn write, a full disk, a truncated copy), it is renamed to ``<name>.corrupt-<UTC time>``
(kept for recovery: the upload records of ``fingerprints.sqlite``, say) and an empty one takes its
place. ``/health`` lists what was set aside. A file that is merely locked or unreadable for lack of
permission is left alone: that is not damage, and the error says what it is.

``StateLog`` is the common ground of the small logs kept this way (the failure log, the missing-tracks
log): the file or ``":memory:"``, WAL, one lock, one transaction per block; ``state_transaction`` is its
connection, also used by stores that set up their file themselves (the fingerprint database).
"""

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from navembed_pipeline.lib.errors import StoreError

LOGGER = logging.getLogger("navembed.state")
SET_ASIDE_MARK = ".corrupt-"
SET_ASIDE_TIME = "%Y%m%dT%H%M%S%fZ"  # UTC, after the mark: names sort, and compare, in time order
# Damage, as SQLite reports it; anything else (busy, locked, read-only, cannot open) is not damage.
_DAMAGED = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}
_lock = threading.Lock()
QUICK_CHECK_MAX_BYTES = 64 << 20  # larger files: header and schema only (quick_check reads every page)


def set_aside_if_damaged(path: Path | str) -> Path | None:
    """If the SQLite file at ``path`` is damaged, move it (and its -wal/-shm) aside; return where to."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    reason = damage(path)
    if reason is None:
        return None
    with _lock:
        if not path.is_file() or damage(path) is None:  # another thread set it aside first
            return None
        target = path.with_name(f"{path.name}{SET_ASIDE_MARK}{datetime.now(UTC).strftime(SET_ASIDE_TIME)}")
        try:
            path.rename(target)
        except FileNotFoundError:  # another process did
            return None
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
    LOGGER.error("%s is damaged (%s): set aside as %s and rebuilt empty", path, reason, target)
    return target


def damage(path: Path) -> str | None:
    """Why the SQLite file at ``path`` is damaged, or None (sound, or failing for another reason)."""
    thorough = path.stat().st_size <= QUICK_CHECK_MAX_BYTES
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            (result,) = db.execute("PRAGMA quick_check").fetchone() if thorough else ("ok",)
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        damaged = code in _DAMAGED or "malformed" in str(exc) or "not a database" in str(exc)
        return str(exc) if damaged else None
    return None if result == "ok" else f"integrity check: {result}"


def set_aside_files(data_dir: Path) -> list[str]:
    """The names of files set aside in ``data_dir`` (newest last)."""
    folder = Path(data_dir)
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if SET_ASIDE_MARK in p.name
                   and not p.name.endswith(("-wal", "-shm"))), key=lambda n: n.rsplit(SET_ASIDE_MARK, 1)[-1])


@contextmanager
def state_transaction(path: Path | str, what: str, *, timeout: float = 30.0,
                      error: Callable[[str], Exception] = StoreError,
                      prepare: Callable[[], None] | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the SQLite file at ``path`` in one transaction (committed when the block ends, rolled
    back on error), closed after; ``prepare`` runs first (setting the file up). Failures raise ``error``
    naming ``what`` the file is ("cannot open the <what> <path>: ..." or "<what> <path>: ...")."""
    try:
        if prepare is not None:
            prepare()
        db = sqlite3.connect(path, timeout=timeout)
    except (sqlite3.Error, OSError) as exc:
        raise error(f"cannot open the {what} {path}: {exc}") from exc
    try:
        with db:  # one transaction: committed on success, rolled back on error
            yield db
    except sqlite3.Error as exc:
        raise error(f"{what} {path}: {exc}") from exc
    finally:
        db.close()


class StateLog:
    """A small SQLite log in the file at ``path`` (``":memory:"``: private, not kept), created with the
    subclass's ``SCHEMA`` (WAL, so the pipeline writes while the API reads). A damaged file is set aside and
    rebuilt empty. ``_connect`` gives one transaction at a time (one lock per log); errors are
    ``StoreError`` naming the log (``WHAT``)."""

    SCHEMA: str = ""
    WHAT: str = "state log"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        if self.path == ":memory:":
            self._memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._memory.executescript(self.SCHEMA)
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            set_aside_if_damaged(self.path)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(self.SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._memory is not None:
                with self._memory:
                    yield self._memory
                return
            with state_transaction(self.path, self.WHAT) as db:
                yield db
