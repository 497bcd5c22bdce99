"""The vector store's rows: writes, searches and reads of the tracks stored in a model's collection.

Rows are keyed ``track_id:segment``; a track is always written whole (every segment), so writing it
again replaces it. Reads of a model that has no collection yet answer "nothing stored".
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from navembed_pipeline.lib.store.client import QUERY_LIMIT
from navembed_pipeline.lib.store.collection import StoreCollections
from navembed_pipeline.lib.store.schema import (EMBEDDING_FIELD, HNSW_MIN_EF, METRIC, SCALAR_FIELDS, Hit, StoredInfo,
                                                VectorRow, hit_of, in_filter, quote, row_entity, stored_info_of)

IDS_PER_QUERY = 256
IDS_PER_VECTOR_QUERY = 64
MAX_BATCH_ROWS = 1000
MAX_BATCH_BYTES = 32 * 1024 * 1024
DEFAULT_OUTPUT_FIELDS = ("track_id", "segment", "name", "offset_seconds", "duration_seconds")
T = TypeVar("T")


class StoreRows(StoreCollections):
    """Row operations on each model's collection (or, with ``collection=``, a rebuild's staging one)."""

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

    def restamp(self, model: str, fingerprints: Mapping[str, str], *, collection: str | None = None) -> int:
        """Give the stored rows of these tracks a new source fingerprint, vectors unchanged (a file that
        came back as it was: ``missing_tracks``). Returns how many rows were rewritten."""
        target = self._target(model, collection)
        if not fingerprints or not self._milvus.exists(target):
            return 0
        dims = self._vector_dims(target)
        raw = list(self._rows_of_tracks(target, fingerprints, [*SCALAR_FIELDS, *dims], IDS_PER_VECTOR_QUERY))
        rows = [VectorRow(track_id=r["track_id"], segment=int(r["segment"]), name=r["name"],
                          offset_seconds=float(r["offset_seconds"]), duration_seconds=float(r["duration_seconds"]),
                          model_id=r["model_id"], model_version=r["model_version"],
                          fingerprint=fingerprints[r["track_id"]], bucket=r["bucket"],
                          vectors={f: np.asarray(r[f], np.float32) for f in dims}) for r in raw]
        for batch in _chunks(rows, MAX_BATCH_ROWS):
            self._milvus.upsert(target, [row_entity(row, dims) for row in batch])
        return len(rows)

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

    # ── internals ───────────────────────────────────────────────────────────

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
