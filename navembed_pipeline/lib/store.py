"""The vector store: one collection per model in Milvus, reached by URI only.

Used by the pipeline (writes) and the API (reads). The same code talks to the managed Milvus Lite
server and to Milvus standalone. Every failure surfaces as a ``StoreError`` naming the URI and the
operation.

Rebuilds never leave readers without vectors: ``begin_rebuild`` creates a fresh physical
collection the run writes into, the logical name (an alias) keeps answering from the old one, and
``commit_rebuild`` moves the alias in one step before dropping the old collection.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from navembed_pipeline.lib.errors import ConfigError, StoreError
from navembed_pipeline.lib.failure_log import FailureLog, migrate_milvus_failures
from navembed_pipeline.lib.store_client import (
    CONNECT_TIMEOUT_S,
    QUERY_LIMIT,
    MilvusConnection,
)
from navembed_pipeline.lib.store_schema import (
    EMBEDDING_FIELD,
    FAILURES_COLLECTION,
    HNSW_MIN_EF,
    METRIC,
    Hit,
    StoredInfo,
    VectorRow,
    collection_name,
    embedding_index,
    embedding_schema,
    hit_of,
    in_filter,
    is_physical_of,
    new_physical_name,
    quote,
    row_entity,
    stored_info_of,
    vector_dims,
)

__all__ = ["Hit", "StoredInfo", "VectorRow", "VectorStore", "collection_name"]

LOGGER = logging.getLogger("navembed.store")
IDS_PER_QUERY = 256
IDS_PER_VECTOR_QUERY = 64
MAX_BATCH_ROWS = 1000
MAX_BATCH_BYTES = 32 * 1024 * 1024
DEFAULT_OUTPUT_FIELDS = ("track_id", "segment", "name", "offset_seconds", "duration_seconds")
T = TypeVar("T")


class VectorStore:
    """navembed's collections in the Milvus server at ``uri`` (connects on first use).

    Reads and writes take the model name; ``collection=`` redirects them to a rebuild's staging
    collection. Reads of a model that has no collection yet answer "nothing stored".
    """

    def __init__(
        self, uri: str, *, token: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S,
        failure_log: FailureLog | None = None, max_dimension: int | None = None,
    ) -> None:
        """``failure_log``: where failed tracks are recorded — the data dir's log in every navembed
        process (``FailureLog.in_data_dir``); without one, a private in-memory log that ends with
        this object (for tools and tests that record nothing durable). ``max_dimension``: the
        longest vector the server accepts (``STANDALONE_MAX_DIM`` for Milvus standalone/distributed;
        None for Milvus Lite, which has no cap)."""
        self.uri = uri
        self.max_dimension = max_dimension
        self._milvus = MilvusConnection(uri, token=token, connect_timeout=connect_timeout)
        self._failure_log = failure_log if failure_log is not None else FailureLog(":memory:")
        self._failures_migrated = False

    # ── collections and rebuilds ────────────────────────────────────────────

    def ensure_collection(
        self, model: str, vector_fields: Mapping[str, int], *, collection: str | None = None
    ) -> str:
        """Create the model's collection if missing; return the physical collection behind it.

        Raises StoreError if it exists with other vector fields or dimensions: switching needs a
        rebuild. With ``collection`` (a staging collection) it only checks that one.
        """
        self._check_dimensions(model, vector_fields)
        logical = collection_name(model)
        if collection not in (None, logical):
            target = self._target(model, collection)
            self._check_fields(logical, target, vector_fields)
            return target
        current = self._milvus.resolve(logical)
        if current is None:
            physical = self._create_physical(logical, vector_fields)
            try:
                self._milvus.call("create alias", logical, lambda c: c.create_alias(physical, logical))
                return physical
            except StoreError:  # another process created it first: use theirs
                self._milvus.drop(physical)
                current = self._milvus.resolve(logical)
                if current is None:
                    raise
        self._check_fields(logical, current, vector_fields)
        return current

    def needs_rebuild(self, model: str, vector_fields: Mapping[str, int]) -> bool:
        """True when the model's live collection holds other vector fields or dimensions than
        ``vector_fields`` (a model upgrade changed them): only a full rebuild can switch it."""
        current = self._milvus.resolve(collection_name(model))
        return current is not None and self._vector_dims(current) != dict(vector_fields)

    def begin_rebuild(self, model: str, vector_fields: Mapping[str, int]) -> str:
        """Create an empty staging collection for a full re-embed; readers keep the old one."""
        self._check_dimensions(model, vector_fields)
        staging = self._create_physical(collection_name(model), vector_fields)
        LOGGER.info("rebuild of %s writes into %s", collection_name(model), staging)
        return staging

    def commit_rebuild(self, model: str, staging: str) -> None:
        """Point the model's logical name at ``staging`` in one step, then drop the old data."""
        logical = collection_name(model)
        self._check_staging(logical, staging)
        current = self._milvus.resolve(logical)
        if current == staging:
            return
        if current is None:
            self._milvus.call("create alias", logical, lambda c: c.create_alias(staging, logical))
        elif current == logical:
            # A plain collection under the logical name (an older install) cannot be aliased
            # over; it is dropped first, so readers miss this model for a moment, once.
            self._milvus.drop(logical)
            self._milvus.call("create alias", logical, lambda c: c.create_alias(staging, logical))
        else:
            self._milvus.call("alter alias", logical, lambda c: c.alter_alias(staging, logical))
            self._milvus.drop(current)
        LOGGER.info("rebuild of %s committed: now %s", logical, staging)

    def abort_rebuild(self, model: str, staging: str | None = None) -> list[str]:
        """Drop ``staging`` (or every pending one); the collection readers use is never touched."""
        pending = self.pending_rebuilds(model)
        if staging is not None:
            if staging not in pending:
                raise StoreError(f"{staging!r} is not a pending rebuild of {model!r} at {self.uri}.")
            pending = [staging]
        for name in pending:
            self._milvus.drop(name)
        return pending

    def pending_rebuilds(self, model: str) -> list[str]:
        """Physical collections of the model that readers do not use (staging or leftovers)."""
        logical = collection_name(model)
        current = self._milvus.resolve(logical)
        names = self._milvus.collections()
        return sorted(n for n in names if is_physical_of(n, logical) and n != current)

    # ── writes ──────────────────────────────────────────────────────────────

    def upsert(self, model: str, rows: Sequence[VectorRow], *, collection: str | None = None) -> int:
        """Write complete tracks: every segment of each track in ``rows``.

        Rows are keyed ``track_id:segment``, so writing the same rows twice leaves one copy.
        Segments of these tracks that ``rows`` does not contain (a shorter CUE split) are
        removed afterwards.
        """
        target = self._target(model, collection)
        if not rows:
            return 0
        dims = self._vector_dims(target)
        # One entity per key: Milvus refuses a batch that repeats a primary key.
        entities = list({row.pk: row_entity(row, dims) for row in rows}.values())
        batch_rows = max(1, min(MAX_BATCH_ROWS, MAX_BATCH_BYTES // (4 * sum(dims.values()))))
        for batch in _chunks(entities, batch_rows):
            self._milvus.upsert(target, list(batch))
        self._prune_segments(target, rows)
        return len(entities)

    def delete_tracks(
        self, model: str, track_ids: Iterable[str], *, collection: str | None = None
    ) -> None:
        """Remove every segment of these tracks."""
        target = self._target(model, collection)
        for chunk in _chunks(list(track_ids), IDS_PER_QUERY):
            self._milvus.delete(target, in_filter("track_id", chunk))

    # ── reads ───────────────────────────────────────────────────────────────

    def search(
        self,
        model: str,
        vector: np.ndarray,
        *,
        field: str = EMBEDDING_FIELD,
        limit: int = 10,
        filter: str | None = None,
        output_fields: Sequence[str] = DEFAULT_OUTPUT_FIELDS,
        collection: str | None = None,
    ) -> list[Hit]:
        """The ``limit`` stored segments closest (cosine) to ``vector``, best first."""
        return self.search_many(
            model, [vector], field=field, limit=limit, filter=filter,
            output_fields=output_fields, collection=collection,
        )[0]

    def search_many(
        self,
        model: str,
        vectors: Sequence[np.ndarray],
        *,
        field: str = EMBEDDING_FIELD,
        limit: int = 10,
        filter: str | None = None,
        output_fields: Sequence[str] = DEFAULT_OUTPUT_FIELDS,
        collection: str | None = None,
    ) -> list[list[Hit]]:
        """One ``search`` per query vector, in a single request."""
        target = self._target(model, collection)
        fields = list(dict.fromkeys(["track_id", "segment", "name", *output_fields]))
        params = {"metric_type": METRIC, "params": {"ef": max(HNSW_MIN_EF, limit)}}
        data = [np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors]
        result = self._milvus.call("search", target, lambda c: c.search(
            target, data=data, anns_field=field, limit=limit, filter=filter or "",
            output_fields=fields, search_params=params, timeout=self._milvus.timeout,
        ))
        return [[hit_of(hit) for hit in hits] for hits in result]

    def stored(
        self, model: str, track_ids: Iterable[str], *, collection: str | None = None
    ) -> dict[str, StoredInfo]:
        """What is stored for these tracks (tracks with nothing stored are absent)."""
        target = self._target(model, collection)
        fields = ["track_id", "fingerprint", "model_version"]
        segments = _by_track(self._rows_of_tracks(target, track_ids, fields, IDS_PER_QUERY))
        return {track: stored_info_of(rows) for track, rows in segments.items()}

    def stored_summary(
        self, model: str, *, collection: str | None = None
    ) -> dict[str, tuple[str, str]]:
        """``(fingerprint, model_version)`` of every stored track ("" where segments disagree)."""
        target = self._target(model, collection)
        if not self._milvus.exists(target):
            return {}
        rows = self._milvus.iterate(target, ["track_id", "fingerprint", "model_version"])
        infos = {track: stored_info_of(segs) for track, segs in _by_track(rows).items()}
        return {track: (info.fingerprint, info.model_version) for track, info in infos.items()}

    def fingerprints(self, model: str, *, collection: str | None = None) -> dict[str, str]:
        """The source fingerprint of every stored track ("" if its segments disagree)."""
        summary = self.stored_summary(model, collection=collection)
        return {track: fingerprint for track, (fingerprint, _) in summary.items()}

    def all_track_ids(self, model: str, *, collection: str | None = None) -> set[str]:
        """Every track with at least one stored segment."""
        return self._track_ids(self._target(model, collection), "")

    def track_ids_in_bucket(
        self, model: str, bucket: str, *, collection: str | None = None
    ) -> set[str]:
        """Every stored track of one hash bucket."""
        return self._track_ids(self._target(model, collection), f"bucket == {quote(bucket)}")

    def track_buckets(self, model: str, *, collection: str | None = None) -> dict[str, str]:
        """The bucket of every stored track, in one pass over the collection."""
        target = self._target(model, collection)
        if not self._milvus.exists(target):
            return {}
        return {row["track_id"]: row["bucket"] for row in self._milvus.iterate(target, ["track_id", "bucket"])}

    def count(self, model: str, *, collection: str | None = None) -> int:
        """Number of stored rows (segments) of the model."""
        target = self._target(model, collection)
        return self._milvus.count(target) if self._milvus.exists(target) else 0

    def rows_in_buckets(
        self, model: str, buckets: Iterable[str], fields: Sequence[str], *, collection: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every stored row of these hash buckets with ``fields``, a few batched reads per call."""
        target = self._target(model, collection)
        if not self._milvus.exists(target):
            return
        for chunk in _chunks(sorted(set(buckets)), IDS_PER_QUERY):
            yield from self._milvus.iterate(target, list(fields), in_filter("bucket", chunk))

    def stored_vector_fields(self, model: str, *, collection: str | None = None) -> dict[str, int]:
        """The vector fields and dimensions the model's collection was created with ({} if none)."""
        target = self._target(model, collection)
        return self._vector_dims(target) if self._milvus.exists(target) else {}

    def get_vectors(
        self,
        model: str,
        track_ids: Iterable[str],
        field: str = EMBEDDING_FIELD,
        *,
        collection: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Each track's ``field`` vectors as a (segments, dim) array, in segment order."""
        target = self._target(model, collection)
        fields = ["track_id", "segment", field]
        segments = _by_track(self._rows_of_tracks(target, track_ids, fields, IDS_PER_VECTOR_QUERY))
        return {
            track: np.stack([np.asarray(r[field], np.float32)
                             for r in sorted(rows, key=lambda r: r["segment"])])
            for track, rows in segments.items()
        }

    # ── failures (a SQLite log beside the store; see failure_log.py) ────────

    @property
    def failure_log(self) -> FailureLog:
        """The failure log, with any records of the old Milvus failures collection moved into it."""
        if not self._failures_migrated:
            migrate_milvus_failures(self._milvus, self._failure_log, FAILURES_COLLECTION)
            self._failures_migrated = True
        return self._failure_log

    def record_failures(self, model: str, failures: Iterable[tuple[str, str]]) -> None:
        """Remember why tracks failed for ``model`` (the latest error per track wins)."""
        self.failure_log.record(model, failures)

    def failed_tracks(self, model: str) -> dict[str, str]:
        """The recorded error of every failed track of ``model``."""
        return self.failure_log.failed(model)

    def clear_failures(self, model: str, track_ids: Iterable[str]) -> None:
        """Forget the failures of these tracks (e.g. after they embedded fine)."""
        self.failure_log.clear(model, track_ids)

    def close(self) -> None:
        """Release the connection (the store reconnects if used again)."""
        self._milvus.close()

    # ── internals ───────────────────────────────────────────────────────────

    def _check_dimensions(self, model: str, vector_fields: Mapping[str, int]) -> None:
        """Refuse, before anything is created, vectors longer than this server accepts."""
        longest = max(vector_fields.values(), default=0)
        if self.max_dimension is not None and longest > self.max_dimension:
            raise ConfigError(
                f"model {model!r} produces {longest:,}-d vectors but the Milvus server at {self.uri} accepts at "
                f"most {self.max_dimension:,} dimensions (Milvus standalone/distributed). For mert set "
                "NAVEMBED_MERT_LAYERS to 'mean' (3,072-d) or a list of layers, or leave NAVEMBED_MILVUS_URI "
                "empty to use the embedded Milvus Lite store, which has no cap.")

    def _target(self, model: str, collection: str | None) -> str:
        logical = collection_name(model)
        if collection is None or collection == logical:
            return logical
        self._check_staging(logical, collection)
        return collection

    def _vector_dims(self, target: str) -> dict[str, int]:
        description = self._milvus.describe(target)
        if description is None:
            raise StoreError(f"Milvus at {self.uri} has no collection {target!r}; "
                             "the pipeline creates it (ensure_collection) before writing.")
        return vector_dims(description)

    def _create_physical(self, logical: str, vector_fields: Mapping[str, int]) -> str:
        physical = new_physical_name(logical)
        schema = embedding_schema(vector_fields)
        self._milvus.create(physical, schema, lambda c: embedding_index(c, vector_fields))
        return physical

    def _check_fields(self, logical: str, physical: str, wanted: Mapping[str, int]) -> None:
        found = self._vector_dims(physical)
        if found != dict(wanted):
            raise StoreError(
                f"Collection {logical!r} at {self.uri} holds vectors {found}, but the model "
                f"produces {dict(wanted)}: re-embed everything (clear existing) to switch."
            )

    def _check_staging(self, logical: str, staging: str) -> None:
        if not is_physical_of(staging, logical):
            raise StoreError(f"{staging!r} is not a physical collection of {logical!r}.")
        if self._milvus.resolve(staging) != staging:
            raise StoreError(f"Milvus at {self.uri} has no collection {staging!r}.")

    def _track_ids(self, target: str, expr: str) -> set[str]:
        if not self._milvus.exists(target):
            return set()
        return {row["track_id"] for row in self._milvus.iterate(target, ["track_id"], expr)}

    def _prune_segments(self, target: str, rows: Sequence[VectorRow]) -> None:
        kept: dict[str, set[int]] = defaultdict(set)
        for row in rows:
            kept[row.track_id].add(int(row.segment))
        clauses = [
            f"(track_id == {quote(track)} and segment not in [{', '.join(map(str, sorted(segs)))}])"
            for track, segs in kept.items()
        ]
        for chunk in _chunks(clauses, IDS_PER_QUERY):
            self._milvus.delete(target, " or ".join(chunk))

    def _rows_of_tracks(
        self, target: str, track_ids: Iterable[str], fields: list[str], per_query: int
    ) -> Iterator[dict[str, Any]]:
        if not self._milvus.exists(target):
            return
        for chunk in _chunks(list(dict.fromkeys(track_ids)), per_query):
            yield from self._query_tracks(target, list(chunk), fields)

    def _query_tracks(self, target: str, track_ids: list[str], fields: list[str]) -> list[dict]:
        """All rows of these tracks, splitting the id list if one query would hit the cap."""
        rows = self._milvus.query(target, in_filter("track_id", track_ids), fields)
        if len(rows) < QUERY_LIMIT or len(track_ids) == 1:
            return rows
        half = len(track_ids) // 2
        return (self._query_tracks(target, track_ids[:half], fields)
                + self._query_tracks(target, track_ids[half:], fields))


def _by_track(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["track_id"]].append(row)
    return grouped


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
