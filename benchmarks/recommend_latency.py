"""Recommendation latency (p50/p95 per mode) at 10k to 1M tracks: through Milvus Lite and from the snapshot.

Two parts, one command (``--sizes 100000,1000000 --queries 30`` is the issue-24 run):
- every size: the plugin path from the vector snapshot (``benchmarks/recommend_scale.py``): vectors generated
  in the real dsp and MusiCNN vectors' distribution and written straight to the snapshot format (inserting
  a million rows into Milvus Lite would take hours), then, in a fresh process per model set (dsp; dsp +
  musicnn), the warm-up a restarted API pays, its RSS, the plugin's calls' latency, and recall@50 of
  ``similar_tracks`` against the same call with exact search;
- sizes up to ``--store-max`` (default 10k): the store path below, for 50-track playlists:
1. each engine mode (similar, similar with rules, text, mixed, path) through ``Recommender`` with
   the in-process ``VectorCache`` and the real Navidrome catalog reader;
2. one raw Milvus Lite search (top 50) — what a store-backed engine pays per input and model;
3. a numpy brute-force top 50 over the muq vectors — the exact single-search lower bound;
4. the Navidrome plugin's calls through ``SonicService`` (``/api/similar_tracks`` n=100 with the
   plugin's defaults, ``/api/find_path`` count=25, ``/api/similar_artists`` n=10 with component
   matches), after a warm-up like the API's lifespan (a fresh cache: vectors, calibration, artist
   index), and the first call after it: what Navidrome waits for at most within its 10 s budget.

Synthetic clustered vectors ("genres"): ``dsp`` (327-d) is written into a Milvus Lite server and
loaded from it; ``muq`` (1536-d audio + 512-d MuLan) is kept in memory by default (inserting it
into Lite costs several minutes at 100k; ``--muq-in-store`` does it). Text prompts are random
MuLan-space vectors: the text model's own cost is not part of this measurement.
usage: python -m benchmarks.recommend_latency [--sizes 10000,100000,1000000] [--queries 30] [--store-max 10000]
"""

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient

from benchmarks import recommend_scale
from navembed_pipeline.lib.recommend import ann
from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.recommend import (FieldVectors, PathSpec, PlaylistRules, Recommender, RecommendRequest,
                                             SonicService, VectorCache)
from navembed_pipeline.lib.store import MilvusLiteServer, VectorRow, VectorStore, collection_name, row_entity
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

DIMS = {("dsp", "embedding"): 327, ("muq", "embedding"): 1536, ("muq", "mulan"): 512}
GENRES = 256
PLAYLIST = 50
INSERT_BATCH = 1000


def synthetic(model: str, field: str, start: int, stop: int) -> np.ndarray:
    """Rows start..stop of a field: a genre centre plus noise (deterministic per row block)."""
    dim = DIMS[(model, field)]
    centres = np.random.default_rng([dim, 1]).standard_normal((GENRES, dim)).astype(np.float32)
    rng = np.random.default_rng([dim, 2, start])
    genre = np.random.default_rng([3]).integers(0, GENRES, stop)[start:stop]
    rows = centres[genre] + 1.2 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def track_id(i: int) -> str:
    return f"t{i:07d}"


def fill_store(store: VectorStore, model: str, fields: tuple[str, ...], start: int, stop: int) -> float:
    """Insert rows start..stop the way a bulk load would (plain inserts, no per-track pruning)."""
    dims = {f: DIMS[(model, f)] for f in fields}
    store.ensure_collection(model, dims)
    client = MilvusClient(uri=store.uri)
    began = time.perf_counter()
    try:
        for low in range(start, stop, INSERT_BATCH):
            high = min(stop, low + INSERT_BATCH)
            blocks = {f: synthetic(model, f, low, high) for f in fields}
            rows = [VectorRow(track_id(i), 1, f"Artist {i // 8} - Song {i}", 0.0, 200.0, model, "bench", "fp", "00",
                              {f: blocks[f][i - low] for f in fields}) for i in range(low, high)]
            client.insert(collection_name(model), [row_entity(row, dims) for row in rows])
    finally:
        client.close()
    return time.perf_counter() - began


def wait_for_idle(pid: int | None, *, timeout: float = 300.0) -> float:
    """Wait until the Lite server stops indexing in the background (it would compete for the CPU)."""
    stat = Path(f"/proc/{pid}/stat")
    began = time.perf_counter()
    if pid is None or not stat.exists():  # not Linux: measure as is
        return 0.0

    def cpu_seconds() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    last = cpu_seconds()
    while time.perf_counter() - began < timeout:
        time.sleep(2.0)
        now = cpu_seconds()
        if now - last < 0.1:  # under 5 % of a core
            break
        last = now
    return time.perf_counter() - began


def catalog_db(path: Path, count: int) -> NavidromeLibrary:
    tracks = [FixtureTrack(path=f"A{i // 80}/B{i // 10}/{i}.flac", title=f"Song {i}", artist=f"Artist {i // 8}",
                           album=f"Album {i // 10}", duration=120.0 + i % 240, id=track_id(i)) for i in range(count)]
    create_navidrome_db(path, libraries=[FixtureLibrary(1, "Music", "/music")], tracks=tracks)
    return NavidromeLibrary(path)


class Mixed:
    """dsp (and muq with --muq-in-store) from the store's cache, the rest from arrays."""

    def __init__(self, cache: VectorCache, memory: dict[tuple[str, str], FieldVectors]) -> None:
        self.cache, self.memory = cache, memory

    def field(self, model: str, field: str = "embedding") -> FieldVectors:
        return self.memory.get((model, field)) or self.cache.field(model, field)


def timed(action: Callable[[int], object], queries: int) -> np.ndarray:
    action(0)  # warm-up
    times = []
    for q in range(1, queries + 1):
        began = time.perf_counter()
        action(q)
        times.append(time.perf_counter() - began)
    return np.asarray(times) * 1000.0


def requests(count: int) -> dict[str, Callable[[int], RecommendRequest]]:
    rng = np.random.default_rng(7)
    seeds = [track_id(int(i)) for i in rng.integers(0, count, 1000)]
    both, rules = ("muq", "dsp"), PlaylistRules(size=PLAYLIST)
    varied = PlaylistRules(size=PLAYLIST, diversity=0.3, max_per_artist=2, no_consecutive_artist=True)
    return {
        "similar": lambda q: RecommendRequest(mode="similar", seeds=(seeds[q],), models=both, rules=rules),
        "similar+rules": lambda q: RecommendRequest(mode="similar", seeds=(seeds[q],), models=both, rules=varied,
                                                    negative_tracks=(seeds[q + 500],)),
        "text": lambda q: RecommendRequest(mode="text", prompts=(f"p{q}",), negative_prompts=(f"n{q}",),
                                           models=("muq",), rules=rules),
        "mixed": lambda q: RecommendRequest(mode="mixed", seeds=(seeds[q],), prompts=(f"p{q}",), models=both,
                                            rules=rules),
        "path": lambda q: RecommendRequest(mode="path", path=PathSpec(seeds[q], seeds[q + 500], PLAYLIST - 2),
                                           models=both),
    }


def text_vectors(texts) -> np.ndarray:
    rows = []
    for text in texts:
        vector = np.random.default_rng([abs(hash(text)) % 2**32]).standard_normal(DIMS[("muq", "mulan")])
        rows.append(vector / np.linalg.norm(vector))
    return np.asarray(rows, dtype=np.float32)


def store_search(store: VectorStore, queries: int) -> np.ndarray:
    vectors = synthetic("dsp", "embedding", 0, queries + 1)
    return timed(lambda q: store.search("dsp", vectors[q], limit=PLAYLIST), queries)


def numpy_brute(rows: np.ndarray, queries: int) -> np.ndarray:
    def search(q: int) -> None:
        scores = rows @ rows[q]
        np.argpartition(-scores, PLAYLIST)[:PLAYLIST]

    return timed(search, queries)


def candidate_recall(vectors: FieldVectors, rows: np.ndarray, probes: int = 20, k: int = 200) -> float:
    exact = FieldVectors("exact", "embedding", list(vectors.track_ids), [1] * len(rows), rows, ivf_min_rows=10**12) \
        if vectors.ann is not None else vectors
    found = []
    for q in range(probes):
        truth = {exact.track_ids[i] for i in exact.candidates(rows[q], k)}
        got = {vectors.track_ids[i] for i in vectors.candidates(rows[q], k)}
        found.append(len(truth & got) / len(truth))
    return float(np.mean(found))


def run_size(count: int, previous: int, store: VectorStore, server: MilvusLiteServer, work: Path,
             args, results: dict) -> list[str]:
    """Measure one library size; the report lines, and {what: {p50_ms, p95_ms}} into ``results``."""
    lines = []
    in_store = ("dsp", "muq") if args.muq_in_store else ("dsp",)
    for model in in_store:
        fields = ("embedding", "mulan") if model == "muq" else ("embedding",)
        seconds = fill_store(store, model, fields, previous, count)
        lines.append(f"  inserted {count - previous} {model} rows into Milvus Lite in {seconds:.0f} s")
    library = catalog_db(work / f"navidrome-{count}.db", count)
    cache = VectorCache(store, background=False)
    began = time.perf_counter()
    cache.field("dsp")
    lines.append(f"  loaded {count} dsp rows from Milvus Lite into the cache in {time.perf_counter() - began:.1f} s")
    memory, muq_rows = {}, synthetic("muq", "embedding", 0, count)
    if not args.muq_in_store:
        began = time.perf_counter()
        ids = [track_id(i) for i in range(count)]
        memory = {("muq", f): FieldVectors("muq", f, ids, [1] * count,
                                           muq_rows if f == "embedding" else synthetic("muq", f, 0, count))
                  for f in ("embedding", "mulan")}
        lines.append(f"  built muq fields (1536-d + 512-d) in {time.perf_counter() - began:.1f} s")
    source = Mixed(cache, memory)
    muq = source.field("muq")
    lines.append(f"  muq search: {'inverted file (faiss)' if muq.ann else 'exact scan'}, "
                 f"candidate recall@200 vs exact {candidate_recall(muq, muq_rows):.3f}")
    lookups = timed(lambda q: library.get([track_id((q * 7919 + i * 389) % count) for i in range(256)]), 10)
    lines.append(f"  Navidrome catalog lookup of 256 ids (NavidromeLibrary.get): p50 {np.median(lookups):.1f} ms")
    lines.append(f"  waited {wait_for_idle(server.pid):.0f} s for Milvus Lite to finish indexing in the background")
    engine = Recommender(source, library.get, embed_text=text_vectors)
    lite = store_search(store, args.queries)
    brute = numpy_brute(muq_rows, args.queries)
    rows = [(mode, timed(lambda q, make=make: engine.recommend(make(q)), args.queries))
            for mode, make in requests(count).items()]
    plugin_rows, first = plugin_latency(store, memory, library, count, args.queries)
    lines += first
    rows += plugin_rows
    rows += [("Lite search (1x top 50)", lite), ("numpy brute (1x top 50)", brute)]
    for name, times in rows:
        p50, p95 = np.percentile(times, 50), np.percentile(times, 95)
        results.setdefault(str(count), {})[name] = {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2)}
        lines.append(f"  {count:>7}  {name:<24} {p50:8.1f} {p95:8.1f}   {p50 / np.median(lite):6.2f}x "
                     f"{p50 / np.median(brute):6.2f}x")
    return lines


def plugin_latency(store: VectorStore, memory: dict, library: NavidromeLibrary, count: int,
                   queries: int) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The plugin's three calls, timed after a lifespan-like warm-up of a fresh cache; and the first call."""
    began = time.perf_counter()
    engine = Recommender(Mixed(VectorCache(store, background=False), memory), library.get, embed_text=text_vectors)
    sonic = SonicService(engine, library.tracks)
    for model in engine.default_models:
        engine.vectors.field(model)
    artists = len(sonic.artists())
    warm = time.perf_counter() - began
    seeds = [track_id(int(i)) for i in np.random.default_rng(11).integers(0, count, 1000)]
    began = time.perf_counter()
    sonic.similar_tracks(seeds[999], 100, eliminate_duplicates=True, within_radius=True)
    first = (time.perf_counter() - began) * 1000.0
    artist_ids = list(sonic.artists().artists)
    rows = [
        ("plugin similar_tracks", timed(lambda q: sonic.similar_tracks(seeds[q], 100, eliminate_duplicates=True,
                                                                       within_radius=True), queries)),
        ("plugin find_path", timed(lambda q: sonic.path(seeds[q], seeds[q + 500], 25), queries)),
        ("plugin similar_artists", timed(lambda q: sonic.similar_artists(artist_ids[q * 37 % len(artist_ids)], 10),
                                         queries)),
    ]
    rows.append(("plugin first call", np.asarray([first])))
    note = [f"  lifespan warm-up (dsp from the store + calibration; {artists} artists indexed) {warm:.1f} s; "
            f"first plugin call after it {first:.0f} ms"]
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated track counts, ascending")
    parser.add_argument("--queries", type=int, default=30, help="timed requests per mode and size")
    parser.add_argument("--muq-in-store", action="store_true", help="also write muq vectors into Milvus Lite")
    parser.add_argument("--work", default=None, help="directory for the temporary Milvus data and navidrome.db")
    parser.add_argument("--store-max", type=int, default=10_000,
                        help="sizes up to this also run the Milvus Lite path (inserts and scans: minutes per 100k)")
    parser.add_argument("--scale-models", default="dsp,musicnn",
                        help="models of the snapshot path: dsp alone, then dsp + musicnn when listed")
    parser.add_argument("--ann-kind", choices=("ivf", "hnsw", "auto"), default=None,
                        help="index built for the snapshot path (default: the shipped ann.INDEX_KIND)")
    parser.add_argument("--json", type=Path, help="also write {size: {what: {p50_ms, p95_ms}}} here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    sizes = sorted(int(s) for s in args.sizes.split(","))
    results: dict = {}
    snapshot_results: dict = {}
    if args.ann_kind:
        ann.INDEX_KIND = args.ann_kind
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        recommend_scale.run(sizes, args.queries, Path(tmp), snapshot_results, tuple(args.scale_models.split(",")))
    store_sizes = [size for size in sizes if size <= args.store_max]
    if store_sizes:
        store_path(store_sizes, args, results)
    if args.json:
        args.json.write_text(json.dumps({"playlist": PLAYLIST, "queries": args.queries, "sizes": results,
                                         "snapshot": snapshot_results}, indent=2))


def store_path(sizes: list[int], args, results: dict) -> None:
    """The engine modes and the plugin's calls over vectors inserted into and scanned from Milvus Lite."""
    print(f"Store path: {PLAYLIST}-track playlists; models muq (1536-d + 512-d MuLan) + dsp (327-d); "
          f"{args.queries} requests each")
    print(f"  {'tracks':>7}  {'what':<24} {'p50 ms':>8} {'p95 ms':>8}   p50 vs Lite search, vs numpy brute")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        server = MilvusLiteServer(Path(tmp) / "milvus")
        server.start()
        store = VectorStore(server.uri)
        try:
            previous = 0
            for count in sizes:  # one growing collection: each size inserts only the new rows
                for line in run_size(count, previous, store, server, Path(tmp), args, results):
                    print(line, flush=True)
                previous = count
        finally:
            store.close()
            server.stop()


if __name__ == "__main__":
    main()
