"""The store's vectors kept in this process, in step with the store.

Why: Milvus Lite answers one search in 66-90 ms at 50k x 1536-d (97 % of it Python bookkeeping), so
a playlist that needs several searches per model cannot meet 100 ms through it. Each (model, field)
is loaded once into a ``FieldVectors`` and searched with numpy.

Keeping in step: every ``check_interval_s`` an access triggers a cheap check of the model's
*signature* — the physical collection behind its alias (a rebuild switches it), its row count, and
its store generation (``lib/store/generation.py``), which every writer advances once it has finished
writing — and a reload when it differs. A new generation or collection reloads at once: what a
finished run wrote, deleted or rewrote in place. A row count that changed without a new generation
(a run still writing) reloads at most every ``min_reload_interval_s`` or ten times the last load's
duration, whichever is longer, so a run that keeps adding rows does not keep the store busy with full
scans. An unchanged signature never rescans; only a store whose writers publish no generation (an
older pipeline) is reloaded when the copy is older than ``max_age_s``. ``sync()`` does the check and
any reload now, on the caller's thread (the API does it before ``/batch/progress`` reports a run
done), and ``invalidate()`` lets a writer in this process force a reload at the next access. With
``background=True`` checks and reloads run on a thread while requests keep reading the previous
copy; only the very first load of a field makes its caller wait. Each load refits the field's
calibration (``lib/recommend/calibration.py``, written to ``calibration_dir``) and, from a store scan, writes
a file copy to ``snapshot_dir`` that the first load of a restarted process reads instead. A reload keeps
the approximate index of the copy it replaces when few rows changed (``AnnIndex.carried``): a run that
added or re-embedded a few hundred tracks of a million does not pay the index's build again.
"""

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.recommend.calibration import calibration_path, load_calibration, save_calibration
from navembed_pipeline.lib.recommend.snapshot import SET_ASIDE_MARK, SnapshotDamaged, read_snapshot, write_snapshot
from navembed_pipeline.lib.recommend.ann import build_ann
from navembed_pipeline.lib.recommend.joint import JointKeeper, JointVectors
from navembed_pipeline.lib.recommend.vectors import IVF_MIN_ROWS, FieldVectors
from navembed_pipeline.lib.store import VectorStore, collection_name

LOGGER = logging.getLogger("navembed.recommend")
EMBEDDING_FIELD = "embedding"
CHECK_INTERVAL_S = 2.0
MAX_AGE_S = 900.0
MIN_RELOAD_INTERVAL_S = 30.0
RELOAD_COST_FACTOR = 10.0
STALE_AFTER_S = 600.0
SCAN_BATCH = 10_000  # rows per store round trip while scanning a field
# A first load from the store of at least this many rows serves exact search at once and builds its index on
# a thread (at 1M rows the HNSW graph is minutes of CPU; an exact search there costs ~0.1 s a query).
DEFERRED_INDEX_ROWS = 200_000

NO_INDEX = 1 << 62  # ``ivf_min_rows`` that no field reaches: exact search
Signature = tuple[str | None, int, str | None]  # collection, rows, generation
Key = tuple[str, str]


@dataclass
class _Entry:
    vectors: FieldVectors
    signature: Signature
    loaded_at: float
    checked_at: float
    load_seconds: float = 0.0
    checking: bool = False
    forced: bool = False
    source: str = "store"  # where the copy came from: "store" (a scan) or "snapshot"
    loaded_wall: float = 0.0  # unix time of the load (for people)


@dataclass
class _Trouble:
    """A field's refresh (or load) failing since ``since``; the latest error."""

    error: str
    since: float
    last: float
    failures: int = 1


class VectorCache:
    """In-process copies of the store's vector fields, loaded on first use and refreshed on change."""

    def __init__(self, store: VectorStore | Callable[[], VectorStore], *,
                 check_interval_s: float = CHECK_INTERVAL_S, max_age_s: float = MAX_AGE_S,
                 min_reload_interval_s: float = MIN_RELOAD_INTERVAL_S, ivf_min_rows: int = IVF_MIN_ROWS,
                 background: bool = True, calibration_dir: Path | None = None,
                 snapshot_dir: Path | None = None, stale_after_s: float = STALE_AFTER_S,
                 deferred_index_rows: int = DEFERRED_INDEX_ROWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``store`` may be a callable returning the store (connected on first use, e.g. the API's
        ``StoreHandle``); ``calibration_dir``: where each loaded field's calibration is written as JSON;
        ``snapshot_dir``: where scanned fields are copied for a fast first load after a restart
        (``snapshot.py``); ``stale_after_s``: a field whose checks have failed for longer is reported stale
        by ``status()`` (it keeps serving its last copy); ``deferred_index_rows``: with ``background``, a first
        load from the store of at least this many rows is served by exact search while its approximate index
        is built on a thread (``status()`` says so), then the indexed copy replaces it and is snapshotted."""
        self._store = store
        self.stale_after_s = stale_after_s
        self._trouble: dict[Key, _Trouble] = {}
        self._progress: dict[Key, dict] = {}
        self._set_aside: dict[Key, dict] = {}
        self._indexing: dict[Key, dict] = {}
        self.deferred_index_rows = deferred_index_rows
        self.calibration_dir = calibration_dir
        self.snapshot_dir = snapshot_dir
        self.check_interval_s = check_interval_s
        self.max_age_s = max_age_s
        self.min_reload_interval_s = min_reload_interval_s
        self.ivf_min_rows = ivf_min_rows
        self.background = background
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._loading: dict[Key, threading.RLock] = {}
        self._lock = threading.Lock()
        self._joints = JointKeeper(background=background, snapshot_dir=snapshot_dir, ivf_min_rows=ivf_min_rows)

    def joint(self, fields: Sequence[FieldVectors]) -> JointVectors | None:
        """The joined rows of these current field copies (``joint.py``), or None while they are being joined
        (on a thread, from ``ivf_min_rows`` tracks on) or cannot be. A search passes the copies it pinned."""
        with self._lock:
            entries = [self._entries.get((f.model, f.field)) for f in fields]
        current = all(e is not None and e.vectors is f for e, f in zip(entries, fields, strict=True))
        return self._joints.get(fields, [e.signature for e in entries] if current else None)

    def joint_status(self) -> list[dict]:
        """The joined copies served (per model set), and any being made or failed (``JointKeeper.status``)."""
        return self._joints.status()

    def field(self, model: str, field: str = EMBEDDING_FIELD) -> FieldVectors:
        """The current copy of ``model``'s ``field`` (empty if the model has no collection yet)."""
        key = (model, field)
        with self._lock:
            entry = self._entries.get(key)
            loading = self._loading.setdefault(key, threading.RLock())
        if entry is None:
            with loading:  # one load per field, however many requests arrive at once
                entry = self._entries.get(key) or self._recorded_load(key)
            return entry.vectors
        if len(entry.vectors) == 0:
            # Nothing to serve yet (e.g. loaded before the first run finished): look again now, so the
            # first request after a run sees its vectors. Counting rows is cheap while the store is empty.
            with loading:
                with self._lock:
                    entry.checking = True
                self._check(key, self._entries[key])
            return self._entries[key].vectors
        if self._claim_check(entry):
            if self.background:
                threading.Thread(target=self._check, args=(key, entry), daemon=True,
                                 name=f"navembed-refresh-{model}-{field}").start()
            else:
                self._check(key, entry)
        return self._entries[key].vectors

    @property
    def store(self) -> VectorStore:
        return self._store if isinstance(self._store, VectorStore) else self._store()

    def close(self) -> None:
        """Drop every loaded copy (the app's shutdown); a later access would load again."""
        with self._lock:
            self._entries.clear()

    def refresh(self, model: str | None = None) -> None:
        """Check the loaded fields (of ``model``) now and reload those whose store changed."""
        for key, entry in self._matching(model):
            with self._lock:
                entry.checking = True
            self._check(key, entry)

    def sync(self, model: str | None = None) -> list[Key]:
        """Reload now, on this thread, every loaded field (of ``model``) whose store has a new generation
        or collection (or was invalidated): when this returns, their finished writers' results are served.
        A row count that changed without a new generation (a run still writing) is left to the regular
        checks. The fields reloaded."""
        reloaded = []
        for key, entry in self._matching(model):
            with self._loading[key]:  # never alongside another load of this field
                current = self._entries.get(key)
                if current is None:
                    continue
                signature = self._signature(key[0])
                if current.forced or signature[0] != current.signature[0] or signature[2] != current.signature[2]:
                    LOGGER.info("reloading %s.%s now: store %s (was %s)", *key, signature, current.signature)
                    self._load(key, signature)
                    reloaded.append(key)
        return reloaded

    def invalidate(self, model: str | None = None) -> None:
        """Make the next access check the store, e.g. right after this process wrote to it."""
        for _, entry in self._matching(model):
            with self._lock:
                entry.checked_at = float("-inf")
                entry.forced = True

    def warm(self, models: Iterable[str], fields: Iterable[str] = (EMBEDDING_FIELD,)) -> threading.Thread:
        """Load these fields on a background thread (e.g. at API startup); returns the thread."""
        keys = [(m, f) for m in models for f in fields]
        thread = threading.Thread(target=lambda: [self._safe_field(*key) for key in keys], daemon=True,
                                  name="navembed-warm")
        thread.start()
        return thread

    def _safe_field(self, model: str, field: str) -> None:
        try:
            self.field(model, field)
        except Exception:  # noqa: BLE001 - warming is best effort; recorded for status(), a request reports it
            LOGGER.warning("could not preload %s.%s", model, field, exc_info=True)

    def status(self) -> list[dict]:
        """Per field this cache has loaded or tried to: what it serves (rows, tracks, where from, the store
        collection and generation it was loaded at, its age), the latest check or load error and for how
        long checks have failed, ``stale`` once that exceeds ``stale_after_s``, the scan in progress (rows
        read of rows expected), and a damaged snapshot set aside (``rebuilding`` until the new one is written)."""
        now = self._clock()
        with self._lock:
            keys = sorted({*self._entries, *self._trouble, *self._progress, *self._set_aside})
            out = []
            for key in keys:
                entry, trouble = self._entries.get(key), self._trouble.get(key)
                item: dict = {"model": key[0], "field": key[1], "loaded": entry is not None}
                if entry is not None:
                    item.update(rows=len(entry.vectors.rows), tracks=len(entry.vectors), source=entry.source,
                                collection=entry.signature[0], generation=entry.signature[2],
                                age_s=round(now - entry.loaded_at, 1), loaded_at=entry.loaded_wall,
                                load_s=round(entry.load_seconds, 2),
                                index=(f"faiss {type(entry.vectors.ann.index).__name__}" if entry.vectors.ann is not None
                                       else "exact"))
                failing = 0.0 if trouble is None else now - trouble.since
                item.update(last_error=None if trouble is None else trouble.error,
                            failing_s=round(failing, 1), failures=0 if trouble is None else trouble.failures,
                            stale=trouble is not None and failing >= self.stale_after_s)
                if key in self._progress:
                    item["scan"] = dict(self._progress[key])
                if key in self._set_aside:
                    item["set_aside"] = dict(self._set_aside[key])
                if key in self._indexing:  # served by exact search until its index is built
                    item["index_building"] = dict(self._indexing[key])
                out.append(item)
        return out

    def _failed(self, key: Key, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        now = self._clock()
        with self._lock:
            trouble = self._trouble.get(key)
            if trouble is None:
                self._trouble[key] = _Trouble(message, now, now)
            else:
                trouble.error, trouble.last, trouble.failures = message, now, trouble.failures + 1

    def _recovered(self, key: Key) -> None:
        with self._lock:
            self._trouble.pop(key, None)

    def _recorded_load(self, key: Key) -> "_Entry":
        try:
            entry = self._load(key)
        except Exception as exc:
            self._failed(key, exc)
            raise
        self._recovered(key)
        return entry

    def _matching(self, model: str | None) -> list[tuple[Key, _Entry]]:
        with self._lock:
            return [(k, e) for k, e in self._entries.items() if model is None or k[0] == model]

    def _claim_check(self, entry: _Entry) -> bool:
        with self._lock:
            if entry.checking or self._clock() - entry.checked_at < self.check_interval_s:
                return False
            entry.checking = True
            return True

    def _check(self, key: Key, entry: _Entry) -> None:
        try:
            signature = self._signature(key[0])
            if self._reload_due(entry, signature):
                with self._loading[key]:
                    if self._entries.get(key) is entry:  # not reloaded meanwhile (e.g. by sync)
                        LOGGER.info("reloading %s.%s: store now %s (was %s)", *key, signature, entry.signature)
                        self._load(key, signature)
                self._recovered(key)
                return
            with self._lock:
                entry.checked_at = self._clock()
            self._recovered(key)
        except Exception as exc:  # noqa: BLE001 - keep serving the previous copy; retry, and show it on /health
            LOGGER.warning("checking %s.%s against the store failed", *key, exc_info=True)
            self._failed(key, exc)
            with self._lock:
                entry.checked_at = self._clock()
        finally:
            with self._lock:
                entry.checking = False

    def _reload_due(self, entry: _Entry, signature: Signature) -> bool:
        """A rebuild (new collection), a new generation or ``invalidate()`` reloads at once; a row count
        changed without a new generation at most every ``max(min_reload_interval_s, 10 x the last
        load's duration)``, so an embedding run that adds rows all the time does not keep the store busy
        with full scans. Without a generation (writers that publish none) a copy expires at ``max_age_s``."""
        age = self._clock() - entry.loaded_at
        if entry.forced or signature[0] != entry.signature[0] or signature[2] != entry.signature[2]:
            return True
        if signature[2] is None and age >= self.max_age_s:
            return True
        if len(entry.vectors) == 0:
            return signature != entry.signature  # an empty copy costs nothing to replace
        return signature != entry.signature and age >= max(self.min_reload_interval_s,
                                                           RELOAD_COST_FACTOR * entry.load_seconds)

    def _load(self, key: Key, signature: Signature | None = None) -> _Entry:
        model, field = key
        # Taken before reading: a write (or a generation published) during the scan shows at the next check.
        signature = signature if signature is not None else self._signature(model)
        started, wall = self._clock(), time.time()
        first = key not in self._entries
        vectors = self._from_snapshot(key, signature) if first and self.snapshot_dir else None
        source = "snapshot" if vectors is not None else "store"
        defer = False
        if vectors is None:
            ids, segments, rows = self._scan(key, signature[1])
            with self._lock:
                served = self._entries.get(key)
            defer = served is None and self.background and len(ids) >= max(self.deferred_index_rows, self.ivf_min_rows)
            vectors = FieldVectors(model, field, ids, segments, rows, copy=False,
                                   ivf_min_rows=NO_INDEX if defer else self.ivf_min_rows,
                                   previous=None if served is None else served.vectors)
            del rows
            if not defer:
                self._write_snapshot(key, signature, vectors)
        entry = _Entry(vectors, signature, loaded_at=started, checked_at=self._clock(),
                       load_seconds=self._clock() - started, source=source, loaded_wall=wall)
        with self._lock:
            self._entries[key] = entry
            if defer:
                self._indexing[key] = {"rows": len(vectors.rows), "started_at": time.time()}
                threading.Thread(target=self._index_later, args=(key, entry), daemon=True,
                                 name=f"navembed-index-{model}-{field}").start()
        LOGGER.info("loaded %d %s.%s rows from the %s in %.1f s", len(vectors.rows), model, field, source,
                    self._clock() - started)
        self._save_calibration(entry.vectors, signature)
        return entry

    def _write_snapshot(self, key: Key, signature: Signature, vectors: FieldVectors) -> None:
        if self.snapshot_dir is not None and len(vectors):
            if write_snapshot(self.snapshot_dir, signature, vectors):
                with self._lock:
                    if key in self._set_aside:
                        self._set_aside[key]["rebuilding"] = False

    def _index_later(self, key: Key, entry: "_Entry") -> None:
        """Build the index of a copy first served by exact search, put the indexed copy in its place (unless
        a reload replaced it meanwhile), then snapshot it. A failure is recorded; exact search goes on."""
        try:
            exact = entry.vectors
            ann = build_ann(exact.rows)
            indexed = FieldVectors.restore(exact.model, exact.field, exact.track_ids, exact.row_track, exact.rows,
                                           exact.norms, ann=ann, calibration=exact.calibration)
            with self._loading[key]:
                with self._lock:
                    current = self._entries.get(key) is entry
                    if current:
                        entry.vectors = indexed
                if current:
                    LOGGER.info("%s.%s: the index of %d rows is built; searches use it now", *key, len(indexed.rows))
                    self._write_snapshot(key, entry.signature, indexed)
        except Exception as exc:  # noqa: BLE001 - exact search keeps serving; /health shows the error
            LOGGER.warning("building the index of %s.%s failed", *key, exc_info=True)
            self._failed(key, exc)
        finally:
            with self._lock:
                self._indexing.pop(key, None)

    def _from_snapshot(self, key: Key, signature: Signature) -> FieldVectors | None:
        try:
            return read_snapshot(self.snapshot_dir, *key, signature)
        except SnapshotDamaged as exc:
            with self._lock:
                self._set_aside[key] = {"error": str(exc), "files": exc.set_aside, "at": time.time(),
                                        "rebuilding": True}
            return None

    def _scan(self, key: Key, expected: int) -> tuple[list[str], list[int], np.ndarray]:
        """``_scan`` of the store with its progress kept for ``status()`` (rows read of ``expected``)."""
        progress = {"rows_read": 0, "rows_expected": int(expected), "started_at": time.time()}
        with self._lock:
            self._progress[key] = progress
        try:
            return _scan(self.store, *key, expected=expected, progress=progress)
        finally:
            with self._lock:
                self._progress.pop(key, None)

    def _save_calibration(self, vectors: FieldVectors, signature: Signature) -> None:
        """Persist the field's calibration (inspectable). A file there that cannot be read as a calibration
        (damaged) is set aside first (``<name>.corrupt-<UTC time>``) and named by ``status()``."""
        if self.calibration_dir is None or vectors.calibration is None:
            return
        path = calibration_path(self.calibration_dir, vectors.model, vectors.field)
        try:
            if path.exists() and load_calibration(self.calibration_dir, vectors.model, vectors.field) is None:
                target = path.with_name(f"{path.name}{SET_ASIDE_MARK}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
                path.rename(target)
                LOGGER.error("the calibration file %s is damaged: set aside as %s and rewritten", path, target.name)
                with self._lock:
                    self._set_aside[(vectors.model, vectors.field)] = {
                        "error": f"the calibration file {path} was damaged", "files": [target.name],
                        "at": time.time(), "rebuilding": False}
            save_calibration(self.calibration_dir, dataclasses.replace(
                vectors.calibration, signature=f"{signature[0]}:{signature[1]} rows"))
        except OSError:
            LOGGER.warning("could not write the calibration of %s.%s", vectors.model, vectors.field, exc_info=True)

    def _signature(self, model: str) -> Signature:
        store = self.store
        return physical_collection(store, model), store.count(model), store.generations([model]).get(model)


def physical_collection(store: VectorStore, model: str) -> str | None:
    """The collection behind the model's alias (None = none yet); a committed rebuild changes it."""
    # VectorStore has no public accessor for this; its connection resolves aliases.
    return store._milvus.resolve(collection_name(model))  # noqa: SLF001


def _scan(store: VectorStore, model: str, field: str, *, expected: int = 0,
          progress: dict | None = None) -> tuple[list[str], list[int], np.ndarray]:
    """Every stored row's track id, segment and ``field`` vector (one pass over the collection, in batches
    of ``SCAN_BATCH`` rows, into one preallocated array sized by ``expected`` and grown if the store grew);
    ``progress["rows_read"]`` counts the rows read so far."""
    logical = collection_name(model)
    milvus = store._milvus  # noqa: SLF001 - a full scan with vectors is not part of VectorStore's API yet
    if not milvus.exists(logical):
        return [], [], np.zeros((0, 1), dtype=np.float32)
    ids: list[str] = []
    segments: list[int] = []
    vectors: np.ndarray | None = None
    for row in milvus.iterate(logical, ["track_id", "segment", field], batch_size=SCAN_BATCH):
        value = np.asarray(row[field], dtype=np.float32)
        if vectors is None:
            vectors = np.empty((max(expected, 1), len(value)), dtype=np.float32)
        elif len(ids) == len(vectors):
            vectors = np.concatenate([vectors, np.empty_like(vectors[: max(len(vectors) // 4, 1)])])
        vectors[len(ids)] = value
        ids.append(row["track_id"])
        segments.append(int(row["segment"]))
        if progress is not None and len(ids) % 1000 == 0:
            progress["rows_read"] = len(ids)
    if progress is not None:
        progress["rows_read"] = len(ids)
    if vectors is None:
        return [], [], np.zeros((0, 1), dtype=np.float32)
    return ids, segments, vectors[: len(ids)]


class StaticVectors:
    """Fixed vector fields built from arrays (tests, benchmarks); unknown fields are empty. Their joined rows
    (``joint.py``) are made on first use, on the caller's thread; ``joints``: ones made earlier (a benchmark's)."""

    def __init__(self, fields: Iterable[FieldVectors], *, joints: Iterable[JointVectors] = (),
                 joined: bool = True) -> None:
        """``joined=False``: no joined rows (every search takes each model's shortlist)."""
        self._fields = {(f.model, f.field): f for f in fields}
        self._joints = JointKeeper(background=False)
        self._given = list(joints)
        self.joined = joined

    def joint(self, fields: Sequence[FieldVectors]) -> JointVectors | None:
        if not self.joined:
            return None
        given = next((j for j in self._given if j.serves(fields)), None)
        return given if given is not None else self._joints.get(fields)

    def field(self, model: str, field: str = EMBEDDING_FIELD) -> FieldVectors:
        found = self._fields.get((model, field))
        return found if found is not None else FieldVectors(model, field, [], [], np.zeros((0, 1), np.float32))
