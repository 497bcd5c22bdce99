"""The Navidrome plugin's three calls at 100k-1M tracks, timed (p50/p95) and optionally profiled.

What the API serves: ``SonicService`` over a ``Recommender`` whose catalog is the API's
``TrackCatalog`` over a real Navidrome-schema SQLite file, and dsp vectors (327-d) in memory. The
vectors are *generated* (genre centres plus noise, ``recommend_latency.synthetic``) and handed to
``StaticVectors`` directly: no Milvus Lite insert or scan (that is the store's cost, measured by
``recommend_latency``); the faiss index is built like the cache builds it. Printed next to the
plugin's calls: one exact numpy top-50 scan of the same rows (the search's own lower bound).

``--profile``: cProfile of ``--queries`` similar_tracks calls, top functions by cumulative time.
The same script measures older code: ``PYTHONPATH=<older tree> python benchmarks/plugin_profile.py``.
usage: python -m benchmarks.plugin_profile [--sizes 100000] [--queries 30] [--profile] [--no-table]
"""

import argparse
import cProfile
import inspect
import io
import pstats
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np

from benchmarks.recommend_latency import PLAYLIST, catalog_db, numpy_brute, synthetic, timed, track_id
from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.recommend import FieldVectors, Recommender, SonicService, StaticVectors, TrackCatalog
from navembed_api.main import single_threaded_blas

CHUNK = 100_000


def dsp_field(count: int, exact: bool = False) -> FieldVectors:
    rows = np.concatenate([synthetic("dsp", "embedding", low, min(count, low + CHUNK))
                           for low in range(0, count, CHUNK)])
    options = {"ivf_min_rows": 10**12} if exact else {}
    return FieldVectors("dsp", "embedding", [track_id(i) for i in range(count)], np.ones(count, np.int64), rows,
                        **options)


def bulk_db(path: Path, count: int) -> NavidromeLibrary:
    """``recommend_latency.catalog_db``'s tracks, written with one bulk insert (the fixture writer costs
    minutes per million rows): the fixture's schema and first row, then that row's values per track."""
    library = catalog_db(path, 1)
    with closing(sqlite3.connect(path)) as conn, conn:
        names = [c[1] for c in conn.execute("PRAGMA table_info(media_file)")]
        template = dict(zip(names, conn.execute("SELECT * FROM media_file").fetchone(), strict=True))

        def row(i: int) -> tuple:
            return tuple({**template, "id": track_id(i), "path": f"A{i // 80}/B{i // 10}/{i}.flac",
                          "title": f"Song {i}", "artist": f"Artist {i // 8}", "album": f"Album {i // 10}",
                          "artist_id": f"ar{i // 8}", "duration": 120.0 + i % 240}.values())

        conn.executemany(f"INSERT INTO media_file ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         (row(i) for i in range(1, count)))
    return library


def measure(count: int, work: Path, queries: int, profile: bool, table: bool = True, *, bulk: bool = False,
            exact: bool = False, artists: bool = True, profiled: str = "similar_tracks n=100") -> None:
    began = time.perf_counter()
    library = (bulk_db if bulk else catalog_db)(work / f"navidrome-{count}.db", count)
    built_db = time.perf_counter() - began
    began = time.perf_counter()
    field = dsp_field(count, exact)
    built_vectors = time.perf_counter() - began
    # --no-table (or code without TrackCatalog's columns, e.g. before it: PYTHONPATH=<an older tree>)
    columns = {"columns": library.track_columns} if table and hasattr(library, "track_columns") else {}
    catalog = TrackCatalog(library.get, library.db_path, **columns)
    engine = Recommender(StaticVectors([field]), catalog, default_models=("dsp",))
    sonic = SonicService(engine, library.tracks)
    began = time.perf_counter()
    artists = sonic.artists() if artists else None
    built_artists = time.perf_counter() - began
    began = time.perf_counter()
    built = catalog.table(wait=True) if columns else None
    built_table = time.perf_counter() - began
    made = f"artist index ({len(artists)} artists) {built_artists:.1f} s" if artists else "no artist index"
    kept = f"track table {built_table:.1f} s" if built is not None else "no track table"
    print(f"  {count} tracks: navidrome.db {built_db:.1f} s, dsp field (+faiss index: {field.ann is not None}) "
          f"{built_vectors:.1f} s, {made}, {kept}", flush=True)
    seeds = [track_id(int(i)) for i in np.random.default_rng(11).integers(0, count, 1000)]
    artist_ids = list(artists.artists) if artists else []
    began = time.perf_counter()
    sonic.similar_tracks(seeds[999], 100, eliminate_duplicates=True, within_radius=True)
    print(f"  first similar_tracks (cold catalog) {(time.perf_counter() - began) * 1000:.0f} ms", flush=True)
    shown = {"details": False} if "details" in inspect.signature(sonic.similar_tracks).parameters else {}
    calls = {  # as the plugin routes call them (``details=False`` where the code has it)
        "similar_tracks n=100": lambda q: sonic.similar_tracks(seeds[q], 100, eliminate_duplicates=True,
                                                               within_radius=True, **shown),
        "similar_tracks n=200": lambda q: sonic.similar_tracks(seeds[q + 300], 200, eliminate_duplicates=True,
                                                               within_radius=True, **shown),
        "find_path count=25": lambda q: sonic.path(seeds[q], seeds[q + 500], 25, **shown),
        "similar_artists n=10": lambda q: sonic.similar_artists(artist_ids[q * 37 % len(artist_ids)], 10),
    }
    if not artists:
        del calls["similar_artists n=10"]
    rows = [(name, timed(call, queries)) for name, call in calls.items()]
    rows.append((f"numpy brute top {PLAYLIST}", numpy_brute(field.rows, queries)))
    for name, times in rows:
        print(f"  {count:>8}  {name:<24} p50 {np.percentile(times, 50):7.1f} ms  p95 {np.percentile(times, 95):7.1f} ms",
              flush=True)
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for q in range(queries):
            calls[profiled](q + 100)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated track counts")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of similar_tracks")
    parser.add_argument("--profile-call", default="similar_tracks n=100",
                        help="the call --profile profiles (e.g. 'find_path count=25')")
    parser.add_argument("--no-table", action="store_true", help="without the track table (the per-track path)")
    parser.add_argument("--bulk-db", action="store_true", help="write navidrome.db with one bulk insert (1M)")
    parser.add_argument("--exact", action="store_true", help="exact search (no faiss index to train)")
    parser.add_argument("--no-artists", action="store_true", help="no artist index (a million Track reads)")
    parser.add_argument("--work", default=None, help="directory for the temporary navidrome.db")
    args, _ = parser.parse_known_args()
    single_threaded_blas()  # as the API process does (navembed_api.main.serve)
    print("the plugin's calls through SonicService over generated dsp vectors (327-d) and a real navidrome.db")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for count in sorted(int(s) for s in args.sizes.split(",")):
            measure(count, Path(tmp), args.queries, args.profile, table=not args.no_table, bulk=args.bulk_db,
                    exact=args.exact, artists=not args.no_artists, profiled=args.profile_call)


if __name__ == "__main__":
    main()
