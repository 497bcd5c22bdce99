"""Approximate nearest neighbours over one field's rows, with faiss (a well-kept ANN library).

An inverted file (``IndexIVFScalarQuantizer``, inner product on unit vectors): k-means lists trained
on a sample, each list holding its rows quantised to 8 bits per dimension (a quarter of the float
rows' memory). The index only proposes candidates; ``FieldVectors`` scores them exactly on the float
rows, so quantisation can cost recall but never misranks.

``PROBE_SHARE`` and the list count were chosen by measuring recall@50 (index candidates re-scored
exactly) against exact search, 100 queries, on 100k vectors drawn from a Gaussian fitted to the
recordings' real dsp vectors (273-d; the hard case for an inverted file: one dense blob, no genres):

    lists  probed        recall@50 mean / worst
    1264   1/8 (158)     0.992 / 0.92
    1264   1/4 (316)     0.9996 / 0.98     <- shipped
    1264   1/2 (632)     1.000 / 1.00
     632   1/8 (79)      0.987 / 0.80
     632   1/4 (158)     0.9988 / 0.96

and the same at 1264 lists on 100k vectors fitted to real MusiCNN vectors (753-d): 1/8 0.986 / 0.90,
1/4 0.9994 / 0.98 (``python -m benchmarks.ann_scale --ann-sizes 100000 --model musicnn --probe-shares
0.125,0.25``; figures taken on the shared machine with 25 k-means passes and 48 training rows per list).
Asking the index for 2x, 4x or 8x the candidates changed nothing: the 8-bit lists cost no recall, every
miss is a neighbour in a list not probed. Per query (CPU time, 100k dsp-like rows, top 100 candidates):
IVF-SQ8 probing 1/4 of the lists 9.8 ms, exact numpy 13.8 ms: on this dense blob the inverted file saves
little, and at 1M it scans 250k rows per query.

faiss HNSW (``INDEX_KIND = "hnsw"``, 32 links, flat rows) on the same vectors: efSearch 64 / 128 / 256 gave
recall@50 0.972 / 0.995 / 0.9994 mean, 0.86 / 0.96 / 0.98 worst, at 0.8 / 1.1 / 1.8 ms of CPU per query,
for a build of 36 s of CPU at 100k (4.5 s at 20k, where efSearch 256 gave 1.00 / 1.00); its file is read
whole at start (faiss maps only inverted lists). It is the better search; it is not the default yet because
its build at 1M (extrapolated: several minutes of CPU per 273-d field, more for 753-d) has not been measured
on the plugin path here: ``python -m benchmarks.recommend_latency --ann-kind hnsw`` does.
The recall at each size the API runs at is printed by ``python -m benchmarks.recommend_latency``.

faiss is imported on first use (a library under ``IVF_MIN_ROWS`` tracks never needs it).
The index is written with the field's snapshot (``snapshot.py``) and memory-mapped from it at a restart
(``load``), so it is neither trained again nor read whole.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_LISTS = 16
MAX_LISTS = 4096
LISTS_PER_SQRT_ROW = 4  # lists = 4 * sqrt(rows): 1,265 at 100k, 4,000 at 1M (2 * sqrt: worst recall 0.96 at 100k)
TRAIN_PER_LIST = 40  # faiss warns below 39 training points per list
MAX_TRAIN_ROWS = 100_000
TRAIN_ITERATIONS = 10  # k-means passes (faiss's default 25 costs minutes of CPU at 1M)
PROBE_SHARE = 1 / 4  # of the lists visited per query
MIN_PROBES = 24
INDEX_KIND = "hnsw"  # or "ivf": see the module docstring
HNSW_LINKS = 32
HNSW_EF_SEARCH = 256  # at least; a search for more candidates than this explores as many (``AnnIndex.search``)
HNSW_STORAGE = "flat"  # the graph's own copy of the rows: "flat" (float32, mapped from the file) or "sq8" (8 bits)
SQ_TRAIN_ROWS = 100_000  # rows the 8-bit quantiser's per-dimension ranges are taken from
SEED = 0
FINGERPRINT_ROWS = 1024


@dataclass(frozen=True)
class AnnIndex:
    """A trained, filled faiss index over ``rows`` unit vectors, in the order they were added."""

    index: Any  # faiss.Index
    rows: int
    dimension: int
    fingerprint: str

    @property
    def kind(self) -> str:
        """"hnsw" or "ivf"."""
        return "hnsw" if type(self.index).__name__.startswith("IndexHNSW") else "ivf"

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row positions of (about) the ``k`` rows nearest to each normalised query; -1 pads. An HNSW
        search explores at least ``k`` nodes (faiss's efSearch does not grow with ``k`` by itself: asking
        for 400 neighbours with efSearch 64 returns 400, of which the far ones are poor)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.kind == "hnsw":
            import faiss

            params = faiss.SearchParametersHNSW()
            params.efSearch = max(int(faiss.downcast_index(self.index).hnsw.efSearch), int(k))
            _, found = self.index.search(queries, k, params=params)
            return found
        _, found = self.index.search(queries, k)
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
        """The index written at ``path``, memory-mapped (an inverted file's lists, or an HNSW graph and its
        quantised rows, are paged in from the file as searches touch them: well under a second at a million
        rows instead of reading the whole file). ``probes``: the lists an inverted file's query visits, or an
        HNSW search's least efSearch (None: as this code chooses, not as the writer did)."""
        import faiss

        kind = _kind_of_file(path)
        # IVF: its lists mapped (IO_FLAG_MMAP); HNSW: every array mapped in place (IO_FLAG_MMAP_IFC)
        flags = (faiss.IO_FLAG_MMAP if kind == "ivf" else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
        if index.ntotal != rows or index.d != dimension:
            raise ValueError(f"the stored index holds {index.ntotal} x {index.d}, the rows are {rows} x {dimension}")
        if kind == "ivf":
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = probes if probes is not None else probe_count(ivf.nlist)
        else:
            faiss.downcast_index(index).hnsw.efSearch = probes if probes is not None else HNSW_EF_SEARCH
        return cls(index, rows, dimension, digest)


def _kind_of_file(path: Path) -> str:
    """"hnsw" for a faiss HNSW file (its four-byte tag starts "IHN"), else "ivf"."""
    with Path(path).open("rb") as data:
        return "hnsw" if data.read(4).startswith(b"IHN") else "ivf"


def list_count(rows: int) -> int:
    return int(np.clip(LISTS_PER_SQRT_ROW * np.sqrt(rows), MIN_LISTS, MAX_LISTS))


def probe_count(lists: int, share: float = PROBE_SHARE) -> int:
    return min(lists, max(MIN_PROBES, int(np.ceil(lists * share))))


def build_ann(rows: np.ndarray, *, probe_share: float = PROBE_SHARE, kind: str | None = None) -> AnnIndex:
    """Train and fill an index over unit ``rows`` (n, d); positions in results are row numbers. ``kind``:
    "hnsw" (the default ``INDEX_KIND``: ``HNSW_LINKS`` links per node, rows stored as ``HNSW_STORAGE``) or
    "ivf" (IVF-SQ8)."""
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    count, dimension = rows.shape
    if (kind or INDEX_KIND) == "hnsw":
        if HNSW_STORAGE == "sq8":
            index = faiss.IndexHNSWSQ(dimension, faiss.ScalarQuantizer.QT_8bit, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
            step = max(1, count // SQ_TRAIN_ROWS)
            index.train(rows[::step])
        else:
            index = faiss.IndexHNSWFlat(dimension, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
        index.add(rows)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return AnnIndex(index, count, dimension, fingerprint(rows))
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
