"""A file copy of a loaded vector field, so an API restart is ready in seconds instead of minutes.

Scanning a field out of Milvus Lite costs minutes at 100k tracks (measured: ~6 min for 100k dsp rows on
a busy 2-core machine), and a plugin request that arrives meanwhile waits for it. ``VectorCache`` writes
each field it scanned to ``<directory>/<model>.<field>.npz`` together with the store's signature at
the time (the collection behind the alias, its row count and its store generation); the *first* load
of a field in a new process reads the file instead of the store when the signature still matches.
Later reloads always scan the store.
The file is a cache: deleting it only costs one scan.
"""

import json
import logging
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("navembed.recommend")
Signature = tuple[str | None, int, str | None]  # collection, rows, generation


def snapshot_path(directory: Path, model: str, field: str) -> Path:
    return Path(directory) / f"{model}.{field}.npz"


def write_snapshot(directory: Path, model: str, field: str, signature: Signature, ids: list[str],
                   segments: list[int], vectors: np.ndarray) -> None:
    """Write the field atomically (a crash leaves the previous file or none, never half of one)."""
    path = snapshot_path(directory, model, field)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            np.savez(out, signature=np.asarray(json.dumps(list(signature))), ids=np.asarray(ids, dtype=str),
                     segments=np.asarray(segments, dtype=np.int64), vectors=np.asarray(vectors, dtype=np.float32))
        partial.replace(path)
    except OSError:
        LOGGER.warning("could not write the vector snapshot %s", path, exc_info=True)


def read_snapshot(directory: Path, model: str, field: str,
                  signature: Signature) -> tuple[list[str], list[int], np.ndarray] | None:
    """The field as written, if the file exists, is readable and was taken at ``signature``."""
    path = snapshot_path(directory, model, field)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if tuple(json.loads(str(data["signature"]))) != tuple(signature):
                return None
            return data["ids"].tolist(), data["segments"].tolist(), data["vectors"]
    except (OSError, ValueError, KeyError):
        LOGGER.warning("ignoring the unreadable vector snapshot %s", path, exc_info=True)
        return None
