"""Two models, one decode: dsp alone, musicnn alone, and dsp + musicnn in one run, on the same real files.

The engine (``EmbeddingRun``, no Dagster) on real 2–6-minute recordings as their packages ship them
(``real_corpus.library_corpus``), each variant re-embedding every file (``force``) with the models
already loaded, worker processes for decoding as a library-sized run uses them (dsp embeds inside
them, and so does musicnn, from the 16 kHz share of each decode). No fingerprints.

Reported: wall seconds, CPU seconds (this process and its finished worker processes), audio-minutes/s,
decode CPU seconds, and the shared run's CPU against the two single-model runs added up (what two
steps, two decodes per file, cost). The machine may be shared: only ratios of this one run mean anything.
usage: python -m benchmarks.shared_decode [--tracks 8] [--models-dir DIR] [--threads] [--variants dsp+musicnn]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.real_corpus import library_corpus
from benchmarks.real_length import write_library
from benchmarks.recordings import DEFAULT_CACHE


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _variant(models: list, tracks_by_bucket: dict, store, processes: bool) -> dict:
    from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions

    run = EmbeddingRun(models=models, store=store, options=RunOptions(force=True, decode_processes=processes))
    cpu, started = _cpu_seconds(), time.perf_counter()
    reports = list(run.run(tracks_by_bucket))
    return {"seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu,
            "decode_cpu": run.stage_seconds["decode_cpu"],
            "embedded": {m.name: sum(r.embedded for r in reports if r.model == m.name) for m in models}}


def main(argv: list[str] | None = None) -> None:
    from navembed_pipeline.lib.engine.run import group_by_bucket
    from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
    from navembed_pipeline.lib.models import create_model
    from navembed_pipeline.lib.models.base import ModelOptions
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.lib.store import VectorStore
    from navembed_pipeline.lib.store.server import ensure_running

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--threads", action="store_true", help="decode threads instead of worker processes")
    parser.add_argument("--variants", default="dsp,musicnn,dsp+musicnn",
                        help="which runs, comma-separated (the comparison line needs all three)")
    args = parser.parse_args(argv)
    corpus = library_corpus(DEFAULT_CACHE, tracks=args.tracks, min_seconds=120.0, max_seconds=360.0)
    minutes = sum(f.duration_seconds for f in corpus) / 60
    options = ModelOptions(device="cpu", models_dir=args.models_dir or Settings().weights_dir)
    with tempfile.TemporaryDirectory(prefix="navembed-shared-decode-") as work:
        db = write_library(corpus, Path(work) / "navidrome.db")
        grouped = group_by_bucket(list(NavidromeLibrary(db).tracks()))
        store = VectorStore(ensure_running(Path(work) / "milvus"))
        dsp, musicnn = create_model("dsp", options), create_model("musicnn", options)
        for model in (dsp, musicnn):
            model.load()  # weights are not charged to a variant
        processes = not args.threads
        variants = {"dsp": [dsp], "musicnn": [musicnn], "dsp+musicnn": [dsp, musicnn]}
        results = {name: _variant(variants[name], grouped, store, processes) for name in args.variants.split(",")}
        for model in (dsp, musicnn):
            model.shutdown()
    print(f"{len(corpus)} real recordings, {minutes:.1f} audio-minutes; decode "
          f"{'threads' if args.threads else 'worker processes'}; the CPU may be shared with other work")
    print(f"{'variant':<14}{'wall s':>8}{'CPU s':>8}{'decode CPU s':>14}{'audio-min/s':>13}  embedded")
    for name, r in results.items():
        print(f"{name:<14}{r['seconds']:>8.1f}{r['cpu_seconds']:>8.1f}{r['decode_cpu']:>14.1f}"
              f"{minutes / r['seconds']:>13.2f}  {r['embedded']}")
    if set(results) != set(variants):
        return
    apart = results["dsp"]["cpu_seconds"] + results["musicnn"]["cpu_seconds"]
    shared = results["dsp+musicnn"]
    print(f"dsp+musicnn in one run: CPU {shared['cpu_seconds'] / results['dsp']['cpu_seconds']:.2f}x dsp alone, "
          f"{shared['cpu_seconds'] / apart:.2f}x the two runs apart (two decodes); wall "
          f"{shared['seconds'] / (results['dsp']['seconds'] + results['musicnn']['seconds']):.2f}x the two apart")


if __name__ == "__main__":
    main()
