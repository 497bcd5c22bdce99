"""A file copy of a loaded vector field, so an API restart is ready in seconds instead of minutes.

Scanning a field out of Milvus Lite costs minutes at 100k tracks (measured: ~6 min for 100k dsp rows on
a busy 2-core machine), and a plugin request that arrives meanwhile waits for it. ``VectorCache`` writes
each field it scanned to ``<directory>/<model>.<field>.npz`` together with the store's signature at
the time (the collection behind the alias, its row count and its store generation); the *first* load
of a field in a new process reads the file instead of the store when the signature still matches.
Later reloads always scan the store.
The file also holds the field's approximate index (``ann.py``) when it has one, so a restart does not
train it again. The file is a cache: deleting it only costs one scan.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.recommend.ann import AnnIndex

LOGGER = logging.getLogger("navembed.recommend")
Signature = tuple[str | None, int, str | None]  # collection, rows, generation


def snapshot_path(directory: Path, model: str, field: str) -> Path:
    return Path(directory) / f"{model}.{field}.npz"


@dataclass(frozen=True)
class Snapshot:
    """A field as scanned: ids, segments and vectors in store order, and its index if it had one."""

    ids: list[str]
    segments: list[int]
    vectors: np.ndarray
    ann: AnnIndex | None = None


def write_snapshot(directory: Path, model: str, field: str, signature: Signature, snapshot: Snapshot) -> None:
    """Write the field atomically (a crash leaves the previous file or none, never half of one)."""
    path = snapshot_path(directory, model, field)
    ann = {} if snapshot.ann is None else {
        "ann": snapshot.ann.to_bytes(),
        "ann_meta": np.asarray(json.dumps([snapshot.ann.rows, snapshot.ann.dimension, snapshot.ann.fingerprint]))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            np.savez(out, signature=np.asarray(json.dumps(list(signature))),
                     ids=np.asarray(snapshot.ids, dtype=str), segments=np.asarray(snapshot.segments, dtype=np.int64),
                     vectors=np.asarray(snapshot.vectors, dtype=np.float32), **ann)
        partial.replace(path)
    except OSError:
        LOGGER.warning("could not write the vector snapshot %s", path, exc_info=True)


def read_snapshot(directory: Path, model: str, field: str, signature: Signature) -> Snapshot | None:
    """The field as written, if the file exists, is readable and was taken at ``signature``."""
    path = snapshot_path(directory, model, field)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if tuple(json.loads(str(data["signature"]))) != tuple(signature):
                return None
            ann = None
            if "ann" in data.files:
                rows, dimension, digest = json.loads(str(data["ann_meta"]))
                ann = AnnIndex.from_bytes(data["ann"], rows=rows, dimension=dimension, digest=digest)
            return Snapshot(data["ids"].tolist(), data["segments"].tolist(), data["vectors"], ann)
    except (OSError, ValueError, KeyError, RuntimeError):  # faiss reports a damaged index as RuntimeError
        LOGGER.warning("ignoring the unreadable vector snapshot %s", path, exc_info=True)
        return None
