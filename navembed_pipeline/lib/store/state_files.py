"""Damaged SQLite state files are set aside and rebuilt, never a crash loop and never "not present".

navembed's own bookkeeping in the data dir (the failure log, fingerprints and upload records, missing-
file tombstones) is rebuilt by the pipeline as it runs. When one of these files cannot be read as a
database (a torn write, a full disk, a truncated copy), it is renamed to ``<name>.corrupt-<UTC time>``
(kept for recovery: the upload records of ``fingerprints.sqlite``, say) and an empty one takes its
place. ``/health`` lists what was set aside. A file that is merely locked or unreadable for lack of
permission is left alone: that is not damage, and the error says what it is.
"""

import logging
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

LOGGER = logging.getLogger("navembed.state")
SET_ASIDE_MARK = ".corrupt-"
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
        target = path.with_name(f"{path.name}{SET_ASIDE_MARK}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}")
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
