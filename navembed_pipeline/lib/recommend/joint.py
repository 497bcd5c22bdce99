"""Fused candidates: one search over several models' rows side by side.

Why: a fused score (``fusion.py``, "weighted") is, for a track every model has, a weighted sum of its
cosines in each model, ``sum_m c_m * cos_m`` plus a constant, with ``c_m = w_m / sd_m`` (the model's
weight over the deviation of that input's cosines on the library). Taking each model's nearest tracks
and fusing them misses tracks that are good in every model without being near the top of any: at a
million tracks the plugin's answers from 200-track shortlists shared 0.72 of their 50 with the answers
from scoring every track (``python -m benchmarks.recommend_scale``). A sum of cosines is one inner
product over the rows put side by side, ``[x_1 | x_2] . [c_1 q_1 | c_2 q_2]``, so one index over the
joined rows finds the fused nearest tracks directly, whatever the request's coefficients.

``JointVectors``: the joined rows of the tracks that have one row in every model, divided by the square
root of the model count (unit rows), as a ``FieldVectors`` named ``"dsp+musicnn"``/``"joint"``. From
``IVF_MIN_ROWS`` tracks on, the joined rows are kept in their ``JOINT_DIMENSIONS`` leading directions
(``ann.graph_projection``; the 210 real recordings' and generated rows keep over 99 % of their energy,
``python -m benchmarks.ann_scale``) with a graph over them; below, side by side and searched exactly.
Candidates are only proposals: every candidate is then scored exactly on each model's own rows.

``JointKeeper``: the joined copy of the fields a cache serves now. Small ones are joined on the request's
thread (milliseconds); large ones on a thread, carrying the graph over from the copy before
(``vectors.FieldVectors``' ``previous``) and written beside the fields' snapshots, so a restart maps it
(on that thread too: from a cold page cache, mapping a million joined rows' files took 16 s here).
Until the joined copy of the current fields is there, searches take each model's shortlist as before.
One copy is joined at a time, and at most ``MAX_JOINED_SETS`` model sets are kept (a request may name any
subset of the models; each joined set at a million tracks is about 1.5 GB and minutes of CPU to build).
"""

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.recommend.ann import GRAPH_DIMENSIONS, AnnIndex, build_ann, graph_projection
from navembed_pipeline.lib.recommend.vectors import IVF_MIN_ROWS, SAME_ROW, FieldVectors

LOGGER = logging.getLogger("navembed.recommend")
JOINT_FIELD = "joint"
JOINT_DIMENSIONS = GRAPH_DIMENSIONS  # directions the joined rows are kept in, from ``IVF_MIN_ROWS`` tracks on
JOIN_BLOCK = 65_536  # rows joined and projected at a time (no second copy of every model's rows)
# The joined graph is searched with each request's own model weights, not the 1:1 it was built with, so it is
# built denser than a field's (faiss's default efConstruction is 40) and asked for more tracks than wanted.
# At 300k joined rows (20 queries, the true fused top 100), asked for 420: links 32 / efConstruction 40 found
# 0.978 (worst 0.94), 48 / 100 found 0.995 (worst 0.98) for twice the build CPU. At 1M (48 / 100), of the true
# top 100 among the 420 kept: asked for 420, 0.972 (worst 0.93); 630, 0.987 (0.97); 840, 0.992 (0.97), the
# plugin's similar_tracks costing about 17, 17-18 and 19 ms of CPU at p50.
JOINT_LINKS = 48
JOINT_CONSTRUCTION = 100
JOINT_OVERFETCH = 1.5
MAX_JOINED_SETS = 2  # model sets kept joined at once (the least recently asked for is dropped): each is a graph
Signature = tuple[str | None, int, str | None]


def joint_name(models: Sequence[str]) -> str:
    """The joined copy's model name, e.g. "dsp+musicnn"."""
    return "+".join(models)


@dataclass(frozen=True)
class JointVectors:
    """``models``' rows side by side for the tracks every one of them has (one row each), built from the
    field copies ``sources``; ``projection`` (joined dim, d) maps joined rows and queries to the kept
    directions (None: kept whole)."""

    models: tuple[str, ...]
    sources: tuple[FieldVectors, ...]
    projection: np.ndarray | None
    vectors: FieldVectors

    @property
    def complete(self) -> bool:
        """Every track of every source is here (none has several rows or misses a model)."""
        return all(len(f) == len(self.vectors) and len(f.rows) == len(f) for f in self.sources)

    def serves(self, fields: Sequence[FieldVectors]) -> bool:
        """True when built from exactly these field copies (a reload makes new ones)."""
        return len(fields) == len(self.sources) and all(a is b for a, b in zip(fields, self.sources, strict=True))

    def query(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """One query from each model's (already weighted) query vector, in ``models`` order."""
        joined = np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])
        return joined @ self.projection if self.projection is not None else joined

    def candidates(self, query: np.ndarray, k: int) -> list[str]:
        """Track ids of (about) the ``k`` tracks with the largest inner product with ``query``."""
        ids = self.vectors.track_ids
        return [ids[i] for i in self.vectors.candidates(query, k, overfetch=JOINT_OVERFETCH)]


def build_joint(fields: Sequence[FieldVectors], *, previous: JointVectors | None = None,
                ivf_min_rows: int = IVF_MIN_ROWS) -> JointVectors | None:
    """The joined copy of ``fields`` (None: fewer than two fields, or no track in all of them). ``previous``:
    the copy joined from the fields served before a reload; its projection is kept and its graph carried over
    when few rows changed, as a field's own index is (``AnnIndex.carried``)."""
    if len(fields) < 2:
        return None
    first = fields[0]
    single = [np.diff(f._ptr) == 1 for f in fields]  # noqa: SLF001 - the rows of each track
    local = [np.arange(len(first))] + [f.local_indices(first.track_ids) for f in fields[1:]]
    keep = single[0].copy()
    for f, where, ones in zip(fields[1:], local[1:], single[1:], strict=True):
        keep &= where >= 0
        keep[keep] &= ones[where[keep]]
    chosen = np.flatnonzero(keep)
    if chosen.size < 2:
        return None
    row_of = [f._ptr[where[chosen]] for f, where in zip(fields, local, strict=True)]  # noqa: SLF001
    scale = np.float32(1.0 / np.sqrt(len(fields)))
    models = tuple(f.model for f in fields)
    same_models = previous is not None and previous.models == models and \
        [p.dimension for p in previous.sources] == [f.dimension for f in fields]
    projection = None
    if chosen.size >= ivf_min_rows:
        reuse = same_models and previous.projection is not None
        projection = previous.projection if reuse else _fit_projection(fields, row_of, scale)
    width = projection.shape[1] if projection is not None else sum(f.dimension for f in fields)
    rows = np.empty((chosen.size, width), dtype=np.float32)
    ids = [first.track_ids[i] for i in chosen]  # in the first field's (track id) order: no sort, no copy
    kept = np.zeros(chosen.size, dtype=bool)
    if projection is not None and same_models and projection is previous.projection:
        kept, earlier = _unchanged(previous, fields, ids, row_of)  # a reload: most tracks are as they were
        rows[kept] = previous.vectors.rows[earlier[kept]]
    todo = np.flatnonzero(~kept)
    for low in range(0, todo.size, JOIN_BLOCK):
        part = todo[low:low + JOIN_BLOCK]
        joined = np.concatenate([np.asarray(f.rows[r[part]], dtype=np.float32)
                                 for f, r in zip(fields, row_of, strict=True)], axis=1) * scale
        rows[part] = joined @ projection if projection is not None else joined
    vectors = FieldVectors(joint_name(models), JOINT_FIELD, ids, np.zeros(len(ids), np.int64),
                           rows, copy=False, ivf_min_rows=ivf_min_rows, build=_build_graph,
                           previous=previous.vectors if same_models and projection is not None else None)
    return JointVectors(models, tuple(fields), projection, vectors)


def _unchanged(previous: JointVectors, fields: Sequence[FieldVectors], ids: Sequence[str],
               row_of: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Which of the tracks ``ids`` were joined before with the very rows they have now (their joined row is
    copied, not projected again: at a million tracks the projection is most of a re-join's CPU), and each
    one's row in ``previous``."""
    earlier = previous.vectors.local_indices(ids)
    kept = earlier >= 0
    for field, before, rows in zip(fields, previous.sources, row_of, strict=True):
        if field is before:  # the same copy of this model (it was not reloaded)
            continue
        where = before.local_indices(ids)
        kept &= where >= 0
        candidates = np.flatnonzero(kept)
        for low in range(0, candidates.size, JOIN_BLOCK):
            part = candidates[low:low + JOIN_BLOCK]
            old = np.asarray(before.rows[before._ptr[where[part]]], dtype=np.float32)  # noqa: SLF001
            new = np.asarray(field.rows[rows[part]], dtype=np.float32)
            kept[part[np.abs(old - new).max(axis=1) > SAME_ROW]] = False
    return kept, np.where(kept, previous.vectors._ptr[np.maximum(earlier, 0)], -1)  # noqa: SLF001


def _build_graph(rows: np.ndarray) -> AnnIndex:
    return build_ann(rows, links=JOINT_LINKS, construction=JOINT_CONSTRUCTION)


def _fit_projection(fields: Sequence[FieldVectors], row_of: Sequence[np.ndarray], scale: np.float32) -> np.ndarray:
    """``ann.graph_projection`` of the joined rows, fitted to an evenly spread sample of them."""
    from navembed_pipeline.lib.recommend.ann import PROJECTION_SAMPLE, SEED

    count = len(row_of[0])
    picked = np.sort(np.random.default_rng(SEED).choice(count, min(count, PROJECTION_SAMPLE), replace=False))
    sample = np.concatenate([np.asarray(f.rows[r[picked]], dtype=np.float32)
                             for f, r in zip(fields, row_of, strict=True)], axis=1) * scale
    return graph_projection(sample, min(JOINT_DIMENSIONS, sample.shape[1]))


def joint_signature(signatures: Sequence[Signature]) -> Signature:
    """The joined copy's snapshot signature: its fields' (collection, rows, generation) together."""
    return ("|".join(str(s[0]) for s in signatures), int(sum(s[1] for s in signatures)),
            "|".join(str(s[2]) for s in signatures))


class JointKeeper:
    """The joined copy of the fields served now, per model set (see the module docstring).

    ``background``: a joined copy of at least ``ivf_min_rows`` tracks is built on a thread (at a million
    tracks, minutes of CPU the first time; seconds when carried over), and ``get`` answers None meanwhile.
    ``snapshot_dir``: where built copies are written and the first one of a process is read from."""

    def __init__(self, *, background: bool = True, snapshot_dir: Path | None = None, ivf_min_rows: int = IVF_MIN_ROWS) -> None:
        self.background = background
        self.snapshot_dir = snapshot_dir
        self.ivf_min_rows = ivf_min_rows
        self._current: dict[tuple[str, ...], JointVectors] = {}
        self._building: dict[tuple[str, ...], tuple[FieldVectors, ...]] = {}
        self._tried_snapshot: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()
        self._one_build = threading.Lock()
        self.failures: dict[tuple[str, ...], str] = {}

    def get(self, fields: Sequence[FieldVectors], signatures: Sequence[Signature] | None = None) -> JointVectors | None:
        """The joined copy of exactly these field copies, or None while it is being made (or cannot be).
        ``signatures``: the fields' store signatures (for the snapshot; None: no snapshot)."""
        fields = tuple(fields)
        key = tuple(f.model for f in fields)
        with self._lock:
            current = self._current.get(key)
            if current is not None:  # most recently asked for last (``MAX_JOINED_SETS``)
                self._current[key] = self._current.pop(key)
        if current is not None and current.serves(fields):
            return current
        small = min(len(f) for f in fields) < self.ivf_min_rows
        if small or not self.background:
            return self._made(key, fields, current, signatures)
        with self._lock:
            if self._building.get(key) == fields:
                return None
            self._building[key] = fields
        # a cold page cache makes even mapping a million joined rows' files take seconds: never on a request
        threading.Thread(target=self._made, args=(key, fields, current, signatures), daemon=True,
                         name=f"navembed-joint-{joint_name(key)}").start()
        return None

    def _made(self, key: tuple[str, ...], fields: tuple[FieldVectors, ...], previous: JointVectors | None,
              signatures: Sequence[Signature] | None) -> JointVectors | None:
        """The joined copy mapped from the snapshot (the first time in this process, when one was written for
        these fields' signatures), else joined now."""
        if signatures is not None and self.snapshot_dir is not None and key not in self._tried_snapshot:
            self._tried_snapshot.add(key)
            restored = self._from_snapshot(fields, signatures)
            if restored is not None:
                with self._lock:
                    self._building.pop(key, None)
                self._keep(key, restored)
                return restored
        return self._built(key, fields, previous, signatures)

    def status(self) -> list[dict]:
        """Per model set: what is served and whether a new copy is being made."""
        with self._lock:
            return [{"models": list(key), "tracks": len(j.vectors), "complete": j.complete,
                     "index": None if j.vectors.ann is None else j.vectors.ann.summary,
                     "building": key in self._building, "error": self.failures.get(key)}
                    for key, j in self._current.items()]

    def _keep(self, key: tuple[str, ...], joint: JointVectors) -> None:
        with self._lock:
            self._current.pop(key, None)
            self._current[key] = joint
            while len(self._current) > MAX_JOINED_SETS:
                dropped = next(iter(self._current))
                del self._current[dropped]
                LOGGER.info("dropped the joined copy of %s (at most %d model sets are kept joined)",
                            joint_name(dropped), MAX_JOINED_SETS)

    def _built(self, key: tuple[str, ...], fields: tuple[FieldVectors, ...], previous: JointVectors | None,
               signatures: Sequence[Signature] | None) -> JointVectors | None:
        try:
            with self._one_build:  # one at a time: each is minutes of CPU at a million tracks
                joint = build_joint(fields, previous=previous, ivf_min_rows=self.ivf_min_rows)
        except Exception as exc:  # noqa: BLE001 - per-model shortlists keep serving; status() shows it
            LOGGER.warning("joining %s failed", joint_name(key), exc_info=True)
            with self._lock:
                self.failures[key] = f"{type(exc).__name__}: {exc}"
                self._building.pop(key, None)
            return None
        with self._lock:
            self._building.pop(key, None)
            self.failures.pop(key, None)
        if joint is not None:
            self._keep(key, joint)
        if joint is not None and signatures is not None and self.snapshot_dir:
            save_joint(self.snapshot_dir, joint, signatures)
        return joint

    def _from_snapshot(self, fields: tuple[FieldVectors, ...], signatures: Sequence[Signature]) -> JointVectors | None:
        from navembed_pipeline.lib.recommend.snapshot import SnapshotDamaged

        try:
            return load_joint(self.snapshot_dir, fields, signatures)
        except SnapshotDamaged:  # set aside and logged; built again from the fields
            return None


def save_joint(directory: Path, joint: JointVectors, signatures: Sequence[Signature]) -> bool:
    """Write a projected joined copy (with its projection) beside its fields' snapshots; the fields'
    ``signatures`` say which copies it was joined from. A small, unprojected one is not worth a file: False."""
    from navembed_pipeline.lib.recommend.snapshot import write_snapshot

    if joint.projection is None:
        return False
    return write_snapshot(directory, joint_signature(signatures), joint.vectors, arrays={"projection": joint.projection})


def load_joint(directory: Path, fields: Sequence[FieldVectors], signatures: Sequence[Signature]) -> JointVectors | None:
    """The joined copy written for fields of these ``signatures`` (the copies ``fields`` were read at), mapped
    from disk; None when there is none of them. Raises ``SnapshotDamaged`` as ``read_snapshot`` does."""
    from navembed_pipeline.lib.recommend.snapshot import read_snapshot, snapshot_arrays

    name = joint_name([f.model for f in fields])
    vectors = read_snapshot(directory, name, JOINT_FIELD, joint_signature(signatures))
    if vectors is None:
        return None
    projection = np.asarray(snapshot_arrays(directory, name, JOINT_FIELD, ("projection",))["projection"])
    if projection.shape != (sum(f.dimension for f in fields), vectors.dimension):
        return None
    return JointVectors(tuple(f.model for f in fields), tuple(fields), projection, vectors)
