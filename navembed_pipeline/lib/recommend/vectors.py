"""An in-memory copy of one vector field of one model: exact cosines, fast candidate search.

Rows are the stored segments (one per track, several for a CUE image); a track's similarity to a
query is its best segment's. Small collections are searched exactly (one matrix product); from
``ivf_min_rows`` rows on, an approximate index narrows the search (``ann.py``: faiss's inverted file
with 8-bit scalar-quantised lists). The candidates are then scored exactly on the float rows, so an
approximation can only miss a track, never misrank one.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.recommend.ann import AnnIndex, build_ann
from navembed_pipeline.lib.recommend.calibration import CalibrationError, FieldCalibration

IVF_MIN_ROWS = 20_000  # from this many rows on, an approximate index (``ann.py``) proposes the candidates
ANN_OVERFETCH = 2  # rows the index is asked for per row wanted when models are fused (``candidates``)
PROJECTED_OVERFETCH = 2  # at least, from a graph over projected rows (``ann.graph_projection``)
STATS_SAMPLE = 2048  # rows whose similarities normalise a query's (z-scores)
CALIBRATION_SAMPLE = 20_000  # rows the library statistics and the random-pair cosines are drawn from
SEED = 0
_EPS = 1e-12


class FieldVectors:
    """Read-only after construction, so many threads may search one instance."""

    def __init__(self, model: str, field: str, track_ids: Sequence[str], segments: Sequence[int],
                 vectors: np.ndarray, *, ivf_min_rows: int = IVF_MIN_ROWS, ann: AnnIndex | None = None,
                 copy: bool = True, previous: "FieldVectors | None" = None,
                 build: Callable[[np.ndarray], AnnIndex] = build_ann) -> None:
        """One row per (track, segment); ``vectors`` (rows, dim) need not be normalised. ``ann``: an
        index built earlier over these same rows in track order (``self.ann``, kept with the snapshot).
        ``copy=False``: a float32 ``vectors`` is normalised in place and kept (the caller gives it up; a
        million 753-d rows are 3 GB, so a store scan is not held twice). ``previous``: the copy of this
        field served until now (a reload): its index is carried over when few rows changed
        (``AnnIndex.carried``) instead of building one (at 1M rows, minutes of CPU). ``build``: how an index
        is built when one is needed (``ann.build_ann`` with other options, e.g. ``joint.py``'s)."""
        vectors = np.array(vectors, dtype=np.float32, copy=copy or None)  # normalised in place
        if vectors.ndim != 2 or len(vectors) != len(track_ids):
            raise ValueError(f"{model}.{field}: {len(track_ids)} ids but vectors of shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms = np.where(norms > _EPS, norms, 1.0)
        vectors /= norms
        order = (np.lexsort((np.asarray(segments, dtype=np.int64), np.asarray(track_ids, dtype=str)))
                 if len(track_ids) else np.zeros(0, dtype=np.int64))
        ids = [track_ids[i] for i in order]
        unique = tuple(dict.fromkeys(ids))
        position = {track: i for i, track in enumerate(unique)}
        row_track = np.fromiter((position[t] for t in ids), dtype=np.int64, count=len(ids))
        in_order = bool(np.array_equal(order, np.arange(len(order))))
        rows = vectors if in_order else vectors[order]  # no second copy when the store's order is the tracks'
        if len(ids) < max(ivf_min_rows, 1):
            ann = None
        elif ann is None or not ann.matches(rows):
            ann = _carried(previous, unique, position, row_track, rows) or build(rows)
        self._setup(model, field, unique, row_track, rows, norms[:, 0] if in_order else norms[order, 0], ann,
                    _calibrate(model, field, rows, row_track), position)

    @classmethod
    def restore(cls, model: str, field: str, track_ids: Sequence[str], row_track: np.ndarray, rows: np.ndarray,
                norms: np.ndarray, *, ann: AnnIndex | None, calibration: FieldCalibration | None) -> "FieldVectors":
        """A field exactly as an earlier instance held it (``snapshot.py``): rows already normalised and in
        track order (``row_track`` ascending), the index and the calibration already made. Nothing is
        sorted, trained or fitted, and ``rows`` may be a read-only memory map."""
        if rows.ndim != 2 or len(rows) != len(row_track) or len(norms) != len(rows):
            raise ValueError(f"{model}.{field}: {len(row_track)} row tracks, {len(norms)} norms, rows {rows.shape}")
        if len(row_track) and (np.any(np.diff(row_track) < 0) or row_track[-1] >= len(track_ids)):
            raise ValueError(f"{model}.{field}: the rows are not in track order")
        if ann is not None and not ann.matches(rows):
            raise ValueError(f"{model}.{field}: the index was not built over these rows")
        self = cls.__new__(cls)
        self._setup(model, field, tuple(track_ids), np.asarray(row_track, dtype=np.int64), rows,
                    np.asarray(norms, dtype=np.float32), ann, calibration)
        return self

    def _setup(self, model: str, field: str, track_ids: tuple[str, ...], row_track: np.ndarray, rows: np.ndarray,
               norms: np.ndarray, ann: AnnIndex | None, calibration: FieldCalibration | None,
               position: dict[str, int] | None = None) -> None:
        self.model, self.field = model, field
        self.track_ids: tuple[str, ...] = track_ids
        self.track_index = position if position is not None else dict(zip(track_ids, range(len(track_ids))))
        self.rows = rows
        self.row_track = row_track
        self.ann: AnnIndex | None = ann
        self.norms = norms  # rows * norms = the stored values (tag scores)
        # Where each track's rows are: rows[ptr[t]:ptr[t+1]] (segment order).
        self._ptr = np.searchsorted(row_track, np.arange(len(track_ids) + 1))
        self._single = bool(len(row_track) == len(track_ids))
        sample = np.random.default_rng(SEED).permutation(len(row_track))[:STATS_SAMPLE]
        self._sample = np.asarray(rows[np.sort(sample)], dtype=np.float32)
        self.calibration = calibration

    @property
    def dimension(self) -> int:
        return int(self.rows.shape[1])

    def __len__(self) -> int:
        """Number of tracks."""
        return len(self.track_ids)

    def vectors_of(self, track_id: str) -> np.ndarray | None:
        """The track's segment vectors (segments, dim), normalised; None if it has none."""
        index = self.track_index.get(track_id)
        if index is None:
            return None
        return self.rows[self._ptr[index]:self._ptr[index + 1]]

    def local_indices(self, track_ids: Sequence[str]) -> np.ndarray:
        """Each id's track index here, -1 where this field has no vectors for it."""
        get = self.track_index.get
        return np.fromiter((get(t, -1) for t in track_ids), dtype=np.int64, count=len(track_ids))

    def block(self, tracks: np.ndarray) -> "Block":
        """The rows of these tracks (local indices, -1 = absent), gathered once for many comparisons."""
        present = np.flatnonzero(tracks >= 0)
        chosen = tracks[present]
        counts = self._ptr[chosen + 1] - self._ptr[chosen]
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        flat = np.repeat(self._ptr[chosen] - offsets, counts) + np.arange(int(counts.sum()))
        return Block(self.rows[flat], offsets, present, len(tracks), self._single)

    def similarity(self, tracks: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Best cosine of each track (local index, -1 = absent → NaN) to any of ``queries`` (Q, D)."""
        return self.block(tracks).similarities(as_queries(queries, self.dimension)).max(axis=1)

    def calibrated(self, cosines: np.ndarray) -> np.ndarray:
        """Cosines of this field mapped to 0..1 by the library's own random-pair distribution
        (``lib/recommend/calibration.py``); with fewer than two tracks there is no distribution: ``clip(cos, 0, 1)``."""
        cosines = np.asarray(cosines, dtype=np.float64)
        if self.calibration is None:
            return np.clip(cosines, 0.0, 1.0)
        return self.calibration.scores.similarity(cosines)

    def candidates(self, queries: np.ndarray, k: int, *, overfetch: float = 1) -> np.ndarray:
        """Local indices of (about) the ``k`` tracks nearest to each query, united over queries. ``overfetch``:
        an approximate index is asked for that many times the rows and its proposals re-scored exactly, so
        the far end of the ``k`` is as an exact search's (``ANN_OVERFETCH``, for fused models: a track deep
        in one model's list can top the fused ranking)."""
        queries = as_queries(queries, self.dimension)
        # a CUE image's segments may crowd the nearest rows; one row per track: k rows are k tracks
        want = min(len(self.rows), k if self._single else 2 * k)
        if want == 0 or len(queries) == 0:
            return np.zeros(0, dtype=np.int64)
        if want == len(self.rows):
            return np.unique(self.row_track)
        if self.ann is None or want * 8 >= len(self.rows):
            nearest = np.argpartition(-(self.rows @ queries.T), want - 1, axis=0)[:want]
            return np.unique(self.row_track[nearest.ravel()])
        # a projected graph (``ann.graph_projection``) ranks by nearly the cosine: its far end is re-scored too
        asked = int(min(len(self.rows), np.ceil(max(overfetch, PROJECTED_OVERFETCH if self.ann.projected else 1, 1) * want)))
        found = self.ann.search(queries, asked)
        extra = self.ann.extra
        if extra is not None:  # rows added or changed since the index was built: searched exactly
            cosines = np.asarray(self.rows[extra] @ queries.T)
            nearest = np.argpartition(-cosines, min(asked, len(extra)) - 1, axis=0)[:asked]
            found = np.concatenate([found, extra[nearest].T], axis=1)
        kept = []
        for query, proposed in zip(queries, found, strict=True):
            proposed = np.sort(proposed[proposed >= 0])  # rows in file order: a memory map reads forwards
            if len(proposed) > want:
                cosines = np.asarray(self.rows[proposed] @ query)
                proposed = proposed[np.argpartition(-cosines, want - 1)[:want]]
            kept.append(proposed)
        return np.unique(self.row_track[np.concatenate(kept)])

    def baseline(self, queries: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of ``similarity`` over a fixed sample of the library."""
        return spread(self.sample_similarities(queries).max(axis=1))

    def sample_similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosines (sample rows, queries) of a fixed sample of the library's rows."""
        return (self._sample @ as_queries(queries, self.dimension).T).astype(np.float64)



@dataclass(frozen=True)
class Block:
    """Some tracks' rows in one array; ``similarities`` compares them all with queries at once."""

    rows: np.ndarray  # (rows, dim): the present tracks' segments, track after track
    offsets: np.ndarray  # where each present track's rows start
    present: np.ndarray  # which of the asked-for tracks have rows
    size: int  # how many tracks were asked for
    single: bool  # one row per track

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """(tracks, queries) best-segment cosines to normalised ``queries``; NaN rows for absent tracks."""
        out = np.full((self.size, len(queries)), np.nan)
        if len(self.present):
            best = self.rows @ queries.T
            out[self.present] = best if self.single else np.maximum.reduceat(best, self.offsets, axis=0)
        return out


CARRY_BLOCK = 65_536  # rows compared at a time when carrying an index over
SAME_ROW = 1e-6  # a unit row that moved less than this (float rounding of one normalisation) is the same row


def _carried(previous: "FieldVectors | None", track_ids: tuple[str, ...], position: dict[str, int],
             row_track: np.ndarray, rows: np.ndarray) -> AnnIndex | None:
    """``previous``'s index serving ``rows`` (a reload's new copy), or None when it has none or too much
    changed. A previous row is kept where the same track has a row at the same segment place with the
    same vector (a re-embedded track's new vector is a row outside the index, searched exactly)."""
    if previous is None or previous.ann is None or previous.dimension != rows.shape[1] or not len(rows):
        return None
    ptr = np.searchsorted(row_track, np.arange(len(track_ids) + 1))
    old_track = previous.row_track
    ordinal = np.arange(len(old_track)) - previous._ptr[old_track]  # noqa: SLF001 - same class
    get = position.get
    new_track = np.fromiter((get(t, -1) for t in previous.track_ids), dtype=np.int64, count=len(previous.track_ids))
    target = new_track[old_track]
    present = target >= 0
    count = np.where(present, ptr[np.maximum(target, 0) + 1] - ptr[np.maximum(target, 0)], 0)
    moved = np.where(present & (ordinal < count), ptr[np.maximum(target, 0)] + ordinal, -1)
    for low in range(0, len(moved), CARRY_BLOCK):
        chunk = moved[low:low + CARRY_BLOCK]
        keep = np.flatnonzero(chunk >= 0)
        same = np.abs(np.asarray(previous.rows[low + keep]) - rows[chunk[keep]]).max(axis=1, initial=0.0) <= SAME_ROW
        chunk[keep[~same]] = -1
    return previous.ann.carried(moved, rows)


def _calibrate(model: str, field: str, rows: np.ndarray, row_track: np.ndarray) -> FieldCalibration | None:
    """The field's calibration from (a fixed sample of) its rows; None with fewer than two tracks."""
    if len(np.unique(row_track)) < 2:
        return None
    chosen = np.sort(np.random.default_rng(SEED).permutation(len(rows))[:CALIBRATION_SAMPLE])
    try:
        return FieldCalibration.fit(model, field, rows[chosen], groups=row_track[chosen], seed=SEED,
                                    signature=f"{len(rows)} rows")
    except CalibrationError:  # e.g. every sampled pair within one CUE image: no distribution to use
        return None


def spread(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation; no spread (all tracks alike, or none) counts as 1."""
    if values.size == 0:
        return 0.0, 1.0
    std = float(values.std())
    return float(values.mean()), (std if std > 1e-6 else 1.0)



def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > _EPS, norms, 1.0)


def as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.asarray(queries, dtype=np.float32)
    queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
    if queries.shape[1] != dim:
        raise ValueError(f"query vectors have {queries.shape[1]} dimensions, the field has {dim}")
    return _normalised(queries)

