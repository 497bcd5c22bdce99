"""An in-memory copy of one vector field of one model: exact cosines, fast candidate search.

Rows are the stored segments (one per track, several for a CUE image); a track's similarity to a
query is its best segment's. Small collections are searched exactly (one matrix product); from
``ivf_min_rows`` rows on, an inverted file narrows the search: spherical k-means clusters, rows
stored cluster by cluster, and a query scans only the clusters whose centroids are nearest. The
candidates are then scored exactly, so an approximation can only miss a track, never misrank one.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.recommend.calibration import CalibrationError, FieldCalibration

IVF_MIN_ROWS = 20_000
SCAN_FRACTION = 0.06  # of the clusters, nearest first; ~0.95 recall on clustered data
MIN_PROBES = 8
STATS_SAMPLE = 2048  # rows whose similarities normalise a query's (z-scores)
CALIBRATION_SAMPLE = 20_000  # rows the library statistics and the random-pair cosines are drawn from
KMEANS_ITERATIONS = 8
KMEANS_SAMPLE_PER_CLUSTER = 32
SEED = 0
_EPS = 1e-12


@dataclass(frozen=True)
class Clusters:
    """Centroids and where each cluster's rows start: rows[starts[c]:starts[c+1]]."""

    centroids: np.ndarray  # (C, D)
    starts: np.ndarray  # (C + 1,)


class FieldVectors:
    """Read-only after construction, so many threads may search one instance."""

    def __init__(self, model: str, field: str, track_ids: Sequence[str], segments: Sequence[int],
                 vectors: np.ndarray, *, ivf_min_rows: int = IVF_MIN_ROWS) -> None:
        """One row per (track, segment); ``vectors`` (rows, dim) need not be normalised."""
        self.model, self.field = model, field
        vectors = np.array(vectors, dtype=np.float32)  # a copy, normalised in place
        if vectors.ndim != 2 or len(vectors) != len(track_ids):
            raise ValueError(f"{model}.{field}: {len(track_ids)} ids but vectors of shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > _EPS, norms, 1.0)
        order = np.asarray(sorted(range(len(track_ids)), key=lambda i: (track_ids[i], int(segments[i]))),
                           dtype=np.int64)
        ids = [track_ids[i] for i in order]
        self.track_ids: tuple[str, ...] = tuple(dict.fromkeys(ids))
        self.track_index = {track: i for i, track in enumerate(self.track_ids)}
        by_track = np.fromiter((self.track_index[t] for t in ids), dtype=np.int64, count=len(ids))
        self.clusters: Clusters | None = None
        layout = np.arange(len(ids))  # row i of ``rows`` is the layout[i]-th in track order
        if len(ids) >= max(ivf_min_rows, 1):
            self.clusters, assigned = _build_clusters(vectors)
            layout = np.argsort(assigned[order], kind="stable")
        self.rows = vectors[order[layout]]
        self.row_track = by_track[layout]
        # Where each track's rows are: positions[ptr[t]:ptr[t+1]] (segment order).
        inverse = np.empty_like(layout)
        inverse[layout] = np.arange(len(layout))
        self._positions = inverse
        self._ptr = np.searchsorted(by_track, np.arange(len(self.track_ids) + 1))
        self._single = bool(len(ids) == len(self.track_ids))
        sample = np.random.default_rng(SEED).permutation(len(ids))[:STATS_SAMPLE]
        self._sample = self.rows[np.sort(sample)]
        self.calibration = _calibrate(model, field, self.rows, self.row_track)

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
        return self.rows[self._positions[self._ptr[index]:self._ptr[index + 1]]]

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
        return Block(self.rows[self._positions[flat]], offsets, present, len(tracks), self._single)

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

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Local indices of (about) the ``k`` tracks nearest to each query, united over queries."""
        queries = as_queries(queries, self.dimension)
        want = min(len(self.rows), 2 * k)  # a CUE image's segments may crowd the nearest rows
        if want == 0 or len(queries) == 0:
            return np.zeros(0, dtype=np.int64)
        if want == len(self.rows):
            return np.unique(self.row_track)
        if self.clusters is None or want * 8 >= len(self.rows):
            nearest = np.argpartition(-(self.rows @ queries.T), want - 1, axis=0)[:want]
            return np.unique(self.row_track[nearest.ravel()])
        return np.unique(self.row_track[np.concatenate(self._scan_clusters(queries, want))])

    def baseline(self, queries: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of ``similarity`` over a fixed sample of the library."""
        return spread(self.sample_similarities(queries).max(axis=1))

    def sample_similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosines (sample rows, queries) of a fixed sample of the library's rows."""
        return (self._sample @ as_queries(queries, self.dimension).T).astype(np.float64)

    def _scan_clusters(self, queries: np.ndarray, want: int) -> list[np.ndarray]:
        """Per query, the ``want`` nearest rows among its nearest clusters.

        Each probed cluster is compared with all the queries probing it in one product, so many
        queries (a path's points) cost little more than one.
        """
        starts = self.clusters.starts
        sizes = np.diff(starts)
        order = np.argsort(-(queries @ self.clusters.centroids.T), axis=1)
        enough = (np.cumsum(sizes[order], axis=1) < 3 * want).sum(axis=1) + 1
        depth = np.maximum(enough, max(MIN_PROBES, int(np.ceil(len(sizes) * SCAN_FRACTION))))
        probed = np.zeros((len(queries), len(sizes)), dtype=bool)
        for q, (row, count) in enumerate(zip(order, depth, strict=True)):
            probed[q, row[:count]] = True
        scores: list[list[np.ndarray]] = [[] for _ in queries]
        positions: list[list[np.ndarray]] = [[] for _ in queries]
        for cluster in np.flatnonzero(probed.any(axis=0)):
            asking = np.flatnonzero(probed[:, cluster])
            low, high = starts[cluster], starts[cluster + 1]
            block = self.rows[low:high] @ queries[asking].T
            for column, q in enumerate(asking):
                scores[q].append(block[:, column])
                positions[q].append(np.arange(low, high))
        return [_top(np.concatenate(s), np.concatenate(p), want) for s, p in zip(scores, positions, strict=True)]


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


def _top(scores: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    if k >= len(scores):
        return positions
    return positions[np.argpartition(-scores, k - 1)[:k]]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > _EPS, norms, 1.0)


def as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.asarray(queries, dtype=np.float32)
    queries = queries.reshape(1, -1) if queries.ndim == 1 else queries
    if queries.shape[1] != dim:
        raise ValueError(f"query vectors have {queries.shape[1]} dimensions, the field has {dim}")
    return _normalised(queries)


def _build_clusters(vectors: np.ndarray) -> tuple[Clusters, np.ndarray]:
    """Spherical k-means on a sample (sqrt(rows) clusters); returns them and each row's cluster."""
    count = min(len(vectors), int(np.clip(np.sqrt(len(vectors)), 16, 4096)))
    rng = np.random.default_rng(SEED)
    sample = vectors[rng.choice(len(vectors), min(len(vectors), count * KMEANS_SAMPLE_PER_CLUSTER), replace=False)]
    centroids = sample[rng.choice(len(sample), count, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        members = np.zeros((count, len(sample)), dtype=np.float32)
        members[np.argmax(sample @ centroids.T, axis=1), np.arange(len(sample))] = 1.0
        sums = members @ sample
        empty = np.flatnonzero(members.sum(axis=1) == 0)
        sums[empty] = sample[rng.choice(len(sample), len(empty), replace=False)]
        centroids = _normalised(sums)
    assigned = _assign(vectors, centroids)
    starts = np.concatenate(([0], np.cumsum(np.bincount(assigned, minlength=count))))
    return Clusters(centroids=centroids, starts=starts), assigned


def _assign(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> np.ndarray:
    return np.concatenate([np.argmax(vectors[i:i + chunk] @ centroids.T, axis=1)
                           for i in range(0, len(vectors), chunk)])
