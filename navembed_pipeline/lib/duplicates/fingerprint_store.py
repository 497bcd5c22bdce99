"""Durable acoustic fingerprints: one SQLite file under the data dir, the pipeline writes, the API reads.

Every fingerprint belongs to an *owner* (a Navidrome track id, or an upload's ``upload:<hash>`` id)
and a segment (1 for a whole file, the CUE track number otherwise), and records the file version
it was computed from (``track_fingerprint``: path, size, mtime), so a track is fingerprinted once
per file version whatever the number of models. Candidates come from an inverted index over a
sample of each fingerprint's words (AcoustID-style); every candidate is verified by the alignment
search of ``fingerprints.match``. Verified duplicate pairs are kept as edges, so
``recording_groups`` is a union-find over them (album copy + compilation copy = one group).
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

from navembed_pipeline.lib.duplicates.chromaprint import ITEM_SECONDS, Match, from_blob, is_duplicate, match, to_blob
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
    def put(self, owner: str, version: str, segments: Sequence[tuple[int, str, np.ndarray]]) -> list[Duplicate]:
        """Store ``owner``'s fingerprints (replacing older ones) and the duplicate edges they form.

        ``segments``: (segment, name, words). Returns the stored fingerprints they duplicate.
        """
        matched = [(segment, name, words, [d for d in self.duplicates_of(words) if d.owner != owner])
                   for segment, name, words in segments]
        now = time.time()
        with self.connection() as db:
            self._forget(db, owner)
            for segment, name, words, duplicates in matched:
                db.execute("INSERT INTO prints VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (owner, segment, version, name, len(words) * ITEM_SECONDS, to_blob(words), now))
                db.executemany("INSERT INTO words VALUES (?, ?, ?)",
                               [(int(w), owner, segment) for w in _indexed_words(words)])
                db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?, ?)",
                               [(owner, segment, d.owner, d.segment, d.match.score, d.match.offset_seconds)
                                for d in duplicates])
        found = [d for *_, duplicates in matched for d in duplicates]
        return found

    def forget(self, owner: str) -> None:
        """Drop ``owner``'s fingerprints and edges (its file changed or it is gone; files are untouched)."""
        with self.connection() as db:
            self._forget(db, owner)

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
            rows = db.execute("SELECT owner, segment, version, name, words FROM prints WHERE owner = ? "
                              "ORDER BY segment", (owner,)).fetchall()
        return [Print(o, s, v, n, from_blob(w)) for o, s, v, n, w in rows]

    def duplicates_of(self, words: np.ndarray, *, uploads: bool | None = None) -> list[Duplicate]:
        """Stored fingerprints that are copies of the recording ``words`` was computed from, best first.

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
            stored = [db.execute("SELECT name, words FROM prints WHERE owner = ? AND segment = ?", key).fetchone()
                      for key in ranked]
        found = []
        for (owner, segment), row in zip(ranked, stored, strict=True):
            if row is None:
                continue
            found_match = match(words, from_blob(row[1]))
            if is_duplicate(found_match):
                found.append(Duplicate(owner, segment, row[0], found_match))
        return sorted(found, key=lambda d: -d.match.score)

    def recording_groups(self, track_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Track id → group key; library tracks sharing a key are copies of one recording.

        Every fingerprinted library track (or each of ``track_ids`` that has a fingerprint) gets a
        key; a track alone in its group gets its own id. The key is the smallest track id of the
        group, so it is stable while the group's members are. Tracks split by a CUE sheet are
        grouped by their first segment only when they have exactly one.
        """
        with self.connection() as db:
            owners = [o for (o,) in db.execute(
                "SELECT owner FROM prints GROUP BY owner HAVING COUNT(*) = 1 AND owner NOT LIKE 'upload:%'")]
            edges = db.execute("SELECT a, b FROM pairs WHERE a NOT LIKE 'upload:%' AND b NOT LIKE 'upload:%' "
                               "AND a_segment = 1 AND b_segment = 1").fetchall()
        parent = {o: o for o in owners}
        for a, b in edges:
            if a in parent and b in parent:
                _union(parent, a, b)
        groups = {o: _root(parent, o) for o in owners}
        if track_ids is None:
            return groups
        return {t: groups[t] for t in dict.fromkeys(track_ids) if t in groups}

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
            finally:
                db.close()
            self._ready = True

    @staticmethod
    def _forget(db: sqlite3.Connection, owner: str) -> None:
        db.execute("DELETE FROM prints WHERE owner = ?", (owner,))
        db.execute("DELETE FROM words WHERE owner = ?", (owner,))
        db.execute("DELETE FROM pairs WHERE a = ? OR b = ?", (owner, owner))


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
