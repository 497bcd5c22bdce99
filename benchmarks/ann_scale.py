"""The recommender's vector search at 100k and 1M tracks: faiss index against exact search, side by side.

Vectors: real dsp vectors of the real recordings (``benchmarks/recordings.py``; computed and cached by
``python -m benchmarks.quality``, whose cache this reads) are the shape to follow: a Gaussian is fitted to
them (mean and covariance, shrunk towards the diagonal as there are fewer recordings than dimensions),
and the library's vectors are drawn from it, then written straight to the vector snapshot format
(inserting a million rows into Milvus Lite would take hours; the API reads the same file at start).
Without cached real vectors, ``--quick`` uses a small clustered set so the code path stays tested.

Printed per size: the index build (first start: training), the start from the snapshot (what a restarted
API pays), recall@50 of the shipped path (index candidates re-scored exactly) against exact search over
100 queries (mean and worst), latency p50/p95 of both, and the resident memory after loading.
usage: python -m benchmarks.ann_scale [--ann-sizes 100000,1000000] [--quick]
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.recommend.snapshot import read_snapshot, write_snapshot
from navembed_pipeline.lib.recommend.vectors import FieldVectors

QUALITY_CACHE = Path.home() / ".cache" / "navembed" / "quality" / "computed"
QUERIES = 100
K = 50
SHRINK = 0.2  # of the covariance replaced by its diagonal: fewer recordings than dimensions
BLOCK = 100_000


def real_dsp_vectors(cache: Path = QUALITY_CACHE) -> np.ndarray:
    """The stored form of every real recording's dsp vector found in the quality benchmark's cache."""
    rows = list(real_dsp_by_recording(cache).values())
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def real_dsp_by_recording(cache: Path = QUALITY_CACHE) -> dict[str, np.ndarray]:
    """{recording key: its dsp vector in the stored form} from the quality benchmark's cache."""
    from navembed_pipeline.lib.models.dsp import weighted_vector

    out = {}
    for path in sorted(cache.glob("*.json")):
        value = json.loads(path.read_text()).get("dsp_v2_raw", {}).get("value")
        if value is not None:
            out[path.stem] = weighted_vector(np.asarray(value, dtype=np.float32))
    return out


def describe(index) -> str:
    """The faiss index type and its search setting (an inverted file's probes, HNSW's least efSearch)."""
    return "exact" if index is None else index.summary


def fitted_sampler(real: np.ndarray, seed: int = 0):
    """draw(n) -> n vectors from a Gaussian fitted to ``real`` (shrunk covariance)."""
    mean = real.mean(axis=0)
    covariance = np.cov(real, rowvar=False)
    covariance = (1 - SHRINK) * covariance + SHRINK * np.diag(np.diag(covariance))
    factor = np.linalg.cholesky(covariance + 1e-6 * np.eye(len(mean)))
    rng = np.random.default_rng(seed)

    def draw(n: int) -> np.ndarray:
        out = np.empty((n, len(mean)), dtype=np.float32)  # filled block by block: no float64 copy of it all
        for i in range(0, n, BLOCK):
            out[i:i + BLOCK] = mean + rng.standard_normal((min(BLOCK, n - i), len(mean))) @ factor.T
        return out

    return draw


def joint_samplers(real: dict[str, np.ndarray], seed: int = 0) -> dict:
    """{model: draw(n)}: one Gaussian fitted to the recordings' vectors of every model side by side (``real``:
    rows aligned, one per recording), so a track's vectors in different models agree as the real ones do
    (both models hear the same audio). Each model's ``draw`` makes its block of the joint vectors from the
    same standard normals (one generator per block, seeded by the block's number), so the k-th calls of
    different models' draws give the same tracks' vectors, whichever model is drawn first."""
    names = list(real)
    joined = np.concatenate([real[m] for m in names], axis=1).astype(np.float64)
    mean = joined.mean(axis=0)
    covariance = np.cov(joined, rowvar=False)
    covariance = (1 - SHRINK) * covariance + SHRINK * np.diag(np.diag(covariance))
    factor = np.linalg.cholesky(covariance + 1e-6 * np.eye(len(mean)))
    edges = np.cumsum([0] + [real[m].shape[1] for m in names])
    calls = {m: 0 for m in names}

    def drawer(model: str):
        low, high = edges[names.index(model)], edges[names.index(model) + 1]
        part = factor[low:high].T  # (joint, model dim): the model's rows of the joint factor

        def draw(n: int) -> np.ndarray:
            call = calls[model]
            calls[model] += 1
            out = np.empty((n, high - low), dtype=np.float32)
            for number, i in enumerate(range(0, n, BLOCK)):
                rng = np.random.default_rng((seed, call, number))
                out[i:i + BLOCK] = mean[low:high] + rng.standard_normal((min(BLOCK, n - i), len(mean))) @ part
            return out

        return draw

    return {m: drawer(m) for m in names}


def clustered_sampler(dim: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim))
    return lambda n: (centres[rng.integers(0, 64, n)] + 0.8 * rng.standard_normal((n, dim))).astype(np.float32)


def pairwise_median(rows: np.ndarray, rng: np.random.Generator) -> float:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    a, b = rng.integers(0, len(rows), (2, 4000))
    return float(np.median(np.sum(unit[a] * unit[b], axis=1)))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kept_energy(ann, rows: np.ndarray) -> float:
    """Mean squared length of unit ``rows`` after a projected graph's projection (1.0: nothing lost)."""
    import faiss

    unit = np.asarray(rows, dtype=np.float32) / np.linalg.norm(rows, axis=1, keepdims=True)
    transform = faiss.downcast_VectorTransform(faiss.downcast_index(ann.index).chain.at(0))
    return float(np.mean(np.sum(transform.apply(np.ascontiguousarray(unit)) ** 2, axis=1)))


def measure(size: int, draw, work: Path, results: dict, probe_shares: tuple[float, ...] = (),
            ef_searches: tuple[int, ...] = (), real: np.ndarray | None = None) -> list[str]:
    rng = np.random.default_rng(size)
    rows = draw(size)
    ids = [f"t{i:07d}" for i in range(size)]
    lines = [f"  {size:>8} tracks x {rows.shape[1]}-d, pairwise cosine median {pairwise_median(rows, rng):.2f}"]
    began = time.perf_counter()
    field = FieldVectors("dsp", "embedding", ids, [1] * size, rows)
    built = time.perf_counter() - began
    write_snapshot(work, ("bench", size, None), field)
    del field
    began = time.perf_counter()
    field = read_snapshot(work, "dsp", "embedding", ("bench", size, None))
    warm = time.perf_counter() - began
    memory = rss_mb()
    queries = field.rows[rng.integers(0, size, QUERIES)]
    recalls, approximate, exact, truths = [], [], [], []
    for query in queries:
        began = time.perf_counter()
        truth = set(np.argpartition(-(field.rows @ query), K)[:K].tolist())
        exact.append(time.perf_counter() - began)
        began = time.perf_counter()
        candidates = field.candidates(query, K)
        found = candidates[np.argsort(-(field.rows[candidates] @ query))[:K]]
        approximate.append(time.perf_counter() - began)
        recalls.append(len(truth & set(found.tolist())) / K)
        truths.append(truth)
    ann = field.ann
    results[str(size)] = {"recall_mean": round(float(np.mean(recalls)), 4), "recall_worst": float(np.min(recalls)),
                          "index_p95_ms": round(1000 * float(np.percentile(approximate, 95)), 2),
                          "exact_p95_ms": round(1000 * float(np.percentile(exact, 95)), 2),
                          "build_s": round(built, 1), "warm_s": round(warm, 1), "rss_mb": round(memory)}
    lines += [
        f"    index: {describe(ann)}"
        f"; first build {built:.1f} s; start from the snapshot {warm:.1f} s; RSS after it {memory:.0f} MB",
        f"    recall@{K} vs exact: mean {np.mean(recalls):.3f}, worst {np.min(recalls):.2f} ({QUERIES} queries)",
        f"    top-{K} latency p50/p95: index {1000 * np.median(approximate):.1f}/{1000 * np.percentile(approximate, 95):.1f}"
        f" ms, exact numpy {1000 * np.median(exact):.1f}/{1000 * np.percentile(exact, 95):.1f} ms"
        f" ({np.median(exact) / np.median(approximate):.1f}x)",
    ]
    if ann is None:
        return lines
    if ann.projected:
        lines.append(f"    graph projection: {kept_energy(ann, field.rows[:20_000]):.4f} of the rows' energy kept"
                     + (f", {kept_energy(ann, real):.4f} of the real recordings' vectors'" if real is not None and
                        real.shape[1] == ann.dimension else ""))
    lines.extend(_other_shares(field, ann, queries, truths, probe_shares) if ann.kind == "ivf"
                 else _other_efs(field, ann, queries, truths, ef_searches))
    return lines


def _other_efs(field, ann, queries, truths, ef_searches) -> list[str]:
    """Recall@K and CPU per query of the same queries at other HNSW efSearch values (restored after)."""
    from navembed_pipeline.lib.recommend.ann import hnsw_graph

    inner = hnsw_graph(ann.index)
    lines, shipped = [], inner.hnsw.efSearch
    for ef in ef_searches:
        inner.hnsw.efSearch = ef
        found, began = [], time.process_time()
        for query, best in zip(queries, truths):
            candidates = field.candidates(query, K)
            top = candidates[np.argsort(-(field.rows[candidates] @ query))[:K]]
            found.append(len(best & set(top.tolist())) / K)
        cpu = 1000 * (time.process_time() - began) / len(queries)
        lines.append(f"    efSearch {ef}: recall@{K} mean {np.mean(found):.4f}, worst {np.min(found):.2f}; "
                     f"{cpu:.2f} ms CPU per query")
    inner.hnsw.efSearch = shipped
    return lines


def _other_shares(field, ann, queries, truths, probe_shares) -> list[str]:
    """Recall@K of the same queries with other shares of the lists probed (the shipped share is restored)."""
    from navembed_pipeline.lib.recommend.ann import probe_count

    lines, shipped = [], ann.index.nprobe
    for share in probe_shares:
        ann.index.nprobe = probe_count(ann.index.nlist, share)
        found = []
        for query, best in zip(queries, truths):
            candidates = field.candidates(query, K)
            top = candidates[np.argsort(-(field.rows[candidates] @ query))[:K]]
            found.append(len(best & set(top.tolist())) / K)
        lines.append(f"    probing {share:.3f} of the lists ({ann.index.nprobe}): recall@{K} mean "
                     f"{np.mean(found):.4f}, worst {np.min(found):.2f}")
    ann.index.nprobe = shipped
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ann-sizes", default="100000,1000000", help="comma-separated track counts")
    parser.add_argument("--quick", action="store_true", help="generated clustered vectors, small sizes")
    parser.add_argument("--work", default=None, help="directory for the snapshot files")
    parser.add_argument("--json", type=Path, help="also write {size: {recall, latency, build, warm, rss}} here")
    parser.add_argument("--model", choices=("dsp", "musicnn"), default="dsp", help="whose real vectors to fit")
    parser.add_argument("--probe-shares", default="", help="also report recall probing these shares of the lists (IVF)")
    parser.add_argument("--ef-searches", default="", help="also report recall at these HNSW efSearch values")
    parser.add_argument("--ann-kind", choices=("ivf", "hnsw", "auto"), default=None, help="index built (default: ann.INDEX_KIND)")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    from benchmarks.recommend_scale import real_musicnn_vectors

    real = np.zeros((0, 0)) if args.quick else real_dsp_vectors() if args.model == "dsp" else real_musicnn_vectors()
    shares = tuple(float(s) for s in args.probe_shares.split(",") if s)
    efs = tuple(int(s) for s in args.ef_searches.split(",") if s)
    if args.ann_kind:
        from navembed_pipeline.lib.recommend import ann

        ann.INDEX_KIND = args.ann_kind
    if len(real) >= 50:
        draw, source = fitted_sampler(real), f"a Gaussian fitted to {len(real)} real {args.model} vectors"
        sizes = [int(s) for s in args.ann_sizes.split(",")]
    else:
        draw, source = clustered_sampler(), "generated clustered vectors (no real dsp vectors cached)"
        sizes = [int(s) for s in args.ann_sizes.split(",")] if not args.quick else [25_000]
    print(f"Vector search at scale: {source}; written straight to the snapshot format (not through Milvus Lite)")
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for size in sizes:
            for line in measure(size, draw, Path(tmp), results, shares, efs, real if len(real) else None):
                print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"source": source, "sizes": results}, indent=2))


if __name__ == "__main__":
    main()
