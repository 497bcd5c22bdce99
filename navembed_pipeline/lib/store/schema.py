"""What the vector store holds: collection names, the records and the Milvus schemas.

One logical collection per model (the original system's names, plus ``dsp_embedding``). A
logical name is a Milvus alias that points at a physical collection ``<logical>__<timestamp>``,
so a rebuild can fill a fresh physical collection and switch readers over in one step.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from navembed_pipeline.lib.errors import StoreError

EMBEDDING_FIELD = "embedding"
COLLECTIONS = {
    "muq": "embedding",
    "mert": "mert_embedding",
    "latent": "latent_embedding",
    "dsp": "dsp_embedding",
}
FAILURES_COLLECTION = "navembed_failures"
PHYSICAL_SEPARATOR = "__"

PK_MAX_BYTES = 640
TRACK_ID_MAX_BYTES = 512
NAME_MAX_BYTES = 2048
TAG_MAX_BYTES = 256  # model_id, model_version, fingerprint
BUCKET_MAX_BYTES = 8
ERROR_MAX_BYTES = 4096
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
HNSW_MIN_EF = 64
STANDALONE_MAX_DIM = 32_768  # Milvus standalone/distributed refuse longer vectors (Milvus Lite has no cap)
METRIC = "COSINE"
PLACEHOLDER_FIELD = "placeholder"  # the legacy failures collection needed a vector field
PLACEHOLDER_VECTOR = [0.0, 0.0]
SCALAR_FIELDS = (
    "pk",
    "track_id",
    "segment",
    "name",
    "offset_seconds",
    "duration_seconds",
    "model_id",
    "model_version",
    "fingerprint",
    "bucket",
)
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, eq=False)
class VectorRow:
    """One segment of one track, ready to store. ``pk`` is derived, so every write is an upsert."""

    track_id: str
    segment: int
    name: str
    offset_seconds: float
    duration_seconds: float
    model_id: str
    model_version: str
    fingerprint: str
    bucket: str
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def pk(self) -> str:
        return primary_key(self.track_id, self.segment)


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is the cosine similarity (higher is closer)."""

    pk: str
    score: float
    track_id: str
    segment: int
    name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class StoredInfo:
    """What is stored for one track. An empty fingerprint/version means its segments disagree."""

    fingerprint: str
    model_version: str
    segments: int


def primary_key(track_id: str, segment: int) -> str:
    return f"{track_id}:{segment}"


def collection_name(model: str) -> str:
    """The logical collection of a model: the original names, ``<model>_embedding`` otherwise."""
    name = COLLECTIONS.get(model, f"{model}_embedding")
    if not _NAME_PATTERN.match(name):
        raise StoreError(f"Model name {model!r} cannot name a Milvus collection.")
    return name


def new_physical_name(logical: str) -> str:
    """A fresh physical collection name for ``logical``, ordered by creation time."""
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S_%f")
    return f"{logical}{PHYSICAL_SEPARATOR}{stamp}"


def is_physical_of(name: str, logical: str) -> bool:
    return name.startswith(f"{logical}{PHYSICAL_SEPARATOR}")


def embedding_schema(vector_fields: Mapping[str, int]) -> Any:
    """The schema of a model collection: track metadata plus one FLOAT_VECTOR per field."""
    if EMBEDDING_FIELD not in vector_fields:
        raise StoreError(f"A model collection needs an {EMBEDDING_FIELD!r} vector field.")
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=PK_MAX_BYTES)
    schema.add_field("track_id", DataType.VARCHAR, max_length=TRACK_ID_MAX_BYTES)
    schema.add_field("segment", DataType.INT64)
    schema.add_field("name", DataType.VARCHAR, max_length=NAME_MAX_BYTES)
    schema.add_field("offset_seconds", DataType.FLOAT)
    schema.add_field("duration_seconds", DataType.FLOAT)
    for tag in ("model_id", "model_version", "fingerprint"):
        schema.add_field(tag, DataType.VARCHAR, max_length=TAG_MAX_BYTES)
    schema.add_field("bucket", DataType.VARCHAR, max_length=BUCKET_MAX_BYTES)
    for name, dim in vector_fields.items():
        if not _NAME_PATTERN.match(name) or name in SCALAR_FIELDS or dim < 1:
            raise StoreError(f"Invalid vector field {name!r} with dimension {dim}.")
        schema.add_field(name, DataType.FLOAT_VECTOR, dim=int(dim))
    return schema


def embedding_index(client: MilvusClient, vector_fields: Iterable[str]) -> Any:
    """HNSW + COSINE on every vector field, inverted indexes on the looked-up scalars."""
    index = client.prepare_index_params()
    for name in vector_fields:
        index.add_index(name, index_type="HNSW", metric_type=METRIC, params=dict(HNSW_PARAMS))
    for name in ("track_id", "name", "bucket"):
        index.add_index(name, index_type="INVERTED")
    return index


def failures_schema() -> Any:
    """The legacy failures collection (before the SQLite failure log, ``failure_log.py``): kept only so
    old data dirs can be recognised and migrated, and tests can create one to migrate."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=PK_MAX_BYTES)
    schema.add_field("model", DataType.VARCHAR, max_length=TAG_MAX_BYTES)
    schema.add_field("track_id", DataType.VARCHAR, max_length=TRACK_ID_MAX_BYTES)
    schema.add_field("error", DataType.VARCHAR, max_length=ERROR_MAX_BYTES)
    schema.add_field("failed_at", DataType.INT64)
    schema.add_field(PLACEHOLDER_FIELD, DataType.FLOAT_VECTOR, dim=len(PLACEHOLDER_VECTOR))
    return schema


def failures_index(client: MilvusClient) -> Any:
    index = client.prepare_index_params()
    index.add_index(PLACEHOLDER_FIELD, index_type="FLAT", metric_type="L2")
    index.add_index("model", index_type="INVERTED")
    return index


def hit_of(hit: Any) -> Hit:
    """A ``Hit`` from one pymilvus search result."""
    entity = dict(hit["entity"])
    return Hit(
        pk=str(hit.id),
        score=float(hit["distance"]),
        track_id=entity["track_id"],
        segment=int(entity["segment"]),
        name=entity["name"],
        fields=entity,
    )


def stored_info_of(rows: list[dict[str, Any]]) -> StoredInfo:
    """A ``StoredInfo`` from the stored rows (segments) of one track."""
    fingerprints = {row["fingerprint"] for row in rows}
    versions = {row["model_version"] for row in rows}
    return StoredInfo(
        fingerprint=fingerprints.pop() if len(fingerprints) == 1 else "",
        model_version=versions.pop() if len(versions) == 1 else "",
        segments=len(rows),
    )


def vector_dims(description: Mapping[str, Any]) -> dict[str, int]:
    """The vector fields and dimensions of a ``describe_collection`` answer."""
    return {
        spec["name"]: int(spec["params"]["dim"])
        for spec in description["fields"]
        if spec["type"] == DataType.FLOAT_VECTOR
    }


def row_entity(row: VectorRow, dims: Mapping[str, int]) -> dict[str, Any]:
    """The Milvus entity of ``row``; its vectors must match the collection's fields exactly."""
    if len(row.track_id.encode()) > TRACK_ID_MAX_BYTES:
        raise StoreError(f"Track id {row.track_id[:80]!r}... is longer than {TRACK_ID_MAX_BYTES} bytes.")
    if set(row.vectors) != set(dims):
        raise StoreError(
            f"Track {row.track_id!r} has vectors {sorted(row.vectors)}, "
            f"the collection expects {sorted(dims)}."
        )
    entity: dict[str, Any] = {
        "pk": row.pk,
        "track_id": row.track_id,
        "segment": int(row.segment),
        "name": fit(row.name, NAME_MAX_BYTES),
        "offset_seconds": float(row.offset_seconds),
        "duration_seconds": float(row.duration_seconds),
        "model_id": fit(row.model_id, TAG_MAX_BYTES),
        "model_version": fit(row.model_version, TAG_MAX_BYTES),
        "fingerprint": fit(row.fingerprint, TAG_MAX_BYTES),
        "bucket": fit(row.bucket, BUCKET_MAX_BYTES),
    }
    for name, dim in dims.items():
        vector = np.asarray(row.vectors[name], dtype=np.float32).reshape(-1)
        if vector.shape != (dim,) or not np.isfinite(vector).all():
            raise StoreError(
                f"Track {row.track_id!r} segment {row.segment}: {name!r} must be {dim} finite "
                f"values (got shape {vector.shape})."
            )
        entity[name] = vector
    return entity


def fit(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 without splitting a character."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def quote(value: str) -> str:
    """A Milvus filter string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def in_filter(field_name: str, values: Iterable[str]) -> str:
    return f"{field_name} in [{', '.join(quote(v) for v in values)}]"
