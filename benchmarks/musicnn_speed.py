"""MusiCNN's CPU throughput: audio-minutes per second through ``MusicnnModel.embed`` (front end,
network, pooling) at 1 and 2 torch threads, side by side with ``dsp`` (the
weight-free peer, one thread as the engine runs it) on the same generated songs.

Needs MusiCNN's weights (``make musicnn-weights``; looked for in ``--models-dir``, else the settings'
models folder); without them the section reports itself skipped. The CPU may be shared with other
work: compare the ratios within one run, not absolute figures across runs.
usage: python -m benchmarks.musicnn_speed [--musicnn-tracks 4] [--musicnn-seconds 60] [--models-dir DIR] [--quick]
       [--json PATH]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from navembed_pipeline.lib.models import create_model, weights_repos
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.weights import weights_present
from navembed_pipeline.sample_data.synth import render_song

# (torch threads, ModelOptions.batch_size): on the CPU the model runs ``CPU_PATCHES_PER_PASS`` patches a
# pass whatever the batch size (larger passes measured slower per patch); the batch column says so.
SETTINGS = ((1, 1), (2, 1))


def audio_minutes_per_second(name: str, options: ModelOptions, *, threads: int, tracks: int,
                             seconds: float) -> dict:
    """Embed ``tracks`` generated songs of ``seconds`` with model ``name`` on ``threads`` torch threads."""
    model = create_model(name, options)
    songs = [render_song(seconds=seconds, sample_rate=model.sample_rate, seed=i) for i in range(tracks)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.embed([render_song(seconds=10.0, sample_rate=model.sample_rate, seed=999)])  # load + warm up
        began, cpu_began = time.perf_counter(), time.process_time()
        for start in range(0, tracks, 4):  # the pipeline embeds 4 tracks per call
            vectors = model.embed(songs[start : start + 4])
            assert all(np.isfinite(v.embedding).all() for v in vectors)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        torch.set_num_threads(before)
        model.shutdown()
    minutes = tracks * seconds / 60
    return {"threads": threads, "batch": model.batch_size, "seconds": round(elapsed, 2),
            "cpu_seconds": round(cpu, 2), "audio_minutes_per_second": round(minutes / elapsed, 3),
            "cpu_seconds_per_audio_minute": round(cpu / minutes, 2)}


def run(args: argparse.Namespace) -> dict:
    models_dir = args.models_dir
    if models_dir is None:
        from navembed_pipeline.lib.settings import Settings

        models_dir = Settings().weights_dir
    if not weights_present(weights_repos("musicnn"), models_dir):
        return {"skipped": f"no MusiCNN weights in {models_dir} (make musicnn-weights)"}
    results: dict = {"tracks": args.musicnn_tracks, "track_seconds": args.musicnn_seconds, "musicnn": []}
    for threads, batch in SETTINGS:
        options = ModelOptions(device="cpu", batch_size=batch, models_dir=models_dir)
        row = audio_minutes_per_second("musicnn", options, threads=threads, tracks=args.musicnn_tracks,
                                       seconds=args.musicnn_seconds)
        results["musicnn"].append(row)
        print(f"musicnn  {threads} thread(s), {row['batch']:>2} patches/pass: {row['audio_minutes_per_second']:.2f} "
              f"audio-min/s ({row['seconds']:.1f} s wall, {row['cpu_seconds']:.1f} s CPU)", flush=True)
    results["dsp"] = audio_minutes_per_second("dsp", ModelOptions(device="cpu"), threads=1,
                                              tracks=args.musicnn_tracks, seconds=args.musicnn_seconds)
    print(f"dsp      1 thread: {results['dsp']['audio_minutes_per_second']:.2f} audio-min/s", flush=True)
    return results


def report_lines(results: dict) -> list[str]:
    """The ``make bench`` report's MusiCNN section."""
    if "skipped" in results:
        return [f"MusiCNN on the CPU: skipped — {results['skipped']}"]
    dsp = results["dsp"]["audio_minutes_per_second"]
    lines = [f"MusiCNN on the CPU ({results['tracks']} generated songs × {results['track_seconds']:g} s; "
             f"dsp, one thread, {dsp:.2f} audio-min/s on the same songs):"]
    for row in results["musicnn"]:
        lines.append(f"  {row['threads']} thread(s), {row['batch']:>2} patches/pass  "
                     f"{row['audio_minutes_per_second']:.2f} audio-min/s ({row['audio_minutes_per_second'] / dsp:.2f}x dsp), "
                     f"{row['cpu_seconds_per_audio_minute']:.2f} CPU s per audio minute")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--musicnn-tracks", type=int, default=4)
    parser.add_argument("--musicnn-seconds", type=float, default=60.0)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="one 10 s song (a smoke run, not a measurement)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    if args.quick:
        args.musicnn_tracks, args.musicnn_seconds = 1, 10.0
    results = run(args)
    print("\n".join(report_lines(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
