"""The failure log: which tracks a model could not embed, and why — a small SQLite table under the data dir.

It used to be a Milvus collection with a fake 2-d vector per row. It is plain bookkeeping, read and
written by track id, so it lives in SQLite (WAL: the pipeline writes while the API reads) next to
the other state in the data dir. ``migrate_milvus_failures`` moves the records of the old collection
into it once and then drops that collection; nothing is lost on the way.
"""

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from navembed_pipeline.lib.errors import StoreError
from navembed_pipeline.lib.store.state_files import StateLog

LOGGER = logging.getLogger("navembed.failures")
FAILURES_FILE = "failures.sqlite"
ERROR_MAX_CHARS = 2000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (
    model TEXT NOT NULL,
    track_id TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at INTEGER NOT NULL,
    PRIMARY KEY (model, track_id)
) WITHOUT ROWID
"""
_CHUNK = 500  # ids per statement, under SQLite's variable limit


class FailureLog(StateLog):
    """Per-model track failures in the SQLite file at ``path`` (``":memory:"`` for a private, unkept log).

    A damaged log is set aside and rebuilt: the next runs record failures again."""

    SCHEMA = _SCHEMA
    WHAT = "failure log"

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> "FailureLog":
        """The log of a navembed data dir (``<data_dir>/failures.sqlite``)."""
        return cls(Path(data_dir) / FAILURES_FILE)

    def record(self, model: str, failures: Iterable[tuple[str, str]], *, failed_at: int | None = None) -> None:
        """Remember why tracks failed for ``model`` (the latest error per track wins)."""
        when = int(time.time()) if failed_at is None else failed_at
        rows = [(model, track, error[:ERROR_MAX_CHARS], when) for track, error in dict(failures).items()]
        if rows:
            with self._connect() as db:
                db.executemany("INSERT INTO failures (model, track_id, error, failed_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (model, track_id) DO UPDATE SET error = excluded.error, "
                               "failed_at = excluded.failed_at", rows)

    def failed(self, model: str) -> dict[str, str]:
        """The recorded error of every failed track of ``model``."""
        with self._connect() as db:
            return dict(db.execute("SELECT track_id, error FROM failures WHERE model = ?", (model,)).fetchall())

    def clear(self, model: str, track_ids: Iterable[str]) -> None:
        """Forget the failures of these tracks (they embedded fine, or left the library)."""
        ids = list(track_ids)
        with self._connect() as db:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                db.execute(f"DELETE FROM failures WHERE model = ? AND track_id IN ({','.join('?' * len(chunk))})",
                           (model, *chunk))

    def clear_all(self) -> None:
        """Empty the log (test isolation; a user's log is never emptied wholesale)."""
        with self._connect() as db:
            db.execute("DELETE FROM failures")

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM failures").fetchone()[0]


    def summary(self, latest: int = 5) -> dict[str, dict[str, object]]:
        """Per key (a model, or ``fingerprint``): how many tracks failed, and the ``latest`` few with why."""
        with self._connect() as db:
            counts = dict(db.execute("SELECT model, COUNT(*) FROM failures GROUP BY model").fetchall())
            return {key: {"count": count, "latest": [
                {"track_id": track, "error": error, "failed_at": at} for track, error, at in db.execute(
                    "SELECT track_id, error, failed_at FROM failures WHERE model = ? "
                    "ORDER BY failed_at DESC, track_id LIMIT ?", (key, latest))]}
                for key, count in sorted(counts.items())}


def read_failure_summary(data_dir: Path, latest: int = 5) -> dict[str, dict[str, object]]:
    """``FailureLog.summary`` of a data dir's log, for the API (no file: none; never creates it)."""
    path = Path(data_dir) / FAILURES_FILE
    if not path.is_file():
        return {}
    return FailureLog(path).summary(latest)


class _LegacyFailures(Protocol):
    def exists(self, name: str) -> bool: ...
    def iterate(self, name: str, fields: list[str], expr: str = "") -> Iterable[dict]: ...
    def drop(self, name: str) -> None: ...


def migrate_milvus_failures(milvus: _LegacyFailures, log: FailureLog, collection: str) -> int:
    """Move the records of the old Milvus failures ``collection`` into ``log``, then drop it.

    Records already in ``log`` are newer (written since) and win. Returns how many were moved.
    """
    if not milvus.exists(collection):
        return 0
    rows = list(milvus.iterate(collection, ["model", "track_id", "error", "failed_at"]))
    by_model: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for row in rows:
        by_model.setdefault((row["model"], int(row.get("failed_at") or 0)), []).append((row["track_id"], row["error"]))
    moved = 0
    for (model, failed_at), failures in by_model.items():
        known = log.failed(model)
        fresh = [(track, error) for track, error in failures if track not in known]
        log.record(model, fresh, failed_at=failed_at)
        moved += len(fresh)
    for model in {model for model, _ in by_model}:  # verify before dropping anything
        missing = {t for (m, _), failures in by_model.items() if m == model for t, _ in failures} - set(log.failed(model))
        if missing:
            raise StoreError(f"failure log migration lost {len(missing)} record(s) of {model}; the Milvus "
                             f"collection {collection} is kept")
    milvus.drop(collection)
    LOGGER.info("moved %d failure record(s) from Milvus collection %s to %s", moved, collection, log.path)
    return moved
