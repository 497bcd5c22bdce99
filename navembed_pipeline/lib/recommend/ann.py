"""Approximate nearest neighbours over one field's rows, with faiss (a well-kept ANN library).

The default (``INDEX_KIND = "hnsw"``): a faiss HNSW graph (``IndexHNSWFlat``, ``HNSW_LINKS`` links per
node, inner product on unit vectors). The index only proposes candidates; ``FieldVectors`` scores them
exactly on the float rows, so the graph can miss a track but never misranks one. A search explores at
least as many nodes as it returns (``AnnIndex.search``: efSearch = max(``HNSW_EF_SEARCH``, k); faiss does
not raise it by itself, and the plugin asks for ~400 candidates). The file is written with the field's
snapshot (``snapshot.py``) and memory-mapped from it at a restart (``faiss.IO_FLAG_MMAP_IFC``: the graph
and its rows are views of the file, paged in as searches touch them), so it is neither built again nor
read whole. The graph's price is its build: about 6-10 minutes of CPU per 273-d field at 1M rows on a
2-core NAS. A reload after a run therefore keeps the index it had (``AnnIndex.carried``): entries whose row
is gone or changed are dropped from the answers, and rows added or changed since the build (under
``CARRY_MAX_EXTRA`` of the rows) are searched exactly beside it; only past that, or when over
``CARRY_MAX_GONE`` of the entries are dead, is the graph built again. ``INDEX_KIND = "ivf"`` (the inverted
file, ``IndexIVFScalarQuantizer``, 8-bit lists, ``PROBE_SHARE`` of them probed, mapped with
``IO_FLAG_MMAP``: about a minute to build at 1M, but a quarter of the rows scanned per query) or
``"auto"`` (the graph up to ``HNSW_MAX_ROWS`` rows, the inverted file above) choose otherwise.

A field wider than ``GRAPH_MAX_DIMENSIONS`` (MusiCNN's 753-d, MuQ's and MERT's) gets its graph over the rows'
``GRAPH_DIMENSIONS`` leading directions (``graph_projection``: the eigenvectors of the rows' uncentred second
moment; faiss's ``IndexPreTransform`` keeps the projection in the index file). The graph then holds 160
floats a row instead of 753, so it builds and maps in about a fifth of the time and memory; its proposals are
re-scored on the full rows, and it is asked for ``vectors.PROJECTED_OVERFETCH`` times the rows wanted, so
the order the projection blurs is settled exactly. On MusiCNN-like vectors at 30k (``python -m
benchmarks.ann_scale --model musicnn --ann-sizes 30000``): 0.9993 of the rows' energy kept, recall@50 0.999
mean / 0.98 worst; at 100k, for the plugin's ~420 candidates, the projected graph asked for 840 found 0.999
of the exact 420 nearest (the full 753-d graph asked for 420: 0.994) at about the same CPU.

How it was chosen: 40-100 queries, recall@50 of the re-scored candidates against exact search (mean /
worst), CPU per query with one thread, on vectors drawn from a Gaussian fitted to the recordings' real dsp
vectors (273-d; one dense blob, no genres: the hard case for both), on the shared 2-core machine:

    rows   index                              build (CPU)   recall@50        CPU per query
    100k   IVF-SQ8 1264 lists, 1/4 probed     ~20 s         0.9996 / 0.98    9.8 ms (k 100)
    100k   exact numpy                        -             1 / 1            13.8 ms
    100k   HNSW flat, efSearch 256            36 s          0.9994 / 0.98    1.8 ms (k 100)
    200k   HNSW flat, efSearch 64             62 s          0.956 / 0.80     0.6 ms (k 420)
    200k   HNSW flat, efSearch 128                          0.987 / 0.90     1.0 ms (k 420)
    200k   HNSW flat, efSearch 256                          1.000 / 1.00     1.4 ms (k 420)
    200k   HNSW flat, efSearch 512                          1.000 / 1.00     2.3 ms (k 420)
    200k   HNSW-SQ8 (8-bit rows in the graph)  > 6 min, stopped: far slower to build here than flat rows
    1M     HNSW flat, efSearch 256 (plugin)   1239 s wall   0.995 / 0.98     ready 1.3 s from the snapshot

(The 1M row is the plugin's ``similar_tracks`` recall against the same call searched exactly, from
``benchmarks.recommend_latency``; the build's wall time was taken at a load average of 6-10.)
An inverted file must probe a quarter of its lists on this blob to reach 0.98 worst-case recall, so at 1M
it scans 250k rows per query (the plugin's ``similar_tracks`` at 1M: p50 124 ms with IVF, of which the
search was most); HNSW's cost grows with log(rows). HNSW's price is its build (about 6-10 minutes of CPU per
273-d field at 1M: paid at the first scan and when a reload cannot carry the index over, never at a
restart) and its file (the rows again, float32, plus 256 bytes of links per row). usearch, hnswlib and voyager were not
measured: faiss was already a dependency, maps HNSW from the file and measured well enough. The plugin
path at each size (recall of ``similar_tracks`` against the same call searched exactly, latency, ready
time, RSS) is printed by ``python -m benchmarks.recommend_latency --sizes 100000,1000000 --store-max 0``.
The 200k HNSW rows above came from a one-off script asking for k = 420 candidates as the plugin does;
``python -m benchmarks.ann_scale --ann-sizes 200000 --ann-kind hnsw --ef-searches 64,128,256,512`` measures
the same at k = 50 (``--ann-kind ivf --probe-shares 0.125,0.25`` the inverted file).

faiss is imported on first use (a library under ``IVF_MIN_ROWS`` tracks is searched exactly and never
needs it).
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
INDEX_KIND = "hnsw"  # or "ivf" always, or "auto": "hnsw" up to HNSW_MAX_ROWS rows, "ivf" above (module docstring)
# With "auto": above this many rows the inverted file (about a minute to build at 1M, against 6-10 min of CPU
# for the graph per 273-d field) is chosen.
HNSW_MAX_ROWS = 250_000
HNSW_LINKS = 32
# A field wider than this is searched in its GRAPH_DIMENSIONS leading directions (``graph_projection``): the
# graph's rows and distances are that much smaller (MusiCNN's 753-d: 4.7x less memory and build), and the
# proposals are re-scored on the full rows as always.
GRAPH_MAX_DIMENSIONS = 384
GRAPH_DIMENSIONS = 160
PROJECTION_SAMPLE = 50_000  # rows whose second moment the projection is fitted to
ADD_BLOCK = 200_000  # rows added to a graph at a time (a projected graph projects one block at a time)
HNSW_EF_SEARCH = 256  # at least; a search for more candidates than this explores as many (``AnnIndex.search``)
# A reload keeps the index it had (``AnnIndex.carried``) while the rows outside it, searched exactly on every
# query, stay under this share of the rows (at 1M: 20k rows, ~1 ms), and the entries whose row is gone under
# CARRY_MAX_GONE of the entries (each wastes a little of every search); past either, the index is rebuilt.
CARRY_MAX_EXTRA = 0.02
CARRY_MAX_GONE = 0.2
SEED = 0
FINGERPRINT_ROWS = 1024
PREFAULT_ROWS = 65_536  # rows touched at a time by ``AnnIndex.prefault`` and ``snapshot.prefault``


@dataclass(frozen=True)
class AnnIndex:
    """A trained, filled faiss index serving ``rows`` unit vectors.

    Built over them, its entries are the rows in order. *Carried over* (``carried``) from the rows a field
    held before a reload, it serves the new rows without a rebuild: ``labels`` maps each entry to the row it
    is now (-1: that row is gone or changed), and ``extra`` lists the rows it does not hold (added or
    changed since), which the caller searches exactly (``FieldVectors.candidates``)."""

    index: Any  # faiss.Index
    rows: int
    dimension: int
    fingerprint: str
    labels: np.ndarray | None = None  # entry -> row served now (-1: none); None: entry i is row i
    extra: np.ndarray | None = None  # rows the index does not hold (ascending); None: none
    gone: int = 0  # entries whose row is gone (-1 in ``labels``)

    @property
    def entries(self) -> int:
        """Vectors in the faiss index (held rows plus entries whose row is gone)."""
        return int(self.index.ntotal)

    def carried(self, moved: np.ndarray, rows: np.ndarray) -> "AnnIndex | None":
        """This index serving new ``rows`` without a rebuild; ``moved[r]``: where the r-th row it served
        now is in ``rows``, -1 where that row is gone or its vector changed. None when too much changed
        (over ``CARRY_MAX_EXTRA`` of the rows outside the index, searched exactly on every query, or over
        ``CARRY_MAX_GONE`` of the entries wasted): then the caller builds a new index."""
        if len(moved) != self.rows or len(rows) == 0:
            return None
        base = self.labels if self.labels is not None else np.arange(self.entries, dtype=np.int64)
        labels = np.where(base >= 0, moved[np.maximum(base, 0)], -1).astype(np.int64)
        held = np.zeros(len(rows), dtype=bool)
        held[labels[labels >= 0]] = True
        extra = np.flatnonzero(~held).astype(np.int64)
        gone = int(np.count_nonzero(labels < 0))
        if len(extra) > CARRY_MAX_EXTRA * len(rows) or gone > CARRY_MAX_GONE * len(labels):
            return None
        return AnnIndex(self.index, len(rows), int(rows.shape[1]), fingerprint(rows), labels,
                        extra if len(extra) else None, gone)

    @property
    def kind(self) -> str:
        """"hnsw" or "ivf"."""
        return "hnsw" if type(hnsw_graph(self.index) if self.projected else self.index).__name__.startswith("IndexHNSW") \
            else "ivf"

    @property
    def summary(self) -> str:
        """What the index is and how it searches, e.g. "faiss IndexHNSWFlat efSearch 256 on 160 of 753 dimensions"."""
        if self.kind == "ivf":
            import faiss

            return f"faiss {type(faiss.downcast_index(self.index)).__name__} nprobe {faiss.extract_index_ivf(self.index).nprobe}"
        graph = hnsw_graph(self.index)
        projected = f" on {graph.d} of {self.dimension} dimensions" if self.projected else ""
        return f"faiss {type(graph).__name__} efSearch {graph.hnsw.efSearch}{projected}"

    @property
    def projected(self) -> bool:
        """True when the graph holds the rows' projection (``graph_projection``), not the rows."""
        return type(self.index).__name__ == "IndexPreTransform"

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row positions of (about) the ``k`` rows nearest to each normalised query; -1 pads. An HNSW
        search explores at least ``k`` nodes (faiss's efSearch does not grow with ``k`` by itself: asking
        for 400 neighbours with efSearch 64 returns 400, of which the far ones are poor)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        asked = self._asked(k)
        if self.kind == "hnsw":
            import faiss

            params = faiss.SearchParametersHNSW()
            params.efSearch = max(int(hnsw_graph(self.index).hnsw.efSearch), asked)
            _, found = self.index.search(queries, asked, params=params)  # a projected graph passes them on
        else:
            _, found = self.index.search(queries, asked)
        if self.labels is None:
            return found
        return np.where(found >= 0, self.labels[np.maximum(found, 0)], -1)

    def _asked(self, k: int) -> int:
        """Entries to ask faiss for so that about ``k`` of them are rows still served."""
        if self.labels is None:
            return int(k)
        live = max(1, self.entries - self.gone)
        return int(min(self.entries, np.ceil(k * self.entries / live)))

    def prefault(self) -> None:
        """Touch every page of a memory-mapped HNSW graph (its rows and links) once, in file order. A search
        of a freshly mapped graph faults its pages in one by one: at 1M rows about 30 ms a query at first
        against 3 ms once they are mapped, and touching them all in order takes about a second."""
        if self.kind != "hnsw":
            return
        import faiss

        index = hnsw_graph(self.index)
        for low in range(0, self.entries, PREFAULT_ROWS):
            index.reconstruct_n(low, min(PREFAULT_ROWS, self.entries - low))
        for name in ("offsets", "levels", "neighbors"):
            faiss.vector_to_array(getattr(index.hnsw, name))

    def matches(self, rows: np.ndarray) -> bool:
        """True when this index was built over exactly these rows (shape and a sample of values)."""
        return rows.shape == (self.rows, self.dimension) and fingerprint(rows) == self.fingerprint

    def save(self, path: Path) -> None:
        """Write the index to ``path`` (faiss's own format; ``load`` maps it back from disk). A carried-over
        index's ``labels`` and ``extra`` are the caller's to keep (the snapshot writes them beside it)."""
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, *, rows: int, dimension: int, digest: str, probes: int | None = None,
             labels: np.ndarray | None = None, extra: np.ndarray | None = None) -> "AnnIndex":
        """The index written at ``path``, memory-mapped (an inverted file's lists, or an HNSW graph and its
        quantised rows, are paged in from the file as searches touch them: well under a second at a million
        rows instead of reading the whole file). ``probes``: the lists an inverted file's query visits, or an
        HNSW search's least efSearch (None: as this code chooses, not as the writer did)."""
        import faiss

        kind = _kind_of_file(path)
        # IVF: its lists mapped (IO_FLAG_MMAP); HNSW: every array mapped in place (IO_FLAG_MMAP_IFC)
        flags = (faiss.IO_FLAG_MMAP if kind == "ivf" else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
        entries = rows if labels is None else len(labels)
        if index.ntotal != entries or index.d != dimension:
            raise ValueError(f"the stored index holds {index.ntotal} x {index.d}, expected {entries} x {dimension}")
        if labels is not None and (labels.max(initial=-1) >= rows or (extra is not None and extra.max(initial=-1) >= rows)):
            raise ValueError(f"the index's labels point past the {rows} rows")
        if kind == "ivf":
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = probes if probes is not None else probe_count(ivf.nlist)
        else:
            hnsw_graph(index).hnsw.efSearch = probes if probes is not None else HNSW_EF_SEARCH
        gone = 0 if labels is None else int(np.count_nonzero(labels < 0))
        return cls(index, rows, dimension, digest, labels, extra, gone)


def _kind_of_file(path: Path) -> str:
    """"hnsw" for a faiss HNSW file (its four-byte tag starts "IHN", or "IxPT": a projected graph), else "ivf"."""
    with Path(path).open("rb") as data:
        return "hnsw" if data.read(4).startswith((b"IHN", b"IxPT")) else "ivf"


def hnsw_graph(index: Any) -> Any:
    """The HNSW graph of ``index``, under its projection if it has one (``graph_projection``)."""
    import faiss

    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.index) if type(index).__name__ == "IndexPreTransform" else index


def graph_projection(rows: np.ndarray, dimensions: int = GRAPH_DIMENSIONS) -> np.ndarray:
    """(dim, dimensions): the leading eigenvectors of the unit rows' second moment (not centred: a cosine
    is the inner product with the common direction included). ``rows @ P`` keeps the inner products
    between rows up to what the dropped directions hold, which on these fields is a fraction of a percent
    of the energy (printed by ``python -m benchmarks.ann_scale --model musicnn``)."""
    rng = np.random.default_rng(SEED)
    sample = rows if len(rows) <= PROJECTION_SAMPLE else rows[np.sort(rng.choice(len(rows), PROJECTION_SAMPLE,
                                                                               replace=False))]
    sample = np.asarray(sample, dtype=np.float64)
    _, vectors = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(vectors[:, ::-1][:, :dimensions], dtype=np.float32)


def list_count(rows: int) -> int:
    return int(np.clip(LISTS_PER_SQRT_ROW * np.sqrt(rows), MIN_LISTS, MAX_LISTS))


def probe_count(lists: int, share: float = PROBE_SHARE) -> int:
    return min(lists, max(MIN_PROBES, int(np.ceil(lists * share))))


def index_kind(rows: int, kind: str | None = None) -> str:
    """The index built over ``rows`` rows: ``kind`` or ``INDEX_KIND``, "auto" deciding by ``HNSW_MAX_ROWS``."""
    chosen = kind or INDEX_KIND
    if chosen == "auto":
        return "hnsw" if rows <= HNSW_MAX_ROWS else "ivf"
    return chosen


def build_ann(rows: np.ndarray, *, probe_share: float = PROBE_SHARE, kind: str | None = None,
              links: int = HNSW_LINKS, construction: int | None = None) -> AnnIndex:
    """Train and fill an index over unit ``rows`` (n, d); positions in results are row numbers. ``kind``:
    "hnsw" (``links`` links per node, float rows; ``construction``: the candidates each insertion looks at,
    faiss's efConstruction, None: its default of 40), "ivf" (IVF-SQ8) or "auto" (the default ``INDEX_KIND``:
    by ``index_kind``)."""
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    count, dimension = rows.shape
    if index_kind(count, kind) == "hnsw":
        wide = dimension > GRAPH_MAX_DIMENSIONS
        graph = faiss.IndexHNSWFlat(GRAPH_DIMENSIONS if wide else dimension, links,
                                    faiss.METRIC_INNER_PRODUCT)  # float rows (8-bit: table)
        graph.hnsw.efSearch = HNSW_EF_SEARCH
        if construction is not None:
            graph.hnsw.efConstruction = construction
        index = graph
        if wide:  # searched in the rows' leading directions; faiss keeps the projection in the index file
            projection = faiss.LinearTransform(dimension, GRAPH_DIMENSIONS, False)
            faiss.copy_array_to_vector(np.ascontiguousarray(graph_projection(rows).T).ravel(), projection.A)
            projection.is_trained = True
            index = faiss.IndexPreTransform(projection, graph)
        for low in range(0, count, ADD_BLOCK):  # projected block by block: no second copy of all rows
            index.add(rows[low:low + ADD_BLOCK])
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
