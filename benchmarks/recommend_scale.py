"""The plugin path at 100k-1M tracks from the vector snapshot: warm-up, RSS, latency and recall@50.

Used by ``benchmarks/recommend_latency.py`` for sizes above ``--store-max``: inserting a million rows into
Milvus Lite and scanning them back would take hours, so the library's vectors are generated and written
*straight to the snapshot format* the API maps at start (``lib/recommend/snapshot.py``), together with a
Navidrome-schema catalog of the same tracks. Vectors: drawn from one Gaussian fitted to the recordings' real
dsp vectors (``~/.cache/navembed/quality/computed``) and real MusiCNN ``max_pool`` vectors (753-d, the model's
``SIMILARITY_LAYER``, mean over every patch: ``benchmarks/musicnn_budget.py``'s cache) side by side, so a
generated track's two vectors agree as a real track's do (over pairs of the 210 recordings, the correlation of
the dsp cosine with the MusiCNN cosine is 0.52; over generated pairs 0.48; drawn independently, 0); one
Gaussian per model when only one model's vectors are cached; clustered random vectors where none are (said
in the output).

Each model set (dsp alone; dsp + musicnn) is measured in a fresh process, as a restarted API would be:
- warm-up: every field mapped from its snapshot (rows, faiss index, calibration) until ``similar_tracks``
  can answer; the artist index (``similar_artists``) is timed on its own after it;
- RSS after warm-up and after the queries, split into anonymous memory and mapped file pages (the latter
  are the snapshot's rows and index as searches touched them; the kernel may drop them under pressure);
- the plugin's three calls (``similar_tracks`` n=100 with duplicates eliminated and the radius on,
  ``find_path`` count=25, ``similar_artists`` n=10): p50/p95 wall time and per-call CPU time;
- recall@50 of ``similar_tracks``: the first 50 tracks it answers with the index, against the exact answer
  (mean and worst over the queries): for one model, the same call over the same rows searched exactly; for
  fused models, the call that scores *every* track (``truth_service``). Fused models are searched through
  their joined index (``lib/recommend/joint.py``, written with the snapshots); the way they were searched
  before it, each model's shortlist of nearest tracks (``engine.MIN_CANDIDATES``) fused, is measured beside
  it (``shortlist_recall``): that is where fusing lost neighbours, index or not;
- the reload after a run that re-embedded 1 % of the tracks: the new copy with the index carried over (its
  build time next to the snapshot's full build; fused, the joined index carried over too), and ``similar_tracks`` latency and recall on it (half the
  queries from the re-embedded tracks, whose rows are searched exactly beside the index).
"""

import argparse
import glob
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.ann_scale import clustered_sampler, describe, fitted_sampler, joint_samplers, real_dsp_by_recording
from navembed_pipeline.lib.recommend import FieldVectors, Recommender, SonicService, TrackCatalog
from navembed_pipeline.lib.recommend.engine import MIN_CANDIDATES
from navembed_pipeline.lib.recommend.index import StaticVectors
from navembed_pipeline.lib.recommend.joint import build_joint, load_joint, save_joint
from navembed_pipeline.lib.recommend.snapshot import read_snapshot, write_snapshot
from navembed_api.main import single_threaded_blas

MUSICNN_CACHE = Path.home() / ".cache" / "navembed" / "quality" / "musicnn"
MODEL_SETS = (("dsp",), ("dsp", "musicnn"))
RECALL_AT = 50
EVERY_TRACK_QUERIES = 10  # queries whose answers are checked against scoring every track (seconds each at 1M)
CARRY_SHARE = 0.01  # of the tracks re-embedded by the run whose reload is measured (``reload_after_a_run``)


def signature(size: int) -> tuple[str, int, str]:
    return ("benchmark", size, "generated")


def real_musicnn_vectors(cache: Path = MUSICNN_CACHE) -> np.ndarray:
    """MusiCNN similarity vectors (mean ``max_pool`` over the cached patches, unit length) of the recordings."""
    rows = list(real_musicnn_by_recording(cache).values())
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def real_musicnn_by_recording(cache: Path = MUSICNN_CACHE) -> dict[str, np.ndarray]:
    """{recording key: its MusiCNN similarity vector (the mean over its patches, as the model stores it)}, from
    the per-patch cache holding the most recordings (``benchmarks/musicnn_budget.py``'s every-patch cache, or
    ``benchmarks/musicnn_patches.py``'s)."""
    from navembed_pipeline.lib.models.musicnn.model import SIMILARITY_LAYER

    folders = sorted(cache.glob("MSD_musicnn-*"), key=lambda f: len(list(f.glob("*.npz"))))
    out = {}
    for path in sorted(glob.glob(str(folders[-1] / "*.npz"))) if folders else []:
        with np.load(path) as stored:
            vector = stored[SIMILARITY_LAYER].mean(axis=0)
        out[Path(path).stem] = (vector / np.linalg.norm(vector)).astype(np.float32)
    return out


def samplers() -> dict[str, tuple]:
    """{model: (draw, where its vectors come from)}. With both models' real vectors cached for the same
    recordings, one joint Gaussian is fitted to them side by side, so a generated track's dsp and MusiCNN
    vectors agree as a real track's do (``ann_scale.joint_samplers``); otherwise one Gaussian per model."""
    dsp, musicnn = real_dsp_by_recording(), real_musicnn_by_recording()
    both = sorted(set(dsp) & set(musicnn))
    if len(both) >= 50:
        draws = joint_samplers({"dsp": np.stack([dsp[k] for k in both]),
                                "musicnn": np.stack([musicnn[k] for k in both])}, seed=1)
        return {m: (draw, f"one Gaussian fitted to {len(both)} recordings' real dsp and MusiCNN vectors side by "
                    f"side ({m}'s part)")
                for m, draw in draws.items()}
    out = {}
    for model, found, dim in (("dsp", dsp, 273), ("musicnn", musicnn, 753)):
        if len(found) >= 50:
            real = np.stack(list(found.values()))
            out[model] = (fitted_sampler(real, seed=len(model)), f"a Gaussian fitted to {len(real)} real {model} vectors")
        else:
            out[model] = (clustered_sampler(dim, seed=len(model)), f"clustered random {dim}-d (no real {model} cached)")
    return out


def track_id(i: int) -> str:
    return f"t{i:07d}"


def write_library(work: Path, size: int, draws: dict) -> list[str]:
    """Every model's snapshot and the Navidrome catalog of ``size`` tracks under ``work``; report lines."""
    from benchmarks.recommend_latency import catalog_db

    lines = []
    ids = [track_id(i) for i in range(size)]
    for model, (draw, source) in draws.items():
        began = time.perf_counter()
        field = FieldVectors(model, "embedding", ids, np.ones(size, dtype=np.int64), draw(size), copy=False)
        built = time.perf_counter() - began
        began = time.perf_counter()
        write_snapshot(work / "snapshots", signature(size), field)
        lines.append(f"  {size:>8} {model}: {field.dimension}-d from {source}; built (normalise, index "
                     f"{'faiss' if field.ann else 'none'}, calibrate) in {built:.0f} s, snapshot written in "
                     f"{time.perf_counter() - began:.0f} s (straight to the snapshot format, not through Milvus Lite)")
        del field
    for chosen in MODEL_SETS:  # the joined index of fused model sets (lib/recommend/joint.py), as the API writes it
        if len(chosen) > 1 and set(chosen) <= set(draws):
            fields = [read_snapshot(work / "snapshots", m, "embedding", signature(size)) for m in chosen]
            began = time.perf_counter()
            joint = build_joint(fields)
            built = time.perf_counter() - began
            save_joint(work / "snapshots", joint, [signature(size)] * len(fields))
            lines.append(f"  {size:>8} {'+'.join(chosen)} joined: {joint.vectors.dimension}-d, "
                         f"{describe(joint.vectors.ann) if joint.vectors.ann else 'exact'}, built in {built:.0f} s")
            del fields, joint
    began = time.perf_counter()
    catalog_db(work / "navidrome.db", size)
    lines.append(f"  {size:>8} Navidrome catalog written in {time.perf_counter() - began:.0f} s")
    return lines


def measure(work: Path, size: int, models: tuple[str, ...], queries: int) -> dict:
    """One model set in a fresh process (``--serve``); its JSON answer."""
    command = [sys.executable, "-m", "benchmarks.recommend_scale", "--serve", str(work), "--size", str(size),
               "--models", ",".join(models), "--queries", str(queries)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_mb() -> dict[str, float]:
    status = {line.split(":")[0]: line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
              if line.startswith(("VmRSS", "RssAnon", "RssFile"))}
    return {key: round(int(value) / 1024) for key, value in status.items()}


def serve(work: Path, size: int, models: tuple[str, ...], queries: int) -> dict:
    """What a restarted API does, timed: map the snapshots, answer the plugin's calls."""
    from navembed_pipeline.lib.library import NavidromeLibrary

    began = time.perf_counter()
    cpu = time.process_time()
    fields = [read_snapshot(work / "snapshots", model, "embedding", signature(size)) for model in models]
    library = NavidromeLibrary(work / "navidrome.db")
    catalog = TrackCatalog(library.get, library.db_path, columns=library.track_columns)
    ready = time.perf_counter() - began  # the API answers from here (fused: each model's shortlist)
    ready_cpu = time.process_time() - cpu
    began = time.perf_counter()  # the API maps the joined copy on a thread (lib/recommend/joint.py's JointKeeper)
    joint = load_joint(work / "snapshots", fields, [signature(size)] * len(fields)) if len(fields) > 1 else None
    joined_s = time.perf_counter() - began
    engine = Recommender(StaticVectors(fields, joints=[joint] if joint else [], joined=joint is not None), catalog,
                         default_models=models)
    sonic = SonicService(engine, library.tracks)
    began = time.perf_counter()
    catalog.table(wait=True)  # the API builds it in the background; requests read tracks until it is there
    table_s = time.perf_counter() - began
    warm_memory = memory_mb()
    seeds = [track_id(int(i)) for i in np.random.default_rng(11).integers(0, size, 2 * queries + 2)]
    began = time.perf_counter()
    sonic.similar_tracks(seeds[-1], 100, eliminate_duplicates=True, within_radius=True, details=False)
    first_ms = 1000 * (time.perf_counter() - began)
    began = time.perf_counter()
    artists = len(sonic.artists())
    artists_s = time.perf_counter() - began
    exact = [FieldVectors.restore(f.model, f.field, f.track_ids, f.row_track, f.rows, f.norms, ann=None,
                                  calibration=f.calibration) for f in fields]
    exact_sonic = truth_service(exact, library, size)
    artist_ids = list(sonic.artists().artists)
    calls = {  # as the plugin's routes call them (navembed_api/routes/plugin.py: details=False)
        "similar_tracks": lambda q: sonic.similar_tracks(seeds[q], 100, eliminate_duplicates=True, within_radius=True,
                                                         details=False),
        "find_path": lambda q: sonic.path(seeds[q], seeds[q + queries], 25, details=False),
        "similar_artists": lambda q: sonic.similar_artists(artist_ids[q * 37 % len(artist_ids)], 10),
    }
    timings: dict = {}
    answers = {}
    for name, call in calls.items():
        call(0)
        wall, cpu_ms = [], []
        for q in range(1, queries + 1):
            began, cpu = time.perf_counter(), time.process_time()
            answer = call(q)
            wall.append(1000 * (time.perf_counter() - began))
            cpu_ms.append(1000 * (time.process_time() - cpu))
            if name == "similar_tracks":
                answers[q] = [n.track.id for n in answer[:RECALL_AT]]
        timings[name] = {"p50_ms": round(float(np.median(wall)), 1), "p95_ms": round(float(np.percentile(wall, 95)), 1),
                         "cpu_p50_ms": round(float(np.median(cpu_ms)), 1),
                         "cpu_p95_ms": round(float(np.percentile(cpu_ms, 95)), 1)}
    after_memory = memory_mb()  # before the exact searches below touch every mapped row
    recalls, truths = [], {}
    for q, got in answers.items():
        truth = exact_sonic.similar_tracks(seeds[q], 100, eliminate_duplicates=True, within_radius=True, details=False)
        truths[q] = want = {n.track.id for n in truth[:RECALL_AT]}
        recalls.append(len(want & set(got)) / max(len(want), 1))
    every = shortlist_recall(exact, library, seeds, truths, models) if len(models) > 1 else None
    index = {f.model: describe(f.ann) for f in fields}
    if joint is not None:
        index["joined"] = f"{describe(joint.vectors.ann)}, {len(joint.vectors)} tracks"
    carry = reload_after_a_run(fields, library, seeds, queries, joint) if fields[0].ann is not None else None
    return {"carry": carry, "size": size, "models": list(models), "ready_s": round(ready, 2), "ready_cpu_s": round(ready_cpu, 2),
            "joined_s": round(joined_s, 2) if joint is not None else None,
            "track_table_s": round(table_s, 1), "first_call_ms": round(first_ms, 1), "artists": artists, "artist_index_s": round(artists_s, 1),
            "rss_warm_mb": warm_memory, "rss_after_mb": after_memory, "timings": timings, "index": index,
            "recall_mean": round(float(np.mean(recalls)), 4), "recall_worst": round(float(np.min(recalls)), 3),
            "every_track": every}


def truth_service(exact: list, library, size: int) -> SonicService:
    """The exact answers recall is measured against: one model, the same call searched exactly; fused models,
    the call that scores *every* track (no shortlist, no joined index: ``min_candidates`` = the library)."""
    catalog = TrackCatalog(library.get, library.db_path, columns=library.track_columns)
    fused = len(exact) > 1
    return SonicService(Recommender(StaticVectors(exact, joined=False), catalog,
                                    default_models=tuple(f.model for f in exact),
                                    min_candidates=size if fused else MIN_CANDIDATES), library.tracks)


def shortlist_recall(exact: list, library, seeds: list[str], truths: dict, models: tuple[str, ...]) -> dict:
    """Fused models, the way searched before the joined index (``lib/recommend/joint.py``): each model's
    shortlist of its ``MIN_CANDIDATES`` nearest tracks, searched exactly, fused; its recall@50 against
    scoring every track (``truths``). What the joined index is there to fix."""
    catalog = TrackCatalog(library.get, library.db_path, columns=library.track_columns)
    catalog.table(wait=True)
    shortlist = SonicService(Recommender(StaticVectors(exact, joined=False), catalog, default_models=models),
                             library.tracks)
    found = []
    for q in list(truths)[:EVERY_TRACK_QUERIES]:
        short = {n.track.id for n in shortlist.similar_tracks(seeds[q], 100, eliminate_duplicates=True,
                                                              within_radius=True, details=False)[:RECALL_AT]}
        found.append(len(truths[q] & short) / max(len(truths[q]), 1))
    return {"queries": len(found), "shortlists_exact_mean": round(float(np.mean(found)), 4),
            "shortlists_exact_worst": round(float(np.min(found)), 3)}


def reload_after_a_run(fields: list, library, seeds: list[str], queries: int, joint=None) -> dict:
    """The reload after a run that re-embedded ``CARRY_SHARE`` of the tracks (new vectors for them in the first
    model): how long the new copy takes with the index carried over (``ann.AnnIndex.carried``; a full build
    is the ``built`` time of ``write_library``), and the plugin's ``similar_tracks`` on it with its recall."""

    first = fields[0]
    size = len(first.track_ids)
    rows = np.array(first.rows)  # the store's scan of the same field after the run
    altered = np.random.default_rng(5).choice(size, int(CARRY_SHARE * size), replace=False)
    rows[altered] = samplers()[first.model][0](len(altered))
    began, cpu = time.perf_counter(), time.process_time()
    new = FieldVectors(first.model, first.field, list(first.track_ids), np.ones(size, dtype=np.int64), rows,
                       copy=False, previous=first)
    served = [new, *fields[1:]]
    joined = build_joint(served, previous=joint) if joint is not None else None  # carried over as the API's keeper does
    reload_s, reload_cpu = time.perf_counter() - began, time.process_time() - cpu
    catalog = TrackCatalog(library.get, library.db_path, columns=library.track_columns)
    catalog.table(wait=True)
    sonic = SonicService(Recommender(StaticVectors(served, joints=[joined] if joined else [], joined=joined is not None),
                                     catalog, default_models=tuple(f.model for f in served)), library.tracks)
    exact = [FieldVectors.restore(f.model, f.field, f.track_ids, f.row_track, f.rows, f.norms, ann=None,
                                  calibration=f.calibration) for f in served]
    exact_sonic = truth_service(exact, library, size)
    # queries from the re-embedded tracks (their rows are outside the index) and from the rest
    asked = [first.track_ids[int(i)] for i in altered[:queries // 2]] + seeds[:queries - queries // 2]
    wall, recalls = [], []
    sonic.similar_tracks(asked[0], 100, eliminate_duplicates=True, within_radius=True, details=False)
    for seed in asked:
        began = time.perf_counter()
        answer = sonic.similar_tracks(seed, 100, eliminate_duplicates=True, within_radius=True, details=False)
        wall.append(1000 * (time.perf_counter() - began))
        truth = exact_sonic.similar_tracks(seed, 100, eliminate_duplicates=True, within_radius=True, details=False)
        want = {n.track.id for n in truth[:RECALL_AT]}
        recalls.append(len(want & {n.track.id for n in answer[:RECALL_AT]}) / max(len(want), 1))
    return {"share": CARRY_SHARE, "carried": new.ann is not None and new.ann.labels is not None,
            "joined_carried": None if joined is None else joined.vectors.ann is not None and joined.vectors.ann.labels is not None,
            "reload_s": round(reload_s, 1), "reload_cpu_s": round(reload_cpu, 1),
            "p50_ms": round(float(np.median(wall)), 1), "p95_ms": round(float(np.percentile(wall, 95)), 1),
            "recall_mean": round(float(np.mean(recalls)), 4), "recall_worst": round(float(np.min(recalls)), 3)}


def report(result: dict) -> list[str]:
    models = "+".join(result["models"])
    warm, after = result["rss_warm_mb"], result["rss_after_mb"]
    lines = [f"  {result['size']:>8} {models:<12} ready from the snapshot in {result['ready_s']:.1f} s "
             f"(CPU {result['ready_cpu_s']:.1f} s)"
             + (f", its joined index mapped {result['joined_s']:.1f} s after (shortlists answer meanwhile)"
                if result.get("joined_s") is not None else "")
             + f"; first similar_tracks {result['first_call_ms']:.0f} ms; "
             f"track table {result.get('track_table_s', 0):.1f} s and artist index ({result['artists']} artists) "
             f"{result['artist_index_s']:.1f} s after; index "
             + ", ".join(f"{m}: {i}" for m, i in result["index"].items()),
             f"  {result['size']:>8} {models:<12} RSS after warm-up {warm.get('VmRSS')} MB (anon {warm.get('RssAnon')}, "
             f"mapped files {warm.get('RssFile')}); after the queries {after.get('VmRSS')} MB "
             f"(anon {after.get('RssAnon')}, mapped files {after.get('RssFile')})"]
    carry = result.get("carry")
    if carry:
        lines.append(f"  {result['size']:>8} {models:<12} after a run that re-embedded {carry['share']:.0%} of the "
                     f"tracks: reload {'carrying the index over' if carry['carried'] else 'rebuilding the index'} "
                     f"in {carry['reload_s']:.1f} s (CPU {carry['reload_cpu_s']:.1f} s); similar_tracks p50/p95 "
                     f"{carry['p50_ms']:.1f} / {carry['p95_ms']:.1f} ms, recall@{RECALL_AT} mean "
                     f"{carry['recall_mean']:.3f}, worst {carry['recall_worst']:.2f}")
    every = result.get("every_track")
    if every:
        lines.append(f"  {result['size']:>8} {models:<12} as searched before the joined index (each model's shortlist "
                     f"of {MIN_CANDIDATES}, searched exactly), against scoring every track ({every['queries']} queries): "
                     f"recall@{RECALL_AT} mean {every['shortlists_exact_mean']:.3f}, worst "
                     f"{every['shortlists_exact_worst']:.2f}")
    truth = "scoring every track" if len(result["models"]) > 1 else "exact"
    for name, timing in result["timings"].items():
        recall = (f"   recall@{RECALL_AT} vs {truth}: mean {result['recall_mean']:.3f}, worst {result['recall_worst']:.2f}"
                  if name == "similar_tracks" else "")
        lines.append(f"  {result['size']:>8} {models:<12} plugin {name:<16} p50/p95 {timing['p50_ms']:7.1f} "
                     f"{timing['p95_ms']:7.1f} ms (CPU {timing['cpu_p50_ms']:.1f} / {timing['cpu_p95_ms']:.1f} ms){recall}")
    return lines


def run(sizes: list[int], queries: int, work: Path, results: dict, models: tuple[str, ...] = ("dsp", "musicnn")) -> None:
    """Write each size's library, then measure each model set (dsp; dsp + musicnn when ``models`` has it) in a
    fresh process; prints as it goes."""
    draws = {model: draw for model, draw in samplers().items() if model in models}
    began = time.perf_counter()
    print("Snapshot path (vectors generated in the real vectors' distribution and written straight to the "
          "snapshot format; each model set measured in a fresh process):", flush=True)
    for size in sizes:
        folder = work / f"scale-{size}"
        for line in write_library(folder, size, draws):
            print(line, flush=True)
        for chosen in MODEL_SETS:
            if not set(chosen) <= set(draws):
                continue
            result = measure(folder, size, chosen, queries)
            results.setdefault(str(size), {})["+".join(chosen)] = result
            for line in report(result):
                print(line, flush=True)
        shutil.rmtree(folder, ignore_errors=True)  # a million tracks' snapshots are gigabytes
        print(f"  {size:>8} measured in {time.perf_counter() - began:.0f} s so far", flush=True)
    for line in summary(results):
        print(line, flush=True)


def summary(results: dict) -> list[str]:
    """One line per size and model set: the plugin's similar_tracks next to its recall, the ready time and RSS."""
    lines = ["Summary (plugin similar_tracks n=100, duplicates eliminated, radius on; vectors generated straight "
             "into the snapshot format):",
             f"  {'tracks':>8} {'models':<12} {'p50 / p95 ms':>15} {'CPU p50 / p95':>15} {'recall@50 mean / worst':>23} "
             f"{'ready s':>8} {'RSS warm / after MB':>20}"]
    for size, sets in results.items():
        for models, result in sets.items():
            timing = result["timings"]["similar_tracks"]
            lines.append(f"  {size:>8} {models:<12} {timing['p50_ms']:>7.1f} / {timing['p95_ms']:<5.1f} "
                         f"{timing['cpu_p50_ms']:>7.1f} / {timing['cpu_p95_ms']:<5.1f} "
                         f"{result['recall_mean']:>13.3f} / {result['recall_worst']:<7.2f} {result['ready_s']:>8.1f} "
                         f"{result['rss_warm_mb'].get('VmRSS'):>10} / {result['rss_after_mb'].get('VmRSS')}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=Path, required=True, help="a folder written by write_library")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--models", default="dsp")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    single_threaded_blas()  # as the API process does (navembed_api.main.serve)
    print(json.dumps(serve(args.serve, args.size, tuple(args.models.split(",")), args.queries)))


if __name__ == "__main__":
    main()
