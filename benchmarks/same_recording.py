"""The same-recording threshold (``lib/recommend/identity.py``), measured on real copies and real distinct songs.

Material (``benchmarks/recordings.py``: freely licensed recordings from Debian's archive): every
recording's first ``--seconds`` is a library track (the *original*). ``--per-album`` recordings of
each album also get real *copies*, each written through a real encoder and decoded again:

- ``mp3_64k`` (a low-bitrate MP3), ``opus_64k``, ``aac_96k`` (M4A): re-encodes of the original;
- ``clip``: a 12 s excerpt (FLAC) as its own library track, and ``clip_mp3_96k``: its MP3 re-encode,
  a copy of the clip (what a short sample library or a ringtone folder holds; fingerprints cannot
  decide below 10 s of overlap, so such copies rest on the vectors alone).

Pairs: a *copy pair* is (copy, the track it was made from); a *distinct pair* is any two library tracks
(originals and clips) of different recordings, same album and same artist included. Each pair's dsp
cosine is mapped through the library's calibration (``ScoreCalibration`` fitted on every library
track, as ``FieldVectors`` does) to the calibrated closeness the identity threshold is set on
(``identity.closeness``: ``(cos - median) / (1 - median)``); the full calibrated similarity is shown too.

The threshold is *tuned* on the tuning albums (``recordings.TUNING``: pairs whose tracks all come from
them) and *checked* on the held-out albums (``recordings.HELD_OUT``), which the tuning never saw: how
many distinct held-out pairs it would merge, how many held-out copies it would miss. The raw-cosine
0.98 rule it replaces is reported beside it. Vectors are cached per file under ``--cache``.

Run: ``python -m benchmarks.same_recording`` (``--seconds 60 --per-album 2`` by default).
"""

import argparse
import hashlib
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.recordings import DEFAULT_CACHE, HELD_OUT, TUNING, Recording, real_recordings
from navembed_pipeline.lib.library import load_audio, write_audio

RATE = 44100
CLIP = (30.0, 12.0)  # start and length of the clip, seconds
COPIES: dict[str, tuple[str, int]] = {"mp3_64k": (".mp3", 64_000), "opus_64k": (".opus", 64_000),
                                      "aac_96k": (".m4a", 96_000)}
CLIP_COPY = ("clip_mp3_96k", ".mp3", 96_000)
OLD_RAW_COSINE = 0.98  # the rule this replaces (PlaylistRules.duplicate_cosine)
DEFAULT_STORE = Path.home() / ".cache" / "navembed" / "same_recording"


def _key(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


class Embedder:
    """dsp vectors of waves written to real files and decoded again, cached per (file, variant)."""

    def __init__(self, cache: Path) -> None:
        from navembed_pipeline.lib.models.dsp import DspModel

        self.model = DspModel()
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="navembed-same-"))

    def vector(self, recording: Recording, variant: str, seconds: float, *, cached_only: bool = False) -> np.ndarray | None:
        stat = recording.path.stat()
        cached = self.cache / f"{_key(recording.path, stat.st_size, stat.st_mtime, variant, seconds, self.model.variant)}.npy"
        if cached.exists():
            return np.load(cached)
        if cached_only:
            return None
        wave = load_audio(recording.path, RATE, duration_seconds=seconds)
        if variant.startswith("clip"):
            start = CLIP[0] if len(wave) >= RATE * (CLIP[0] + CLIP[1]) else 0.0
            wave = wave[int(start * RATE): int((start + CLIP[1]) * RATE)]
            suffix, rate = (".flac", None) if variant == "clip" else CLIP_COPY[1:]
        elif variant == "original":
            suffix, rate = None, None
        else:
            suffix, rate = COPIES[variant]
        if suffix is None:
            decoded = load_audio(recording.path, self.model.sample_rate, duration_seconds=seconds)
        else:
            written = write_audio(self.work / f"x{suffix}", wave, RATE, bit_rate=rate)
            decoded = load_audio(written, self.model.sample_rate)
        vector = np.asarray(self.model.embed([decoded])[0].embedding, dtype=np.float32)
        partial = cached.with_name(f"partial-{os.getpid()}.npy")
        np.save(partial, vector)
        partial.replace(cached)  # a parallel reader never sees half a file
        return vector


_EMBEDDER: "Embedder | None" = None


def _vector(cache: Path, seconds: float, job: tuple[Recording, str]) -> np.ndarray:
    global _EMBEDDER
    if _EMBEDDER is None:
        import torch

        torch.set_num_threads(1)
        _EMBEDDER = Embedder(cache)
    return _EMBEDDER.vector(job[0], job[1], seconds)


def measure(recordings: list[Recording], copied: set[Path], seconds: float, cache: Path, jobs: int,
            cached_only: bool = False) -> dict:
    """Vectors of every library track and copy: {(index, variant): vector} (copies first, ``jobs`` processes)."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    keys = [(i, v) for i, r in enumerate(recordings) if r.path in copied
            for v in ("original", *COPIES, "clip", CLIP_COPY[0])]
    keys += [(i, "original") for i, r in enumerate(recordings) if r.path not in copied]
    vectors: dict[tuple[int, str], np.ndarray] = {}
    if cached_only:  # what an earlier (interrupted) run computed; a copy counts only with its original
        embedder = Embedder(cache)
        found = {k: v for k in keys if (v := embedder.vector(recordings[k[0]], k[1], seconds, cached_only=True)) is not None}
        base = {i for i, v in found if v in ("original", "clip")}
        return {k: v for k, v in found.items() if k[0] in base and (k[1] in ("original", "clip")
                                                                      or (k[0], "original") in found)}
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs) as pool:
        work = pool.map(partial(_vector, cache, seconds), [(recordings[i], v) for i, v in keys], chunksize=1)
        for done, (key, vector) in enumerate(zip(keys, work, strict=True), 1):
            vectors[key] = vector
            if done % 20 == 0:
                print(f"  {done}/{len(keys)} files ({time.perf_counter() - started:.0f} s)", flush=True)
    return vectors


def pairs(recordings: list[Recording], vectors: dict) -> tuple[list[dict], list[dict]]:
    """Copy pairs and distinct pairs with their raw cosines (calibrated later)."""
    unit = {k: v / max(float(np.linalg.norm(v)), 1e-12) for k, v in vectors.items()}
    library = [k for k in unit if k[1] in ("original", "clip")]
    copies = []
    for (i, variant), v in unit.items():
        if variant in COPIES:
            copies.append({"a": (i, "original"), "b": (i, variant), "variant": variant})
        elif variant == CLIP_COPY[0]:
            copies.append({"a": (i, "clip"), "b": (i, variant), "variant": variant})
    for c in copies:
        c["cosine"] = float(unit[c["a"]] @ unit[c["b"]])
    matrix = np.stack([unit[k] for k in library])
    cos = matrix @ matrix.T
    distinct = []
    for x, y in itertools.combinations(range(len(library)), 2):
        a, b = library[x], library[y]
        if a[0] == b[0]:
            continue  # a clip and its own recording: neither a copy nor a distinct song
        ra, rb = recordings[a[0]], recordings[b[0]]
        kind = "same album" if ra.album == rb.album else "different album"
        distinct.append({"a": a, "b": b, "cosine": float(cos[x, y]), "kind": kind})
    return copies, distinct


def split_of(recordings: list[Recording], pair: dict) -> str | None:
    packages = {recordings[pair["a"][0]].package, recordings[pair["b"][0]].package}
    if packages <= set(TUNING):
        return "tuning"
    if packages <= set(HELD_OUT):
        return "held-out"
    return None


def choose_threshold(copies: list[float], distinct: list[float]) -> float:
    """Halfway between the highest distinct pair and the lowest copy above it: no distinct pair merged."""
    top = max(distinct)
    above = [c for c in copies if c > top]
    if not above:
        return float(np.nextafter(top, 2.0))
    return round((top + min(above)) / 2, 4)


def cosine_floor(copies: list[float]) -> float:
    """The raw-cosine floor: the lowest copy's cosine, rounded down to 0.005 (no copy below it)."""
    return float(np.floor(min(copies) * 200) / 200)


def report(recordings: list[Recording], vectors: dict) -> dict:
    from navembed_pipeline.lib.recommend import ScoreCalibration

    copies, distinct = pairs(recordings, vectors)
    library = np.stack([vectors[k] for k in vectors if k[1] in ("original", "clip")])
    calibration = ScoreCalibration.fit(library, pairs=20_000, seed=0)
    median = calibration.median
    for p in (*copies, *distinct):
        p["similarity"] = float(np.clip((p["cosine"] - median) / (1 - median), 0.0, 1.0))  # identity.closeness
        p["calibrated_similarity"] = float(calibration.similarity(p["cosine"]))
        p["split"] = split_of(recordings, p)
    name = lambda k: f"{recordings[k[0]].album}/{recordings[k[0]].title} ({k[1]})"  # noqa: E731
    tuning_copies = [c["similarity"] for c in copies if c["split"] == "tuning"]
    tuning_distinct = [d["similarity"] for d in distinct if d["split"] == "tuning"]
    threshold = choose_threshold(tuning_copies, tuning_distinct)
    floor = cosine_floor([c["cosine"] for c in copies if c["split"] == "tuning"])
    same = lambda p: p["similarity"] >= threshold and p["cosine"] >= floor  # noqa: E731 - the identity's rule
    out: dict = {"calibration_median_cosine": calibration.median, "threshold": threshold, "cosine_floor": floor,
                 "splits": {}}
    for split in ("tuning", "held-out"):
        cs = [c for c in copies if c["split"] == split]
        ds = [d for d in distinct if d["split"] == split]
        if not cs or not ds:
            continue
        top = max(ds, key=lambda d: d["similarity"])
        by_variant = {v: min(c["similarity"] for c in cs if c["variant"] == v)
                      for v in dict.fromkeys(c["variant"] for c in cs)}
        out["splits"][split] = {
            "recordings": len({p["a"][0] for p in ds} | {p["b"][0] for p in ds}),
            "copies": len(cs), "distinct_pairs": len(ds),
            "same_album_pairs": sum(d["kind"] == "same album" for d in ds),
            "lowest_copy_by_variant": by_variant,
            "lowest_copy_cosine_by_variant": {v: min(c["cosine"] for c in cs if c["variant"] == v) for v in by_variant},
            "lowest_copy_calibrated_similarity": min(c["calibrated_similarity"] for c in cs),
            "highest_distinct": {"similarity": top["similarity"], "cosine": top["cosine"],
                                 "calibrated_similarity": top["calibrated_similarity"],
                                 "pair": [name(top["a"]), name(top["b"])], "kind": top["kind"]},
            "highest_same_album": max(d["similarity"] for d in ds if d["kind"] == "same album"),
            "merged_distinct": sum(same(d) for d in ds),
            "missed_copies": {v: sum(not same(c) for c in cs if c["variant"] == v) for v in by_variant},
            "old_rule_merged_distinct": sum(d["cosine"] >= OLD_RAW_COSINE for d in ds),
            "old_rule_missed_copies": sum(c["cosine"] < OLD_RAW_COSINE for c in cs),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--cache", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--seconds", type=float, default=60.0, help="each library track: the recording's first N s")
    parser.add_argument("--per-album", type=int, default=2, help="recordings per album that get copies")
    parser.add_argument("--jobs", type=int, default=2, help="processes computing vectors")
    parser.add_argument("--cached-only", action="store_true",
                        help="report on the vectors an earlier run cached (says how many were used)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    recordings = real_recordings(args.recordings, min_seconds=30.0)
    taken: dict[str, int] = {}
    copied = set()
    for r in recordings:
        if taken.get(r.album, 0) < args.per_album and r.duration_seconds >= CLIP[0] + CLIP[1]:
            copied.add(r.path)
            taken[r.album] = taken.get(r.album, 0) + 1
    print(f"{len(recordings)} recordings of {len({r.album for r in recordings})} albums; copies of {len(copied)} "
          f"(tuning packages: {', '.join(TUNING)}; held out: {', '.join(HELD_OUT)})", flush=True)
    vectors = measure(recordings, copied, args.seconds, args.cache, args.jobs, args.cached_only)
    result = report(recordings, vectors)
    used = {i for i, _ in vectors}
    copies_of = {i for i, v in vectors if v in COPIES}
    result["used"] = {"seconds": args.seconds, "per_album": args.per_album, "library_recordings": len(used),
                      "files": len(vectors), "cached_only": args.cached_only,
                      "copied": sorted(f"{recordings[i].album}/{recordings[i].title}" for i in copies_of)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
