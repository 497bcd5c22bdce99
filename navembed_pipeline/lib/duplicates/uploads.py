"""Uploads in their own store: never rows of the library collections.

An upload's record (id, path, name, file version) and its fingerprints live in the fingerprint
database (table ``uploads``, see ``fingerprint_store.py``; fingerprints under owner ``upload:<hash>``); its vectors live in one
Milvus collection per model, ``upload_<model>_embedding``, which the pipeline and the change sensor
never read. So a sensor run neither deletes an upload nor starts a run because of it; a second
upload of the same song finds the first by fingerprint (or by embedding where it has none); and
when Navidrome later scans the file, the pipeline's fingerprint of the library track matches the
upload and the store records the link (``library_tracks_of``).

``migrate_library_uploads`` moves ``upload:`` rows an older navembed wrote into the library
collections over here (copied first, removed from the library collection only once copied).
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.upload_ids import is_upload_id
from navembed_pipeline.lib.store import VectorRow, VectorStore

LOGGER = logging.getLogger("navembed.uploads")
ROW_FIELDS = ("track_id", "segment", "name", "offset_seconds", "duration_seconds", "model_id", "model_version",
              "fingerprint", "bucket")


def upload_collection(model: str) -> str:
    """The model key of the uploads' own collection (``VectorStore`` names it ``upload_<model>_embedding``)."""
    return f"upload_{model}"


@dataclass(frozen=True)
class UploadRecord:
    """One stored upload."""

    upload_id: str
    path: str
    name: str
    version: str
    duration_seconds: float
    created: float


class UploadStore:
    """Upload records + fingerprints (SQLite) and vectors (their own Milvus collections)."""

    def __init__(self, fingerprints: FingerprintStore) -> None:
        self.fingerprints = fingerprints

    def put(self, record: UploadRecord) -> None:
        """Store (or replace) an upload's record; its fingerprints and vectors are written separately."""
        with self.fingerprints.connection() as db:
            db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                       (record.upload_id, record.path, record.name, record.version, record.duration_seconds,
                        record.created))

    def get(self, upload_id: str) -> UploadRecord | None:
        with self.fingerprints.connection() as db:
            row = db.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        return UploadRecord(*row) if row else None

    def all(self) -> list[UploadRecord]:
        with self.fingerprints.connection() as db:
            return [UploadRecord(*row) for row in db.execute("SELECT * FROM uploads ORDER BY created")]

    def library_tracks_of(self, upload_id: str) -> list[str]:
        """Library tracks the pipeline found to be this upload (by fingerprint), best match first."""
        links = sorted(self.fingerprints.links(upload_id), key=lambda link: -link[1])
        return [owner for owner, _, _ in links if not is_upload_id(owner)]


def migrate_library_uploads(store: VectorStore, uploads: UploadStore, models: Sequence[str]) -> dict[str, int]:
    """Move ``upload:`` rows out of the library collections into the uploads' own (per model: rows moved)."""
    moved: dict[str, int] = {}
    for model in models:
        buckets = {t: b for t, b in store.track_buckets(model).items() if is_upload_id(t)}
        if not buckets:
            continue
        dims = store.stored_vector_fields(model)
        rows = [r for r in store.rows_in_buckets(model, set(buckets.values()), [*ROW_FIELDS, *dims])
                if is_upload_id(r["track_id"])]
        store.ensure_collection(upload_collection(model), dims)
        store.upsert(upload_collection(model), [_row(r, dims) for r in rows])
        for row in rows:
            if uploads.get(row["track_id"]) is None:
                uploads.put(UploadRecord(row["track_id"], "", row["name"], row["fingerprint"],
                                         float(row["duration_seconds"]), time.time()))
        store.delete_tracks(model, sorted(buckets))
        moved[model] = len(rows)
        LOGGER.info("moved %d upload row(s) of %s out of the library collection", len(rows), model)
    return moved


def _row(raw: Mapping, dims: Mapping[str, int]) -> VectorRow:
    return VectorRow(track_id=raw["track_id"], segment=int(raw["segment"]), name=raw["name"],
                     offset_seconds=float(raw["offset_seconds"]), duration_seconds=float(raw["duration_seconds"]),
                     model_id=raw["model_id"], model_version=raw["model_version"], fingerprint=raw["fingerprint"],
                     bucket=raw["bucket"], vectors={f: raw[f] for f in dims})
