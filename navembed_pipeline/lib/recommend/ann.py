"""Approximate nearest neighbours over one field's rows, with faiss (a well-kept ANN library).

An inverted file (``IndexIVFScalarQuantizer``, inner product on unit vectors): k-means lists trained
on a sample, each list holding its rows quantised to 8 bits per dimension (a quarter of the float
rows' memory). The index only proposes candidates; ``FieldVectors`` scores them exactly on the float
rows, so quantisation can cost recall but never misranks. ``PROBE_SHARE`` was chosen by measuring
recall@50 against exact search on vectors shaped like real dsp vectors (``benchmarks/recommend_latency``):
dense vectors (pairwise cosines mostly high) need more probes than clustered toy data suggests.

faiss is imported on first use (a library under ``IVF_MIN_ROWS`` tracks never needs it).
The index is serialised with the field's snapshot (``snapshot.py``), so a restart loads it instead of
training it again.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_LISTS = 16
MAX_LISTS = 4096
LISTS_PER_SQRT_ROW = 2  # lists = 2 * sqrt(rows): 632 at 100k, 2,000 at 1M
TRAIN_PER_LIST = 40  # faiss warns below 39 training points per list
MAX_TRAIN_ROWS = 100_000
TRAIN_ITERATIONS = 10  # k-means passes (faiss's default 25 costs minutes of CPU at 1M for no recall here)
PROBE_SHARE = 1 / 4  # of the lists visited per query
MIN_PROBES = 24
SEED = 0
FINGERPRINT_ROWS = 1024


@dataclass(frozen=True)
class AnnIndex:
    """A trained, filled faiss index over ``rows`` unit vectors, in the order they were added."""

    index: Any  # faiss.Index
    rows: int
    dimension: int
    fingerprint: str

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row positions of (about) the ``k`` rows nearest to each normalised query; -1 pads."""
        _, found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return found

    def matches(self, rows: np.ndarray) -> bool:
        """True when this index was built over exactly these rows (shape and a sample of values)."""
        return rows.shape == (self.rows, self.dimension) and fingerprint(rows) == self.fingerprint

    def save(self, path: Path) -> None:
        """Write the index to ``path`` (faiss's own format; ``load`` maps it back from disk)."""
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, *, rows: int, dimension: int, digest: str, probes: int | None = None) -> "AnnIndex":
        """The index written at ``path``, memory-mapped (its lists are paged in from the file as searches
        touch them: milliseconds at a million rows instead of reading the whole file). ``probes``: the
        lists a query visits (the stored value when None)."""
        import faiss

        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        if index.ntotal != rows or index.d != dimension:
            raise ValueError(f"the stored index holds {index.ntotal} x {index.d}, the rows are {rows} x {dimension}")
        if probes is not None:
            faiss.extract_index_ivf(index).nprobe = probes
        return cls(index, rows, dimension, digest)


def list_count(rows: int) -> int:
    return int(np.clip(LISTS_PER_SQRT_ROW * np.sqrt(rows), MIN_LISTS, MAX_LISTS))


def probe_count(lists: int, share: float = PROBE_SHARE) -> int:
    return min(lists, max(MIN_PROBES, int(np.ceil(lists * share))))


def build_ann(rows: np.ndarray, *, probe_share: float = PROBE_SHARE) -> AnnIndex:
    """Train and fill an index over unit ``rows`` (n, d); positions in results are row numbers."""
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    count, dimension = rows.shape
    lists = min(list_count(count), max(1, count // TRAIN_PER_LIST))
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dimension, lists, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = SEED
    index.cp.niter = TRAIN_ITERATIONS
    rng = np.random.default_rng(SEED)
    train = rows[np.sort(rng.choice(count, min(count, lists * TRAIN_PER_LIST, MAX_TRAIN_ROWS), replace=False))]
    index.train(train)
    index.add(rows)
    index.nprobe = probe_count(lists, probe_share)
    return AnnIndex(index, count, dimension, fingerprint(rows))


def fingerprint(rows: np.ndarray) -> str:
    """A digest of the shape and of about a thousand evenly spaced rows (cheap at a million rows)."""
    step = max(1, len(rows) // FINGERPRINT_ROWS)
    digest = hashlib.sha256(repr(rows.shape).encode())
    digest.update(np.ascontiguousarray(rows[::step], dtype=np.float32).tobytes())
    return digest.hexdigest()
