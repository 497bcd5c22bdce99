"""Durable acoustic fingerprints: one SQLite file under the data dir, the pipeline writes, the API reads.

Every fingerprint belongs to an *owner* (a Navidrome track id, or an upload's ``upload:<hash>`` id)
and a segment (1 for a whole file, the CUE track number otherwise), and records the file version
it was computed from (``track_fingerprint``: path, size, mtime), and the length of the audio it stands
for (column ``seconds``: the pipeline prints only a track's first ``PRINT_SECONDS``, ``capped_print``; a print
stored before that cap covers its whole track, so its own length, which that column already held, is
the right one: older files are read as they are), so a track is fingerprinted once
per file version whatever the number of models. Candidates come from an inverted index over a
sample of each fingerprint's words (AcoustID-style); every candidate is verified by the alignment
search of ``fingerprints.match``. Verified duplicate pairs are kept as edges, and the *recording
groups* (connected components of the edges: album copy + compilation copy = one group) are kept in
the ``groups`` table, updated in the same transaction as each write: a write regroups only the
groups it touches, never the library. ``group_generation`` changes with every regrouping, so a
reader (``RecordingGroupIndex``) reloads only when the groups changed.
Nothing here deletes user files; rows of a track are replaced only when the track's file changes.
"""

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.duplicates.chromaprint import (ITEM_SECONDS, MIN_OVERLAP_SECONDS, Match, from_blob,
                                                          is_duplicate, match, to_blob)
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library.upload_ids import is_upload_id
from navembed_pipeline.lib.store.state_files import set_aside_if_damaged, state_transaction
INDEX_SECONDS = 180.0  # words indexed from the start of each fingerprint
INDEX_STRIDE = 2  # every other word: half the index, a true copy still shares dozens of words
QUERY_SECONDS = INDEX_SECONDS + 40.0  # a query looks further, so trims up to 40 s still meet the index
CANDIDATES = 10  # verified per query
MIN_HITS = 8  # shared indexed words; measured: a copy shares 117-727, another song at most 1
BUSY_TIMEOUT_S = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS prints (
    owner TEXT NOT NULL, segment INTEGER NOT NULL, version TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
    seconds REAL NOT NULL, words BLOB NOT NULL, updated REAL NOT NULL, PRIMARY KEY (owner, segment));
CREATE TABLE IF NOT EXISTS words (word INTEGER NOT NULL, owner TEXT NOT NULL, segment INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS words_by_word ON words (word);
CREATE INDEX IF NOT EXISTS words_by_owner ON words (owner);
CREATE TABLE IF NOT EXISTS pairs (
    a TEXT NOT NULL, a_segment INTEGER NOT NULL, b TEXT NOT NULL, b_segment INTEGER NOT NULL,
    score REAL NOT NULL, offset_seconds REAL NOT NULL, PRIMARY KEY (a, a_segment, b, b_segment));
CREATE INDEX IF NOT EXISTS pairs_by_b ON pairs (b);
CREATE TABLE IF NOT EXISTS groups (owner TEXT PRIMARY KEY, grp TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS groups_by_grp ON groups (grp);
CREATE TABLE IF NOT EXISTS group_state (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, path TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
    duration_seconds REAL NOT NULL, created REAL NOT NULL);
"""


class FingerprintStoreError(NavembedError):
    """The fingerprint database cannot be opened or written."""


@dataclass(frozen=True)
class Print:
    """One stored fingerprint."""

    owner: str
    segment: int
    version: str
    name: str
    words: np.ndarray
    seconds: float  # the length of the audio it stands for (``match``'s ``a_seconds``/``b_seconds``)

    @property
    def is_upload(self) -> bool:
        return is_upload_id(self.owner)


@dataclass(frozen=True)
class Duplicate:
    """A stored fingerprint that matches a query, and how well."""

    owner: str
    segment: int
    name: str
    match: Match


class FingerprintStore:
    """Fingerprints in the SQLite file ``path`` (created on first use, WAL mode; thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    # ----- writes (the pipeline; the API for uploads) --------------------------------------------
    def put(self, owner: str, version: str, segments: Sequence[tuple]) -> list[Duplicate]:
        """Store ``owner``'s fingerprints (replacing older ones) and the duplicate edges they form.

        ``segments``: (segment, name, words) for prints of whole tracks, or (segment, name, words,
        seconds) with the length of the audio a capped print stands for (``capped_print``). Returns the
        stored fingerprints they duplicate.
        """
        given = [(segment, name, words, _seconds(words, rest)) for segment, name, words, *rest in segments]
        matched = [(segment, name, words, seconds,
                    [d for d in self.duplicates_of(words, seconds=seconds) if d.owner != owner])
                   for segment, name, words, seconds in given]
        now = time.time()
        with self.connection() as db:
            touched = self._forget(db, owner)
            for segment, name, words, seconds, duplicates in matched:
                db.execute("INSERT INTO prints VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (owner, segment, version, name, seconds, to_blob(words), now))
                db.executemany("INSERT INTO words VALUES (?, ?, ?)",
                               [(int(w), owner, segment) for w in _indexed_words(words)])
                db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?, ?)",
                               [(owner, segment, d.owner, d.segment, d.match.score, d.match.offset_seconds)
                                for d in duplicates])
            others = {d.owner for *_, duplicates in matched for d in duplicates}
            _regroup(db, touched | {owner} | _members(db, _groups_of(db, others)) | others)
        found = [d for *_, duplicates in matched for d in duplicates]
        return found

    def forget(self, owner: str) -> None:
        """Drop ``owner``'s fingerprints and edges (its file changed or it is gone; files are untouched)."""
        with self.connection() as db:
            _regroup(db, self._forget(db, owner))

    # ----- reads ---------------------------------------------------------------------------------
    def versions(self, owners: Iterable[str]) -> dict[str, str]:
        """The file version each owner's fingerprints were computed from (owners without any are absent)."""
        wanted = list(dict.fromkeys(owners))
        found: dict[str, str] = {}
        with self.connection() as db:
            for chunk in _chunks(wanted, 500):
                marks = ",".join("?" * len(chunk))
                for owner, version in db.execute(
                        f"SELECT owner, MIN(version) FROM prints WHERE owner IN ({marks}) GROUP BY owner", chunk):
                    found[owner] = version
        return found

    def prints(self, owner: str) -> list[Print]:
        with self.connection() as db:
            rows = db.execute("SELECT owner, segment, version, name, words, seconds FROM prints WHERE owner = ? "
                              "ORDER BY segment", (owner,)).fetchall()
        return [Print(o, s, v, n, from_blob(w), float(sec)) for o, s, v, n, w, sec in rows]

    def duplicates_of(self, words: np.ndarray, *, seconds: float | None = None,
                      uploads: bool | None = None) -> list[Duplicate]:
        """Stored fingerprints that are copies of the recording ``words`` was computed from, best first.

        ``seconds``: the length of the audio ``words`` stands for (a capped print's); None: the print's own.
        ``uploads``: True = only uploads, False = only library tracks, None = both.
        """
        if len(words) == 0:
            return []
        query = np.unique(np.asarray(words, dtype=np.uint32)[: int(QUERY_SECONDS / ITEM_SECONDS)])
        with self.connection() as db:
            counts: dict[tuple[str, int], int] = {}
            for chunk in _chunks([int(w) for w in query], 900):
                marks = ",".join("?" * len(chunk))
                for owner, segment, hits in db.execute(
                        f"SELECT owner, segment, COUNT(*) FROM words WHERE word IN ({marks}) "
                        "GROUP BY owner, segment", chunk):
                    counts[(owner, segment)] = counts.get((owner, segment), 0) + hits
            ranked = sorted((k for k, n in counts.items() if n >= MIN_HITS and _kind_ok(k[0], uploads)),
                            key=lambda k: -counts[k])[:CANDIDATES]
            stored = [db.execute("SELECT name, words, seconds FROM prints WHERE owner = ? AND segment = ?",
                                 key).fetchone() for key in ranked]
        found = []
        for (owner, segment), row in zip(ranked, stored, strict=True):
            if row is None:
                continue
            found_match = match(words, from_blob(row[1]), a_seconds=seconds, b_seconds=float(row[2]))
            if is_duplicate(found_match):
                found.append(Duplicate(owner, segment, row[0], found_match))
        return sorted(found, key=lambda d: -d.match.score)

    def recording_groups(self, track_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Track id → group key; library tracks sharing a key are copies of one recording.

        Read from the ``groups`` table (kept up to date by every write, never rebuilt here). Every
        library track whose fingerprint can decide (one segment, at least ``MIN_OVERLAP_SECONDS``
        long) has a key; a track alone in its group gets its own id. The key is the smallest track id
        of the group, so it is stable while the group's members are. Tracks split by a CUE sheet and
        fingerprints too short to decide have no key (their identity rests on the vectors).
        """
        with self.connection() as db:
            if track_ids is None:
                return dict(db.execute("SELECT owner, grp FROM groups"))
            wanted = list(dict.fromkeys(track_ids))
            found: dict[str, str] = {}
            for chunk in _chunks(wanted, 500):
                marks = ",".join("?" * len(chunk))
                found.update(db.execute(f"SELECT owner, grp FROM groups WHERE owner IN ({marks})", chunk))
        return {t: found[t] for t in wanted if t in found}

    def group_generation(self) -> int:
        """A number that changes whenever any recording group changes (0 before the first write)."""
        with self.connection() as db:
            row = db.execute("SELECT generation FROM group_state WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def links(self, owner: str) -> list[tuple[str, float, float]]:
        """(other owner, score, offset seconds) of every stored duplicate edge of ``owner``."""
        with self.connection() as db:
            rows = db.execute("SELECT b, score, offset_seconds FROM pairs WHERE a = ? UNION "
                              "SELECT a, score, -offset_seconds FROM pairs WHERE b = ?", (owner, owner)).fetchall()
        return [(o, float(s), float(off)) for o, s, off in rows]

    # ----- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction (committed when the block ends); errors as FingerprintStoreError."""
        with state_transaction(self.path, "fingerprint database", timeout=BUSY_TIMEOUT_S,
                               error=FingerprintStoreError, prepare=self._init) as db:
            yield db

    def _init(self) -> None:
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            set_aside_if_damaged(self.path)  # kept for recovery (upload records); fingerprints are recomputed
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                _backfill_groups(db)
                db.commit()
            finally:
                db.close()
            self._ready = True

    @staticmethod
    def _forget(db: sqlite3.Connection, owner: str) -> set[str]:
        """Drop ``owner``'s rows; returns the members of the group it was in (to regroup)."""
        members = _members(db, _groups_of(db, {owner}))
        db.execute("DELETE FROM prints WHERE owner = ?", (owner,))
        db.execute("DELETE FROM words WHERE owner = ?", (owner,))
        db.execute("DELETE FROM pairs WHERE a = ? OR b = ?", (owner, owner))
        return members | {owner}


def _groups_of(db: sqlite3.Connection, owners: set[str]) -> set[str]:
    """The group keys ``owners`` belong to."""
    return _groups_column(db, "grp", "owner", owners)


def _members(db: sqlite3.Connection, keys: set[str]) -> set[str]:
    """Every owner in the groups ``keys``."""
    return _groups_column(db, "owner", "grp", keys)


def _groups_column(db: sqlite3.Connection, wanted: str, by: str, values: set[str]) -> set[str]:
    """The distinct ``wanted`` of the ``groups`` rows whose ``by`` is one of ``values`` (in chunks of 500)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(values), 500):
        marks = ",".join("?" * len(chunk))
        found.update(v for (v,) in db.execute(f"SELECT DISTINCT {wanted} FROM groups WHERE {by} IN ({marks})", chunk))
    return found


def _regroup(db: sqlite3.Connection, owners: set[str]) -> None:
    """Recompute the groups of ``owners`` (a union of whole groups, plus owners just written or
    dropped) from their prints and edges: components never reach outside such a set."""
    owners = {o for o in owners if not is_upload_id(o)}
    if not owners:
        return
    ordered = sorted(owners)
    eligible: list[str] = []
    edges: list[tuple[str, str]] = []
    for chunk in _chunks(ordered, 400):
        marks = ",".join("?" * len(chunk))
        db.execute(f"DELETE FROM groups WHERE owner IN ({marks})", chunk)
        eligible += [o for (o,) in db.execute(
            f"SELECT owner FROM prints WHERE owner IN ({marks}) GROUP BY owner "
            "HAVING COUNT(*) = 1 AND MIN(seconds) >= ?", [*chunk, MIN_OVERLAP_SECONDS])]
        edges += db.execute(f"SELECT a, b FROM pairs WHERE a IN ({marks}) AND a_segment = 1 AND b_segment = 1",
                            chunk).fetchall()
    db.executemany("INSERT INTO groups VALUES (?, ?)", _components(eligible, edges).items())
    db.execute("INSERT INTO group_state VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET generation = generation + 1")


def _components(owners: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Owner → the smallest owner of its connected component (edges to other owners are ignored)."""
    parent = {o: o for o in owners}
    for a, b in edges:
        if a in parent and b in parent:
            _union(parent, a, b)
    return {o: _root(parent, o) for o in parent}


def _backfill_groups(db: sqlite3.Connection) -> None:
    """A fingerprint file written before groups were kept: group it once, as it opens (under a write
    lock, so two processes opening it at once group it once)."""
    if db.in_transaction:
        db.commit()
    db.execute("BEGIN IMMEDIATE")
    if db.execute("SELECT 1 FROM group_state").fetchone() is not None:
        db.rollback()
        return
    owners = [o for (o,) in db.execute("SELECT owner FROM prints WHERE owner NOT LIKE 'upload:%' GROUP BY owner "
                                       "HAVING COUNT(*) = 1 AND MIN(seconds) >= ?", (MIN_OVERLAP_SECONDS,))]
    edges = db.execute("SELECT a, b FROM pairs WHERE a_segment = 1 AND b_segment = 1").fetchall()
    db.executemany("INSERT OR REPLACE INTO groups VALUES (?, ?)", _components(owners, edges).items())
    db.execute("INSERT OR IGNORE INTO group_state VALUES (1, 1)")


def _seconds(words: np.ndarray, given: list) -> float:
    """The audio length a print stands for: the one given with it, else (a whole track's print) its own."""
    return float(given[0]) if given and given[0] is not None else len(words) * ITEM_SECONDS


def _indexed_words(words: np.ndarray) -> np.ndarray:
    head = np.asarray(words, dtype=np.uint32)[: int(INDEX_SECONDS / ITEM_SECONDS): INDEX_STRIDE]
    return np.unique(head)


def _kind_ok(owner: str, uploads: bool | None) -> bool:
    return uploads is None or is_upload_id(owner) == uploads


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _root(parent: dict[str, str], node: str) -> str:
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def _union(parent: dict[str, str], a: str, b: str) -> None:
    ra, rb = _root(parent, a), _root(parent, b)
    if ra != rb:
        low, high = sorted((ra, rb))
        parent[high] = low
