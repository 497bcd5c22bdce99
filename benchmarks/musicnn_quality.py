"""MusiCNN on real music: which layer and pooling make the similarity vector, and which dsp + musicnn
fusion to ship, side by side with dsp v2 alone and bliss-audio.

Material: the recordings of ``benchmarks/recordings.py`` (30 s or more; ``HELD_OUT`` albums were
never used for tuning). Measure: same-album precision@5 (``quality_measures``), over all recordings
and over the held-out albums ranked among themselves; 95 % bootstrap intervals (queries resampled)
for the differences against dsp v2.

Candidates for musicnn's vector (``MusicnnPatches``: navembed's decode and PyTorch port, at most
``--patches`` evenly spaced 3-s patches per recording): each layer (penultimate dense, ``max_pool``,
``mean_pool``, taggram) pooled over the patches as the mean or mean and standard deviation
concatenated, then centred or not, then compared by cosine. Centring subtracts a mean vector:
``library`` — the evaluated recordings' own mean (what a service could compute from its library);
``reference`` — the mean of the tuning albums' recordings only (a fixed centre that could ship, as
dsp v2's ``dsp_reference.json`` does; on the held-out albums it is fitted on none of them).

Fusions: dsp v2 (its stored vector, ``dsp.weighted_vector``) and a musicnn candidate, scored the
way the recommender scores one seed track: ``recommend.search.Search`` over ``StaticVectors``
(z-scores of each model's cosines against the library sample, ``fusion.fuse`` with the weights).

``--quick`` runs the same code in seconds on generated audio (styles as albums).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.musicnn_patches import MusicnnPatches
from benchmarks.quality_measures import TOP_K, album_shares, paired_difference
from benchmarks.quality_methods import Methods
from benchmarks.recordings import DEFAULT_CACHE, HELD_OUT, PACKAGES, real_recordings

MIN_SECONDS = 30.0
LAYERS = ("penultimate", "max_pool", "mean_pool", "taggram")
POOLINGS = ("mean", "mean_std")
CENTRINGS = ("none", "library", "reference")
# A stored vector cannot depend on the library it lands in: fusions use these (with ``library`` as well
# where no tuning albums are measured, so no fixed reference can be fitted).
SHIPPABLE_CENTRINGS = ("none", "reference")
FUSION_WEIGHTS = ((0.5, 0.5), (0.67, 0.33), (0.33, 0.67))  # (dsp, musicnn)
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Track:
    """One recording of the evaluation."""

    path: Path
    album: str
    held_out: bool


@dataclass(frozen=True)
class Material:
    """Per track: its dsp v2 vector, its musicnn patches' layers and (when available) bliss's features."""

    tracks: list[Track]
    dsp: np.ndarray
    patches: list[dict[str, np.ndarray]]
    bliss: np.ndarray | None


def pooled(layers: dict[str, np.ndarray], layer: str, pooling: str) -> np.ndarray:
    """One track's vector: the mean over its patches of ``layer``, or mean and std concatenated."""
    rows = np.asarray(layers[layer], np.float64)
    return rows.mean(axis=0) if pooling == "mean" else np.concatenate([rows.mean(axis=0), rows.std(axis=0)])


def candidate(material: Material, chosen: np.ndarray, layer: str, pooling: str, centring: str) -> np.ndarray:
    """The candidate's vectors of the tracks ``chosen`` (indices), centred as ``centring`` says."""
    rows = np.stack([pooled(material.patches[i], layer, pooling) for i in range(len(material.tracks))])
    if centring == "library":
        rows = rows - rows[chosen].mean(axis=0)
    elif centring == "reference":
        rows = rows - rows[tuning_indices(material)].mean(axis=0)
    return rows[chosen]


def tuning_indices(material: Material) -> list[int]:
    """The tracks of the tuning albums (where a fixed ``reference`` centre is fitted)."""
    return [i for i, t in enumerate(material.tracks) if not t.held_out]


def centrings(material: Material) -> tuple[str, ...]:
    """The centrings this material can measure (``reference`` needs tuning albums)."""
    return CENTRINGS if tuning_indices(material) else tuple(c for c in CENTRINGS if c != "reference")


def shipped_vectors(material: Material) -> np.ndarray:
    """Every track's stored ``embedding``: ``musicnn.similarity_vector`` of its patches' layers."""
    from navembed_pipeline.lib.models.musicnn import similarity_vector

    return np.stack([similarity_vector(layers) for layers in material.patches])


def cosine_shares(rows: np.ndarray, albums: list[str]) -> np.ndarray:
    """Per query: the share of its 5 nearest others (cosine) from its own album."""
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return album_shares(unit @ unit.T, albums)


def field(model: str, rows: np.ndarray):
    """``rows`` as the recommender holds one model's vectors (``FieldVectors``; ids are row numbers)."""
    from navembed_pipeline.lib.recommend.vectors import FieldVectors

    return FieldVectors(model, "embedding", [str(i) for i in range(len(rows))], [1] * len(rows), rows)


def fused_shares(fields: dict, weights: dict[str, float], albums: list[str]) -> np.ndarray:
    """Per query: the album share of its 5 best others as the recommender fuses ``fields`` (model →
    ``field(...)``) for one seed track: ``Search.terms`` (weighted z-scores) and ``fusion.fuse``."""
    from navembed_pipeline.lib.recommend.fusion import fuse
    from navembed_pipeline.lib.recommend.index import StaticVectors
    from navembed_pipeline.lib.recommend.search import Search

    ids = [str(i) for i in range(len(albums))]
    total = sum(weights.values())
    search = Search(StaticVectors(fields.values()), {m: w / total for m, w in weights.items()})
    scores = np.empty((len(ids), len(ids)))
    for i, seed in enumerate(ids):
        terms = search.terms(search.track_probes([seed], "seed"), ids, fusion="weighted", rrf_k=60)
        scores[i] = fuse(terms, [], search.weights, strength=0.0).total
    return album_shares(scores, albums)


def evaluate(material: Material, chosen: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query album shares of every column among the tracks ``chosen`` (they are the library)."""
    albums = [material.tracks[i].album for i in chosen]
    dsp = material.dsp[chosen]
    shares = {"dsp_v2": cosine_shares(dsp, albums)}
    dsp_field = field("dsp", dsp)
    if material.bliss is not None:  # bliss's own distance: euclidean on its features
        features = material.bliss[chosen]
        shares["bliss"] = album_shares(-np.linalg.norm(features[:, None] - features[None], axis=-1), albums)
    shipped = shipped_vectors(material)[chosen]  # the port's own ``similarity_vector``, what is stored
    shares["musicnn shipped"] = cosine_shares(shipped, albums)
    shares["fusion shipped (equal weights)"] = fused_shares(
        {"dsp": dsp_field, "musicnn": field("musicnn", shipped)}, {"dsp": 1.0, "musicnn": 1.0}, albums)
    for layer in LAYERS:
        for pooling in POOLINGS:
            for centring in centrings(material):
                rows = candidate(material, chosen, layer, pooling, centring)
                shares[f"musicnn {layer} {pooling} {centring}"] = cosine_shares(rows, albums)
                if centring in SHIPPABLE_CENTRINGS or "reference" not in centrings(material):
                    fields = {"dsp": dsp_field, "musicnn": field("musicnn", rows)}
                    for w_dsp, w_musicnn in FUSION_WEIGHTS:
                        shares[f"fusion {w_dsp:.2f}/{w_musicnn:.2f} {layer} {pooling} {centring}"] = fused_shares(
                            fields, {"dsp": w_dsp, "musicnn": w_musicnn}, albums)
    return shares


def report(material: Material) -> dict:
    """Precision@5 of every column on all tracks and on the held-out albums, and the winners vs dsp v2."""
    every = np.arange(len(material.tracks))
    held = np.asarray([i for i, t in enumerate(material.tracks) if t.held_out], dtype=int)
    sets = {"all": every} | ({"held_out": held} if TOP_K < len(held) < len(every) else {})
    shares = {name: evaluate(material, chosen) for name, chosen in sets.items()}
    columns = list(shares["all"])
    precision = {c: {name: float(s[c].mean()) for name, s in shares.items()} for c in columns}
    # winners chosen on all recordings (the held-out figure of a column chosen on held-out is optimistic)
    best = {f"best {kind}": max((c for c in columns if c.startswith(f"{kind} ") and "shipped" not in c), key=lambda c: precision[c]["all"])
            for kind in ("musicnn", "fusion")} | {"shipped musicnn": "musicnn shipped",
                                                  "shipped fusion": "fusion shipped (equal weights)"}
    versus = {kind: {name: paired_difference(s[column], s["dsp_v2"], resamples=BOOTSTRAP_RESAMPLES)
                     for name, s in shares.items()} for kind, column in best.items()}
    return {"tracks": len(material.tracks), "held_out_tracks": int(len(held)),
            "albums": sorted({t.album for t in material.tracks}),
            "held_out_albums": sorted({t.album for t in material.tracks if t.held_out}),
            "precision_at_5": precision, "best": best, "minus_dsp_v2": versus}


def table(result: dict, *, patches: int, variant: str, quick: bool) -> list[str]:
    """Every column's precision@5, all and held-out, then the winners against dsp v2."""
    sets = [s for s in ("all", "held_out") if s in next(iter(result["precision_at_5"].values()))]
    lines = [f"MusiCNN quality ({variant}, at most {patches} patches per track) on "
             f"{'generated' if quick else 'real'} recordings: {result['tracks']} tracks "
             f"({len(result['albums'])} albums), held out {result['held_out_tracks']} "
             f"({len(result['held_out_albums'])} albums); same-album precision@5",
             f"  {'column':<50}" + "".join(f"{s:>10}" for s in sets)]
    for column, values in result["precision_at_5"].items():
        lines.append(f"  {column:<50}" + "".join(f"{values[s]:>10.3f}" for s in sets))
    for kind, column in result["best"].items():
        for name, (mean, low, high) in result["minus_dsp_v2"][kind].items():
            lines.append(f"  {kind} ({column}) - dsp_v2, {name}: {mean:+.3f} "
                         f"(95% bootstrap interval {low:+.3f} .. {high:+.3f})")
    return lines


def bliss_runs(path: Path) -> bool:
    """Whether bliss-audio analyses a file here (its Rust core can die of an illegal instruction on
    CPUs its wheel was not built for: tried in a child process, so this one survives)."""
    probe = "import sys, bliss_audio; bliss_audio.Song(sys.argv[1]).analysis"
    return subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True).returncode == 0


def gather(tracks: list[Track], cache: Path, models_dir: Path | None, *, patches: int, variant: str) -> Material:
    """Compute (or read from the caches) dsp v2, musicnn and, where it runs, bliss for every track."""
    from navembed_pipeline.lib.models.dsp import weighted_vector

    with_bliss = bliss_runs(tracks[0].path)
    if not with_bliss:
        print("  bliss-audio does not run on this machine (its analysis died in a child process); "
              "its column is left out", flush=True)
    methods = Methods(cache, only=("dsp_v2_raw", "bliss") if with_bliss else ("dsp_v2_raw",))
    musicnn = MusicnnPatches(cache, models_dir, variant=variant, patches=patches)
    started, dsp, layers, bliss = time.perf_counter(), [], [], []
    try:
        for index, track in enumerate(tracks):
            computed = methods.compute(track.path)
            if computed.failures:
                raise RuntimeError(f"{track.path}: {computed.failures}")
            dsp.append(weighted_vector(computed.values["dsp_v2_raw"]))
            bliss.append(computed.values.get("bliss"))
            layers.append(musicnn.layers(track.path))
            if index % 25 == 0:
                print(f"  computed {index + 1}/{len(tracks)} tracks ({time.perf_counter() - started:.0f} s)", flush=True)
    finally:
        methods.close()
        musicnn.close()
    return Material(tracks, np.stack(dsp), layers, np.stack(bliss) if with_bliss else None)


def quick_tracks(work: Path) -> list[Track]:
    """Generated songs: three styles as albums, five songs each; the last two styles are "held out"."""
    from navembed_pipeline.lib.library import write_audio
    from navembed_pipeline.sample_data.synth import render

    return [Track(write_audio(work / f"{style}{seed}.ogg", render(style, seconds=12, seed=seed), 44100), style,
                  style != "piano") for style in ("piano", "drums", "chords") for seed in (1, 2, 3, 4, 5)]


def real_tracks(recordings: Path, tuning_per_album: int | None = None,
                packages: tuple[str, ...] = tuple(PACKAGES)) -> list[Track]:
    """Every recording of 30 s or more of ``packages``; of the tuning albums only the first
    ``tuning_per_album`` of each when given (every held-out recording is always in)."""
    tracks, taken = [], {}
    for r in real_recordings(recordings, min_seconds=MIN_SECONDS, packages=packages):
        held_out = r.package in HELD_OUT
        taken[r.album] = taken.get(r.album, 0) + 1
        if held_out or tuning_per_album is None or taken[r.album] <= tuning_per_album:
            tracks.append(Track(r.path, r.album, held_out))
    return tracks


def main() -> int:
    from navembed_pipeline.lib.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="generated audio, seconds, no downloads")
    parser.add_argument("--recordings", type=Path, default=DEFAULT_CACHE, help="recordings cache directory")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE.parent / "quality",
                        help="where computed vectors are kept between runs")
    parser.add_argument("--models-dir", type=Path, help="weights folder (default: the settings' models folder)")
    parser.add_argument("--variant", default="MSD_musicnn", choices=("MSD_musicnn", "MTT_musicnn"))
    parser.add_argument("--patches", type=int, default=6, help="3-s patches per track at most, evenly spaced")
    parser.add_argument("--tuning-per-album", type=int,
                        help="only the first N recordings of each tuning album (default: all); held-out: all")
    parser.add_argument("--packages", nargs="+", choices=tuple(PACKAGES), default=tuple(PACKAGES),
                        help="only these packages of benchmarks/recordings.py (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    models_dir = args.models_dir or Settings().weights_dir
    with tempfile.TemporaryDirectory(prefix="navembed-musicnn-quality-") as tmp:
        tracks = quick_tracks(Path(tmp)) if args.quick else real_tracks(args.recordings, args.tuning_per_album, tuple(args.packages))
        cache = Path(tmp) if args.quick else args.cache
        material = gather(tracks, cache, models_dir, patches=args.patches, variant=args.variant)
    result = report(material) | {"quick": args.quick, "patches": args.patches, "variant": args.variant}
    print("\n".join(table(result, patches=args.patches, variant=args.variant, quick=args.quick)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
