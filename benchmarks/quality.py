"""Quality on real music: duplicates, separability and a retrieval proxy, for every method side by side.

Material (``benchmarks/recordings.py``: freely licensed recordings from Debian's archive, the recipe in
the repo, the audio in a cache): the 3-7-minute recordings are the *library*; each gets near-copies
derived with FFmpeg through PyAV (``benchmarks/near_copies.py``: 96 kbps MP3, first 3 s and 10 s
trimmed, -6 dB, 22.05 kHz, leading silence, end trimmed). Every other recording is a *distinct
song* uploaded against that library.

Reported per method (dsp v1, dsp v2 raw, dsp v2 with the library's ``LibraryStats``, bliss-audio,
Chromaprint), in one table:

- duplicate precision / recall and distinct songs refused, at the settings the upload path ships
  (Chromaprint: ``fingerprints.is_duplicate``; embeddings: the upload's similarity threshold);
- ROC AUC of near-copy pairs (copy, its original) against pairs of different recordings;
- same-album precision@5 over all recordings (albums: see ``recordings.py``): of each recording's
  five nearest other recordings, the share from its own album; and the same among the *held-out*
  albums only (those dsp v2's reference and weights were not measured on).

``--quick`` runs the same code in seconds on generated audio (styles as albums), without downloads.
Computed vectors and fingerprints are cached per file under ``--cache`` (reruns are fast).
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import near_copies
from benchmarks.quality_measures import TOP_K, album_shares, paired_difference, precision_at_k, roc_auc
from benchmarks.quality_methods import Methods, fit_dsp_reference
from benchmarks.recordings import DEFAULT_CACHE, HELD_OUT, real_recordings

LIBRARY_SECONDS = (180.0, 420.0)
MIN_SECONDS = 30.0
COPY_VARIANTS = ("mp3_96k", "trim_3s", "trim_10s", "gain_-6db", "resample_22k", "silence_5s")
COLUMNS = ("dsp_v1", "dsp_v2", "dsp_v2_stats", "bliss", "chromaprint")


@dataclass(frozen=True)
class Item:
    """One file of the evaluation: a recording (``source`` None) or a near-copy of recording ``source``."""

    path: Path
    album: str
    source: int | None = None
    variant: str = ""
    original: Path | None = None  # set while a copy is not derived yet (see ``materialise``)
    held_out: bool = False  # an album dsp v2 was not tuned on (``recordings.HELD_OUT``)


def real_material(recordings_dir: Path, cache: Path, *, per_album: int) -> tuple[list[Item], list[Item]]:
    """Recordings (library first, then distinct songs) and the near-copies of the library ones.

    The library takes up to ``per_album`` 3-7-minute recordings of each album (deriving and
    analysing every copy costs ~10 s of CPU per copy; the distinct songs are all the others).
    """
    found = real_recordings(recordings_dir, min_seconds=MIN_SECONDS)
    library, taken = [], {}
    for r in found:
        if LIBRARY_SECONDS[0] <= r.duration_seconds <= LIBRARY_SECONDS[1] and taken.get(r.album, 0) < per_album:
            library.append(r)
            taken[r.album] = taken.get(r.album, 0) + 1
    others = [r for r in found if r not in library]
    recordings = [Item(r.path, r.album, held_out=r.package in HELD_OUT) for r in library + others]
    copies = []
    for index, r in enumerate(library):
        out_dir = cache / "copies" / hashlib.sha1(str(r.path.resolve()).encode()).hexdigest()[:12]
        copies += [Item(out_dir, r.album, index, variant, original=r.path) for variant in COPY_VARIANTS]
    return recordings, copies


def materialise(item: Item) -> Item:
    """A copy still to be derived (``original`` set, ``path`` its folder) as a written file."""
    if item.original is None:
        return item
    existing = sorted(item.path.glob(f"{item.original.stem}.{item.variant}.*"))
    if existing:
        path = existing[0]
    else:  # written aside, then moved: an interrupted run leaves no truncated copy behind
        written = near_copies.derive(item.original, item.variant, item.path / f"partial-{os.getpid()}")
        path = written.replace(item.path / written.name)
    return Item(path, item.album, item.source, item.variant, held_out=item.held_out)


def quick_material(work: Path) -> tuple[list[Item], list[Item], int]:
    """Generated songs: three styles as albums, three songs each; copies of the first of each."""
    from navembed_pipeline.lib.library import write_audio
    from navembed_pipeline.sample_data.synth import render

    recordings = [Item(write_audio(work / f"{style}{seed}.ogg", render(style, seconds=24, seed=seed), 44100), style)
                  for style in ("piano", "drums", "chords") for seed in (1, 2, 3)]
    library = recordings[::3]
    ordered = library + [r for r in recordings if r not in library]
    copies = [Item(near_copies.derive(r.path, variant, work / "copies"), r.album, i, variant)
              for i, r in enumerate(library) for variant in ("mp3_96k", "gain_-6db")]
    return ordered, copies, len(library)


def scorers(computed: dict[Path, dict[str, np.ndarray]], library: list[Path]) -> dict:
    """Per column: (rows -> representation matrix, pairwise score function)."""
    from navembed_pipeline.lib.duplicates import chromaprint as fingerprints
    from navembed_pipeline.lib.models.dsp import weighted_vector
    from navembed_pipeline.lib.recommend import LibraryStats

    def vectors(method, transform=lambda v: v):
        return lambda paths: transform(np.stack([computed[p][method] for p in paths]))

    stats = LibraryStats.fit(np.stack([weighted_vector(computed[p]["dsp_v2_raw"]) for p in library]))
    cosine = lambda a, b: a @ b.T  # noqa: E731
    return {
        "dsp_v1": (vectors("dsp_v1"), cosine),
        "dsp_v2": (vectors("dsp_v2_raw", weighted_vector), cosine),
        "dsp_v2_stats": (vectors("dsp_v2_raw", lambda raw: stats.apply(weighted_vector(raw))), cosine),
        "bliss": (vectors("bliss"), lambda a, b: -np.linalg.norm(a[:, None] - b[None], axis=-1)),
        "chromaprint": (lambda paths: [computed[p]["chromaprint"] for p in paths],
                        lambda a, b: np.array([[fingerprints.match(x, y).score for y in b] for x in a])),
    }


def shipped_embedding_threshold() -> tuple[float, str]:
    """The raw cosine the upload path's dsp embedding fallback needs at least (``RecordingIdentity``: its
    cosine floor; the calibrated-closeness part of the rule is measured in ``benchmarks/same_recording.py``)."""
    from navembed_pipeline.lib.recommend import COPY_SIMILARITY

    return COPY_SIMILARITY["dsp"].cosine, "lib.recommend.COPY_SIMILARITY['dsp'].cosine (the identity's cosine floor)"


def duplicates(column: str, represent, score, recordings: list[Item], copies: list[Item], n_library: int,
               threshold: float) -> dict[str, float] | None:
    """Upload every copy and every distinct song against the library; count the duplicate claims."""
    from navembed_pipeline.lib.duplicates import chromaprint as fingerprints

    if column == "bliss":
        return None  # bliss has no duplicate setting to ship
    library = [r.path for r in recordings[:n_library]]
    queries = copies + recordings[n_library:]
    lib_rep, query_rep = represent(library), represent([q.path for q in queries])
    claims = []
    for i, query in enumerate(queries):
        if column == "chromaprint":
            found = [fingerprints.match(lib, query_rep[i]) for lib in lib_rep]
            best = int(np.argmax([f.score for f in found]))
            claimed = fingerprints.is_duplicate(found[best])
        else:
            row = score(query_rep[i : i + 1], lib_rep)[0]
            best = int(np.argmax(row))
            claimed = bool(row[best] >= threshold)
        claims.append((claimed, query.source is not None and best == query.source, query.source is None))
    made = [c for c in claims if c[0]]
    correct = sum(1 for c in made if c[1])
    return {"precision": correct / len(made) if made else 1.0, "recall": correct / len(copies),
            "distinct_refused": sum(1 for c in made if c[2]), "distinct": len(queries) - len(copies),
            "claims": len(made)}


_WORKER: Methods | None = None


def _prepare(cache: Path, item: Item) -> None:
    """In a worker process: derive the copy if needed and compute (cache) every method for it."""
    global _WORKER
    if _WORKER is None:
        import torch

        torch.set_num_threads(1)
        _WORKER = Methods(cache)
    _WORKER.compute(materialise(item).path)


def prefill(items: list[Item], cache: Path, jobs: int) -> None:
    """Fill the cache with ``jobs`` processes (recordings first); the evaluation then reads it."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(jobs) as pool:
        for done, _ in enumerate(pool.map(partial(_prepare, cache), items, chunksize=1), 1):
            if done % 10 == 0:
                print(f"  prepared {done}/{len(items)} files", flush=True)


def evaluate(recordings: list[Item], copies: list[Item], n_library: int, methods: Methods) -> dict:
    """Compute (or read from the cache) every file once, then score every column."""
    started = time.perf_counter()
    computed: dict[Path, dict[str, np.ndarray]] = {}
    failures: dict[str, int] = {}
    copies = list(copies)
    for index, item in enumerate(recordings + copies):
        if index >= len(recordings):  # derive copies only after every recording is in
            item = copies[index - len(recordings)] = materialise(item)
        result = methods.compute(item.path)
        computed[item.path] = result.values
        for method, error in result.failures.items():
            failures[method] = failures.get(method, 0) + 1
            print(f"  {item.path.name}: {method} failed: {error}", file=sys.stderr)
        if index % 25 == 0:
            print(f"  computed {index + 1}/{len(recordings) + len(copies)} files "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    usable = lambda items: [i for i in items if all(m in computed[i.path] for m in methods.revisions)]  # noqa: E731
    recordings, copies = usable(recordings), [c for c in usable(copies) if c.source is not None]
    threshold, threshold_source = shipped_embedding_threshold()
    paths, albums = [r.path for r in recordings], [r.album for r in recordings]
    held = [i for i, r in enumerate(recordings) if r.held_out]  # ranked among themselves only
    results, shares = {}, {}
    for column in COLUMNS:
        represent, score = scorers(computed, paths)[column]
        reps = represent(paths)
        pairwise = score(reps, reps)
        different = pairwise[np.triu_indices(len(paths), k=1)]
        near = np.array([score(represent([c.path]), represent([recordings[c.source].path]))[0, 0] for c in copies])
        represent_dup, score_dup = scorers(computed, paths[:n_library])[column]
        shares[column] = album_shares(pairwise, albums)
        results[column] = {
            "roc_auc": roc_auc(near, different),
            "precision_at_5": precision_at_k(pairwise, albums),
            "precision_at_5_held_out": precision_at_k(pairwise[np.ix_(held, held)], [albums[i] for i in held])
            if len(held) > TOP_K else None,
            "near_copy_min": float(near.min()), "different_max": float(different.max()),
            "duplicates": duplicates(column, represent_dup, score_dup, recordings, copies, n_library, threshold),
        }
    return {"recordings": len(recordings), "library": n_library, "copies": len(copies),
            "albums": sorted(set(albums)), "variants": sorted({c.variant for c in copies}),
            "embedding_threshold": threshold, "threshold_source": threshold_source,
            "failures": failures, "seconds": round(time.perf_counter() - started, 1), "results": results,
            "dsp_v2_minus": {other: paired_difference(shares["dsp_v2"], shares[other]) for other in ("dsp_v1", "bliss")}}


def table(report: dict) -> list[str]:
    """One row per measure, one column per method."""
    lines = [f"Quality on {'generated' if report.get('quick') else 'real'} recordings: {report['recordings']} "
             f"recordings ({len(report['albums'])} albums), library {report['library']}, {report['copies']} "
             f"near-copies ({', '.join(report['variants'])})",
             f"  {'':<30}" + "".join(f"{c:>14}" for c in COLUMNS)]
    rows = {
        "duplicate precision": lambda r: r["duplicates"] and f"{r['duplicates']['precision']:.3f}",
        "duplicate recall": lambda r: r["duplicates"] and f"{r['duplicates']['recall']:.3f}",
        "distinct songs refused": lambda r: r["duplicates"] and
        f"{r['duplicates']['distinct_refused']}/{r['duplicates']['distinct']}",
        "ROC AUC near-copy vs distinct": lambda r: f"{r['roc_auc']:.4f}",
        "same-album precision@5": lambda r: f"{r['precision_at_5']:.3f}",
        "  held-out albums only": lambda r: r.get("precision_at_5_held_out") and f"{r['precision_at_5_held_out']:.3f}",
        "min near-copy / max distinct": lambda r: f"{r['near_copy_min']:.3f}/{r['different_max']:.3f}",
    }
    for label, cell in rows.items():
        lines.append(f"  {label:<30}" + "".join(f"{cell(report['results'][c]) or '-':>14}" for c in COLUMNS))
    for other, (mean, low, high) in report.get("dsp_v2_minus", {}).items():
        lines.append(f"  precision@5 dsp_v2 - {other}: {mean:+.3f} (95% bootstrap interval over the "
                     f"{report['recordings']} queries {low:+.3f} .. {high:+.3f})")
    lines.append(f"  (duplicates at the shipped settings: Chromaprint fingerprints.is_duplicate; embeddings "
                 f"cosine >= {report['embedding_threshold']:g} from {report['threshold_source']}; bliss: "
                 "euclidean distance, no duplicate setting)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="generated audio, seconds, no downloads")
    parser.add_argument("--recordings", type=Path, default=DEFAULT_CACHE, help="recordings cache directory")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE.parent / "quality",
                        help="where near-copies and computed vectors are kept between runs")
    parser.add_argument("--per-album", type=int, default=6, help="library recordings (with copies) per album")
    parser.add_argument("--fit-reference", action="store_true",
                        help="refit dsp v2's reference centre/scale on the tuning albums (then bump dsp.VERSION)")
    parser.add_argument("--jobs", type=int, default=1, help="processes that derive and analyse files")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    with tempfile.TemporaryDirectory(prefix="navembed-quality-") as tmp:
        cache = Path(tmp) if args.quick else args.cache
        if args.quick:
            recordings, copies, n_library = quick_material(Path(tmp))
        else:
            recordings, copies = real_material(args.recordings, cache, per_album=args.per_album)
            n_library = len({c.source for c in copies})
        if args.jobs > 1:
            prefill(recordings + copies, cache, args.jobs)
        methods = Methods(cache)
        if args.fit_reference:
            fit_dsp_reference([r for r in recordings if not r.held_out], methods)  # never the held-out albums
        try:
            report = evaluate(recordings, copies, n_library, methods) | {"quick": args.quick}
        finally:
            methods.close()
    print("\n".join(table(report)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
