"""The deletion guard: a track whose file goes missing keeps its vectors until it is surely gone.

Navidrome flags a row ``missing`` whenever a scan cannot see its file — also when the music folder (a
NAS, a USB disk) is merely unreachable. So a missing track is not deleted at once: it gets a
tombstone (when navembed first saw it missing, its path and size), its vectors stay (recommendations
leave it out: they only return tracks Navidrome lists as present), and they are deleted only when its
row is gone from ``media_file`` or it has been missing longer than the grace period.

A run that would delete more than ``max_share`` of the stored tracks at once, or that finds every file
of a library folder missing, deletes nothing at all and says why (``DeletionVerdict.refused``); the
refusal is kept in the log file (``refusals``) for ``/health`` and ``/batch/progress`` until a run
deletes normally again. When a tombstoned file comes back with the same path and size, its stored
vectors are adopted (re-stamped with the file's new fingerprint: Navidrome stamps ``updated_at``
when it flips ``missing``), not embedded again.

The log is a small SQLite file in the data dir (``missing.sqlite``), beside the failure log.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from navembed_pipeline.lib.store.state_files import StateLog
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, RowState, Track
from navembed_pipeline.lib.library.upload_ids import is_upload_id

LOGGER = logging.getLogger("navembed.deletions")
MISSING_FILE = "missing.sqlite"
DEFAULT_GRACE_HOURS = 72.0
DEFAULT_MAX_SHARE = 0.10
# Deleting this many tracks or fewer is never a "mass" deletion, whatever share of a tiny library it is.
MIN_GUARDED = 5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (
    track_id TEXT PRIMARY KEY,
    missing_since REAL NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refusals (
    model TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    would_delete INTEGER NOT NULL,
    refused_at REAL NOT NULL
) WITHOUT ROWID;
"""
_CHUNK = 500


@dataclass(frozen=True)
class Tombstone:
    """A stored track whose file Navidrome reports missing: since when, and the file it was."""

    track_id: str
    missing_since: float
    path: str
    size: int


@dataclass(frozen=True)
class Refusal:
    """A run's deletions that the guard refused, kept until a later run deletes normally."""

    model: str
    reason: str
    would_delete: int
    refused_at: float


class MissingLog(StateLog):
    """Tombstones and refusals in the SQLite file at ``path`` (``":memory:"``: private, not kept).

    A damaged log is set aside and rebuilt: tombstones are re-marked by the next run's judgement."""

    SCHEMA = _SCHEMA
    WHAT = "missing-tracks log"

    @classmethod
    def beside(cls, failures_db: str | Path | None) -> "MissingLog":
        """The log next to a failure log file (one data dir); a private one without a file."""
        if not failures_db or str(failures_db) == ":memory:":
            return cls(":memory:")
        return cls(Path(failures_db).with_name(MISSING_FILE))

    def mark(self, rows: Iterable[Tombstone]) -> None:
        """Tombstone these tracks; one already tombstoned keeps its first ``missing_since``."""
        values = [(t.track_id, t.missing_since, t.path, t.size) for t in rows]
        if values:
            with self._connect() as db:
                db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?, ?, ?, ?)", values)

    def tombstones(self) -> dict[str, Tombstone]:
        with self._connect() as db:
            return {row[0]: Tombstone(*row) for row in db.execute("SELECT * FROM tombstones")}

    def clear(self, track_ids: Iterable[str]) -> None:
        """Forget the tombstones of these tracks (back, or deleted for good)."""
        ids = list(track_ids)
        with self._connect() as db:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                db.execute(f"DELETE FROM tombstones WHERE track_id IN ({','.join('?' * len(chunk))})", chunk)

    def refuse(self, model: str, reason: str, would_delete: int, now: float) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO refusals VALUES (?, ?, ?, ?)", (model, reason, would_delete, now))

    def accept(self, model: str) -> None:
        """The model's latest run deleted normally: its earlier refusal no longer stands."""
        with self._connect() as db:
            db.execute("DELETE FROM refusals WHERE model = ?", (model,))

    def refusals(self) -> list[Refusal]:
        with self._connect() as db:
            return [Refusal(*row) for row in db.execute("SELECT * FROM refusals ORDER BY model")]


def read_refusals(data_dir: Path) -> list[Refusal]:
    """The standing refusals of a data dir's log, for the API (no file: none; never creates it)."""
    path = Path(data_dir) / MISSING_FILE
    if not path.is_file():
        return []
    return MissingLog(path).refusals()


@dataclass(frozen=True)
class DeletionPolicy:
    """How long a missing file's vectors are kept, and how much one run may delete at once."""

    grace_seconds: float = DEFAULT_GRACE_HOURS * 3600
    max_share: float = DEFAULT_MAX_SHARE

    def limit(self, stored: int) -> int:
        """The most tracks one run may delete out of ``stored``."""
        return max(MIN_GUARDED, int(self.max_share * stored))


@dataclass(frozen=True)
class DeletionVerdict:
    """Of the stored tracks Navidrome no longer lists as present: which go, which are kept, and whether
    the run may delete at all (``refused``: why not)."""

    due: frozenset[str]  # row gone from media_file, or missing past the grace period
    kept: Mapping[str, float] = field(default_factory=dict)  # tombstoned within the grace period → since
    refused: str | None = None
    adopted: int = 0  # tombstoned files back unchanged: their vectors re-stamped, not embedded again

    @property
    def deletable(self) -> frozenset[str]:
        """What the run deletes: ``due``, or nothing when refused."""
        return frozenset() if self.refused else self.due

    def line(self, model: str) -> str:
        parts = [f"{model}: {len(self.deletable)} track(s) to delete"]
        if self.kept:
            parts.append(f"{len(self.kept)} missing file(s) kept until their grace period ends")
        if self.adopted:
            parts.append(f"{self.adopted} file(s) back unchanged, vectors kept")
        if self.refused:
            parts.append(f"DELETIONS REFUSED: {self.refused}")
        return "; ".join(parts)


Restamp = Callable[[Mapping[str, str]], None]  # track id → the fingerprint its stored rows get


class DeletionGuard:
    """Judges a model's deletions against Navidrome's rows and the tombstones, and keeps both up to date."""

    def __init__(self, library: NavidromeLibrary, log: MissingLog, policy: DeletionPolicy = DeletionPolicy(), *,
                 clock: Callable[[], float] = time.time, confirmed: bool = False) -> None:
        """``confirmed``: an operator confirmed this run's deletions (``confirm_deletions``): no refusal."""
        self.library = library
        self.log = log
        self.policy = policy
        self.confirmed = confirmed
        self._clock = clock
        self._rows: dict[str, RowState] | None = None

    def rows(self) -> dict[str, RowState]:
        """Every ``media_file`` row's state, read once per guard."""
        if self._rows is None:
            self._rows = self.library.row_states()
        return self._rows

    def judge(self, model: str, stored_ids: Iterable[str], *, record: bool = True) -> DeletionVerdict:
        """The verdict over every stored track of ``model``; tombstones new missing files. With ``record``
        the verdict's refusal (or its absence) is written for ``/health``."""
        now = self._clock()
        rows = self.rows()
        stored = [t for t in stored_ids if not is_upload_id(t)]
        missing = {t: rows[t] for t in stored if t in rows and rows[t].missing}
        self.log.mark(Tombstone(t, now, s.path, s.size) for t, s in missing.items())
        tombstones = self.log.tombstones()
        self.log.clear(t for t in tombstones if t not in rows)  # row gone: deleted by every model regardless
        gone = {t for t in stored if t not in rows}
        expired = {t for t in missing if now - tombstones[t].missing_since >= self.policy.grace_seconds}
        due = frozenset(gone | expired)
        kept = {t: tombstones[t].missing_since for t in missing if t not in expired}
        refused = None if self.confirmed else self._refusal(len(due), len(stored))
        if record:
            if refused:
                self.log.refuse(model, refused, len(due), now)
                LOGGER.warning("%s: deletions refused: %s", model, refused)
            else:
                self.log.accept(model)
        return DeletionVerdict(due=due, kept=kept, refused=refused)

    def adopt_returned(self, tracks: Iterable[Track], restamp: Restamp, fingerprint: Callable[[Track], str]) -> int:
        """Tombstoned tracks present again with the same path and size: their stored vectors are re-stamped
        with the file's current fingerprint (nothing is embedded again) and their tombstones cleared."""
        tombstones = self.log.tombstones()
        back = [t for t in tracks if t.id in tombstones]
        same = {t.id: fingerprint(t) for t in back
                if tombstones[t.id].path == self._relative(t) and tombstones[t.id].size == t.size}
        if same:
            restamp(same)
        self.log.clear(t.id for t in back)
        return len(same)

    def _relative(self, track: Track) -> str:
        state = self.rows().get(track.id)
        return state.path if state is not None else ""

    def _refusal(self, due: int, stored: int) -> str | None:
        """Why this run must delete nothing, or None."""
        empty = [name for name, (present, missing) in self.library.library_counts().items()
                 if present == 0 and missing > 0]
        if empty:
            return (f"every file of library folder(s) {', '.join(repr(n) for n in empty)} is missing — an "
                    "unmounted or offline music folder (NAS, USB disk)? Nothing is deleted until its files are "
                    "back, or a run is started with confirm_deletions")
        if due > self.policy.limit(stored):
            return (f"{due} of {stored} stored tracks would be deleted at once, more than the "
                    f"{self.policy.max_share:.0%} allowed (NAVEMBED_DELETION_MAX_SHARE); nothing is deleted. "
                    "If this is intended, start a run with confirm_deletions")
        return None
