"""A file copy of a loaded vector field, mapped from disk so an API restart is ready in seconds.

Scanning a field out of Milvus Lite costs minutes at 100k tracks (measured: ~6 min for 100k dsp rows on
a busy 2-core machine), and sorting, indexing and calibrating a million rows costs minutes more.
``VectorCache`` therefore writes each field it loaded from the store as it serves it, and the *first*
load of a field in a new process maps that copy instead when the store's signature (the collection behind
the alias, its row count and its store generation) still matches. Later reloads always scan the store.

Layout under the snapshot directory, per field:
- ``<model>.<field>.<token>/``: ``rows.npy`` (float32, unit rows in track order), ``norms.npy``,
  ``row_track.npy``, ``track_ids.npy``, ``calibration.json`` and ``ann.faiss`` (the approximate index,
  when the field has one; with ``ann_labels.npy`` and ``ann_extra.npy`` when it was carried over from
  earlier rows, ``ann.AnnIndex.carried``). The rows and the index are memory-mapped on load (``np.load(mmap_mode="r")``,
  ``faiss.IO_FLAG_MMAP``): pages are read as searches touch them, not all at start.
- ``<model>.<field>.json``: the manifest (format, signature, shape, the data folder, and each file's
  size and checksum), written last and atomically (``os.replace``): it is the commit. A crash while
  writing leaves the previous snapshot or none, never half of one; folders no manifest names are removed.

Checksums: files up to ``FULL_DIGEST_BYTES`` are hashed whole; larger ones by their size and
``SAMPLED_BLOCKS`` evenly spaced blocks (hashing 1.3 GB of rows at every start would cost seconds), which
catches a truncated or overwritten file but not every flipped bit. A snapshot that fails any check is
*damaged*: it is set aside (renamed ``...corrupt-<UTC time>``, like the damaged SQLite state files) and
``SnapshotDamaged`` tells the caller, which scans the store and writes a fresh one: never a crash loop.
The files are a cache: deleting them only costs one scan.
"""

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.recommend.ann import PREFAULT_ROWS, AnnIndex
from navembed_pipeline.lib.recommend.calibration import CalibrationError, FieldCalibration
from navembed_pipeline.lib.recommend.vectors import FieldVectors

LOGGER = logging.getLogger("navembed.recommend")
Signature = tuple[str | None, int, str | None]  # collection, rows, generation
FORMAT = 2
FULL_DIGEST_BYTES = 8 << 20
SAMPLED_BLOCKS = 256
BLOCK_BYTES = 64 << 10
SET_ASIDE_MARK = ".corrupt-"  # as lib/store/state_files.py names set-aside files
ARRAYS = ("rows", "norms", "row_track", "track_ids")


class SnapshotDamaged(NavembedError):
    """A snapshot exists but cannot be trusted; it has been set aside (``set_aside``: where to)."""

    def __init__(self, message: str, set_aside: list[str]) -> None:
        super().__init__(message)
        self.set_aside = set_aside


def manifest_path(directory: Path, model: str, field: str) -> Path:
    return Path(directory) / f"{model}.{field}.json"


@dataclass(frozen=True)
class SnapshotInfo:
    """What the manifest says about a written snapshot."""

    signature: Signature
    rows: int
    dimension: int
    folder: str


def write_snapshot(directory: Path, signature: Signature, vectors: FieldVectors, *,
                   arrays: Mapping[str, np.ndarray] | None = None) -> bool:
    """Write the field as served (rows, index, calibration) and commit it with its manifest; False (logged)
    when the disk refused. Older folders of this field are removed once the new manifest is in place.
    ``arrays``: more arrays kept with it (``<name>.npy``, checksummed; ``snapshot_arrays`` reads them)."""
    directory = Path(directory)
    manifest = manifest_path(directory, vectors.model, vectors.field)
    folder = directory / f"{vectors.model}.{vectors.field}.{uuid.uuid4().hex[:12]}"
    try:
        folder.mkdir(parents=True)
        np.save(folder / "rows.npy", np.asarray(vectors.rows, dtype=np.float32))
        np.save(folder / "norms.npy", np.asarray(vectors.norms, dtype=np.float32))
        np.save(folder / "row_track.npy", np.asarray(vectors.row_track, dtype=np.int64))
        np.save(folder / "track_ids.npy", np.asarray(vectors.track_ids, dtype=str))
        for name, array in (arrays or {}).items():
            if name in ARRAYS or not name.isidentifier():
                raise ValueError(f"cannot keep an array named {name!r} with a snapshot")
            np.save(folder / f"{name}.npy", np.asarray(array))
        calibration = None if vectors.calibration is None else vectors.calibration.to_json()
        (folder / "calibration.json").write_text(json.dumps(calibration))
        ann = None
        if vectors.ann is not None:
            vectors.ann.save(folder / "ann.faiss")
            ann = {"fingerprint": vectors.ann.fingerprint, "probes": _probes(vectors.ann),
                   "carried": vectors.ann.labels is not None}
            if vectors.ann.labels is not None:  # an index carried over from earlier rows (ann.AnnIndex.carried)
                np.save(folder / "ann_labels.npy", np.asarray(vectors.ann.labels, dtype=np.int64))
                extra = vectors.ann.extra if vectors.ann.extra is not None else np.zeros(0, dtype=np.int64)
                np.save(folder / "ann_extra.npy", np.asarray(extra, dtype=np.int64))
        files = {p.name: _checksum(p) for p in sorted(folder.iterdir())}
        for path in folder.iterdir():
            _fsync(path)
        body = {"format": FORMAT, "signature": list(signature), "model": vectors.model, "field": vectors.field,
                "rows": len(vectors.rows), "dimension": vectors.dimension, "tracks": len(vectors.track_ids),
                "folder": folder.name, "ann": ann, "files": files,
                "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
        partial = manifest.with_name(manifest.name + ".partial")
        partial.write_text(json.dumps(body, indent=1))
        _fsync(partial)
        partial.replace(manifest)
    except OSError:
        LOGGER.warning("could not write the vector snapshot %s", folder, exc_info=True)
        shutil.rmtree(folder, ignore_errors=True)
        return False
    _remove_unreferenced(directory, vectors.model, vectors.field, keep=folder.name)
    (directory / f"{vectors.model}.{vectors.field}.npz").unlink(missing_ok=True)  # the format-1 snapshot
    return True


def read_snapshot(directory: Path, model: str, field: str, signature: Signature) -> FieldVectors | None:
    """The field as written, mapped from disk, if a snapshot taken at ``signature`` exists; None if there
    is none or it is of another signature (the store moved on). Raises ``SnapshotDamaged`` (after setting
    the snapshot aside) when it exists but fails a check."""
    manifest = manifest_path(directory, model, field)
    if not manifest.exists():
        return None
    try:
        body = json.loads(manifest.read_text())
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError(f"unknown snapshot format {body.get('format') if isinstance(body, dict) else body!r}")
        if tuple(body["signature"]) != tuple(signature):
            return None
        folder = Path(directory) / str(body["folder"])
        expected = dict(body["files"])
        carried = bool(body["ann"] and body["ann"].get("carried"))
        for name in (*[f"{a}.npy" for a in ARRAYS], "calibration.json", *(["ann.faiss"] if body["ann"] else []),
                     *(["ann_labels.npy", "ann_extra.npy"] if carried else [])):
            if name not in expected:
                raise ValueError(f"the manifest lists no {name}")
            if _checksum(folder / name) != expected[name]:
                raise ValueError(f"{name} does not match its checksum (truncated or overwritten)")
        rows = np.load(folder / "rows.npy", mmap_mode="r", allow_pickle=False)
        norms = np.load(folder / "norms.npy", allow_pickle=False)
        row_track = np.load(folder / "row_track.npy", allow_pickle=False)
        track_ids = np.load(folder / "track_ids.npy", allow_pickle=False).tolist()
        if rows.shape != (body["rows"], body["dimension"]) or rows.dtype != np.float32:
            raise ValueError(f"rows.npy holds {rows.shape} {rows.dtype}, the manifest says "
                             f"{body['rows']} x {body['dimension']} float32")
        stored = json.loads((folder / "calibration.json").read_text())
        calibration = None if stored is None else FieldCalibration.from_json(stored)
        ann = None
        if body["ann"]:
            labels = np.load(folder / "ann_labels.npy", allow_pickle=False) if carried else None
            extra = np.load(folder / "ann_extra.npy", allow_pickle=False) if carried else None
            ann = AnnIndex.load(folder / "ann.faiss", rows=len(rows), dimension=rows.shape[1],
                                digest=str(body["ann"]["fingerprint"]), labels=labels,
                                extra=extra if extra is not None and len(extra) else None)
        restored = FieldVectors.restore(model, field, track_ids, row_track, rows, norms, ann=ann,
                                        calibration=calibration)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, CalibrationError) as exc:
        # faiss reports a damaged index as RuntimeError
        moved = set_aside(directory, model, field)
        LOGGER.error("the vector snapshot of %s.%s is damaged (%s): set aside as %s; loading from the store",
                     model, field, exc, ", ".join(moved) or "(nothing left to move)")
        raise SnapshotDamaged(f"the vector snapshot {manifest} is damaged: {exc}", moved) from exc
    threading.Thread(target=prefault, args=(restored,), daemon=True, name=f"navembed-prefault-{model}-{field}").start()
    return restored


def snapshot_arrays(directory: Path, model: str, field: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays written with the field's current snapshot (``write_snapshot``'s ``arrays``), checked against
    their checksums. Raises ``SnapshotDamaged`` (after setting the snapshot aside) when one is missing or fails."""
    manifest = manifest_path(directory, model, field)
    try:
        body = json.loads(manifest.read_text())
        folder = Path(directory) / str(body["folder"])
        found = {}
        for name in names:
            file = f"{name}.npy"
            if file not in body["files"] or _checksum(folder / file) != body["files"][file]:
                raise ValueError(f"{file} is missing or does not match its checksum")
            found[name] = np.load(folder / file, allow_pickle=False)
        return found
    except (OSError, ValueError, KeyError, TypeError) as exc:
        moved = set_aside(directory, model, field)
        LOGGER.error("the vector snapshot of %s.%s is damaged (%s): set aside as %s", model, field, exc,
                     ", ".join(moved) or "(nothing left to move)")
        raise SnapshotDamaged(f"the vector snapshot {manifest} is damaged: {exc}", moved) from exc


def prefault(vectors: FieldVectors) -> None:
    """Map in a restored field's pages once, in order, on a background thread: its rows (read by every
    re-scoring) and its HNSW graph (``AnnIndex.prefault``). Searches are served meanwhile; until a page is
    touched, the first search to need it pays the fault (at 1M rows ~30 ms a query instead of ~3 ms)."""
    try:
        for low in range(0, len(vectors.rows), PREFAULT_ROWS):
            np.asarray(vectors.rows[low:low + PREFAULT_ROWS]).max(initial=0.0)
        if vectors.ann is not None:
            vectors.ann.prefault()
    except Exception:  # noqa: BLE001 - an optimisation only: searches fault the pages in themselves
        LOGGER.warning("could not prefault the snapshot of %s.%s", vectors.model, vectors.field, exc_info=True)


def snapshot_info(directory: Path, model: str, field: str) -> SnapshotInfo | None:
    """The manifest's account of the field's snapshot, or None if there is none readable."""
    try:
        body = json.loads(manifest_path(directory, model, field).read_text())
        return SnapshotInfo(tuple(body["signature"]), int(body["rows"]), int(body["dimension"]), str(body["folder"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_aside(directory: Path, model: str, field: str) -> list[str]:
    """Rename the field's manifest and its data folders to ``<name>.corrupt-<UTC time>``; their new names."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    manifest = manifest_path(directory, model, field)
    for path in [manifest, *_folders(Path(directory), model, field)]:
        target = path.with_name(f"{path.name}{SET_ASIDE_MARK}{stamp}")
        try:
            path.rename(target)
            moved.append(target.name)
        except FileNotFoundError:
            continue
        except OSError:
            LOGGER.warning("could not set %s aside", path, exc_info=True)
    return moved


def _folders(directory: Path, model: str, field: str) -> list[Path]:
    prefix = f"{model}.{field}."
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(prefix)
            and SET_ASIDE_MARK not in p.name and "." not in p.name[len(prefix):]]


def _remove_unreferenced(directory: Path, model: str, field: str, *, keep: str) -> None:
    for folder in _folders(directory, model, field):
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)  # a mapped file stays readable until unmapped


def _probes(ann: AnnIndex) -> int | None:
    return int(ann.index.nprobe) if hasattr(ann.index, "nprobe") else None


def _checksum(path: Path) -> str:
    """``<size>:<sha256>`` of the whole file up to ``FULL_DIGEST_BYTES``, else of sampled blocks."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as data:
        if size <= FULL_DIGEST_BYTES:
            digest.update(data.read())
        else:
            step = (size - BLOCK_BYTES) // (SAMPLED_BLOCKS - 1)
            for block in range(SAMPLED_BLOCKS):
                data.seek(block * step)
                digest.update(data.read(BLOCK_BYTES))
    return f"{size}:{digest.hexdigest()}"


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
