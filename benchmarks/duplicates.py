"""Duplicate detection as shipped (Chromaprint index + alignment check) on real recordings.

Every distinct recording is stored as a library track in a ``FingerprintStore``; then

- each *distinct* recording is uploaded against the library without itself: any claim is a distinct
  upload wrongly refused (and a false positive);
- each *near-copy* (``near_copies.VARIANTS``: 96 kbps MP3, trims, gain, leading silence, 22.05 kHz)
  is uploaded against the whole library: it must be claimed a duplicate of its source, and of
  nothing else.

Reported: precision and recall of the claims, distinct uploads refused, the lowest copy score per
variant, the highest score between different recordings, fingerprint cost per track. The library holds
the pipeline's prints (``capped_print``: a track's first two minutes and its length); each query is
made twice: as an upload (the API prints the whole file) and as a library track (a capped print, as a
second copy in the library is matched). ``--whole`` stores whole prints instead (the rule before the cap). The quick
form (``--quick``) uses generated songs and no download. Run: ``python -m benchmarks.duplicates``.
"""

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.near_copies import VARIANTS, derive
from navembed_pipeline.lib.duplicates import (DUPLICATE_SCORE, MIN_OVERLAP_FRACTION, PRINT_SECONDS, FingerprintStore,
                                              capped_print, fingerprint_pcm, match)
from navembed_pipeline.lib.library import load_audio

RATE = 22050  # fingerprints come from the dsp model's decode, as in the pipeline


def sources(args: argparse.Namespace, work: Path) -> list[tuple[str, Path]]:
    """(title, file) of the distinct recordings."""
    if args.quick:
        from navembed_pipeline.lib.library import write_audio
        from navembed_pipeline.sample_data.synth import render

        return [(f"song{seed}", write_audio(work / f"song{seed}.flac",
                                            render("piano", seconds=30, sample_rate=44100, seed=seed), 44100))
                for seed in range(3)]
    from benchmarks.recordings import real_recordings

    found = real_recordings(args.recordings, min_seconds=30.0)
    return [(f"{r.album}/{r.title}", r.path) for r in found]


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="navembed-dups-") as tmp:
        work = Path(tmp)
        songs = sources(args, work)
        copies_dir = args.copies or work / "copies"
        originals, seconds = {}, []
        for title, path in songs:
            wave = load_audio(path, RATE)
            started = time.perf_counter()
            originals[title] = _prints(wave, args.whole)
            seconds.append(time.perf_counter() - started)
        with_copies = songs[:: max(1, len(songs) // args.copied)][: args.copied]
        copies = {}
        for title, path in with_copies:
            for variant in VARIANTS:
                copy = derive(path, variant, copies_dir / title.replace("/", "_"))
                copies[(title, variant)] = _prints(load_audio(copy, RATE), args.whole)
            print(f"  copies of {title} done", flush=True)
        store = FingerprintStore(work / "fingerprints.sqlite")
        for title, prints in originals.items():
            store.put(title, "v1", [(1, title, *prints["library"])])
        result = {"library_prints": "whole" if args.whole else f"capped at {PRINT_SECONDS:.0f} s"}
        for kind in ("upload", "library"):
            result[f"as_{kind}"] = report(store, {k: p[kind] for k, p in originals.items()},
                                          {k: p[kind] for k, p in copies.items()}, seconds)
        return result


def _prints(wave: np.ndarray, whole: bool) -> dict[str, tuple[np.ndarray, float | None]]:
    """A file's print as an upload (whole, its own length) and as a library track (the pipeline's)."""
    upload = (fingerprint_pcm(wave, RATE), None)
    return {"upload": upload, "library": upload if whole else capped_print(wave, RATE)}


def report(store: FingerprintStore, originals: dict, copies: dict, seconds: list[float]) -> dict:
    true_claims = false_claims = missed = refused = 0
    lowest: dict[str, float] = {}
    for (title, variant), (words, length) in copies.items():
        claimed = {d.owner for d in store.duplicates_of(words, seconds=length)}
        true_claims += title in claimed
        missed += title not in claimed
        false_claims += len(claimed - {title})
        source, source_length = originals[title]
        lowest[variant] = min(lowest.get(variant, 1.0),
                              match(source, words, a_seconds=source_length, b_seconds=length).score)
    for title, (words, length) in originals.items():
        claimed = {d.owner for d in store.duplicates_of(words, seconds=length)} - {title}
        refused += bool(claimed)
        false_claims += len(claimed)
    distinct = [match(originals[a][0], originals[b][0], a_seconds=originals[a][1], b_seconds=originals[b][1])
                for a, b in itertools.combinations(originals, 2)]
    comparable = [m.score for m in distinct if m.overlap_fraction >= MIN_OVERLAP_FRACTION]
    claims = true_claims + false_claims
    return {"distinct_recordings": len(originals), "near_copies": len(copies), "threshold": DUPLICATE_SCORE,
            "precision": true_claims / claims if claims else 1.0,
            "recall": true_claims / len(copies) if copies else None,
            "false_claims": false_claims, "missed_copies": missed, "distinct_uploads_refused": refused,
            "lowest_copy_score": {k: round(v, 4) for k, v in sorted(lowest.items())},
            "highest_distinct_score": round(max(comparable, default=0.0), 4),
            "distinct_pairs": len(distinct),
            "fingerprint_seconds_per_track": round(float(np.mean(seconds)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=Path, default=None, help="cache dir of benchmarks/recordings.py")
    parser.add_argument("--copies", type=Path, default=None, help="where derived copies are kept (reused)")
    parser.add_argument("--copied", type=int, default=12, help="recordings to derive near-copies of")
    parser.add_argument("--quick", action="store_true", help="generated songs, no download")
    parser.add_argument("--whole", action="store_true", help="library prints of whole tracks (before the cap)")
    parser.add_argument("--json", type=Path, default=None)
    args, _ = parser.parse_known_args()
    if args.recordings is None:
        from benchmarks.recordings import DEFAULT_CACHE

        args.recordings = DEFAULT_CACHE
    result = measure(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
