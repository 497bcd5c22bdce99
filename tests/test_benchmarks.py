"""`make bench` in a quick form, so the benchmarks cannot silently rot (no timing is asserted here).

Speed and memory are judged by reading the report, never by timed assertions; this only checks
that every benchmark runs to the end and the combined report has each of its sections.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_make_bench_runs_every_benchmark_and_writes_one_report(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--tracks", "24", "--seconds", "2",
                           "--sizes", "600", "--queries", "3", "--quick", "--long-run-tracks", "10"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "var" / "bench" / "report.txt").read_text()
    assert "Pipeline, dsp, 24 tracks × 2 s:" in report
    assert "Dagster overhead" in report and "engine stages (s) plan" in report and "peak RSS" in report
    assert "    600 tracks  similar " in report and "raw Lite search" in report
    ann = json.loads((tmp_path / "var" / "bench" / "ann.json").read_text())["sizes"]["25000"]
    assert ann["recall_mean"] >= 0.9 and "faiss index vs exact numpy" in report
    pipeline = json.loads((tmp_path / "var" / "bench" / "pipeline.json").read_text())
    assert {v["embedded"] for v in pipeline["results"].values()} == {24}
    stages = pipeline["results"]["engine"]["stages"]
    assert all(stages[s] > 0 for s in ("decode", "model", "enrich", "write"))
    assert "Real-length compressed music (generated (quick form))" in report and "  all: bliss " in report
    real = json.loads((tmp_path / "var" / "bench" / "real_length.json").read_text())
    assert set(real["results"]["formats"]["formats"]) == {"mp3", "ogg", "opus", "flac", "aac"}
    assert all(r["embedded"] == 1 and r["failed"] == 0 for r in real["results"]["formats"]["formats"].values())
    assert all(b["embedded"] == 1 for b in real["results"]["bliss"]["formats"].values())
    assert real["results"]["bliss"]["all"]["embedded"] == 5
    long = real["results"]["long"]  # the 5 files twice over: Dagster, the engine and bliss on all 10
    assert long["dagster"]["embedded"] == long["engine"]["embedded"] == long["bliss"]["embedded"] == 10
    assert "Long run: 10 tracks" in report and "dsp job (Dagster)" in report
    assert "Quality on generated recordings:" in report and "same-album precision@5" in report
    assert "Calibrated similarity (generated songs)" in report and "plugin similar_tracks" in report
    assert "Whole job through the API" in report and "5 generated songs" in report  # benchmarks.api_job, quick form
    assert "MusiCNN on the CPU" in report  # measured, or skipped saying why (no weights in the temp dir)
    quality = json.loads((tmp_path / "var" / "bench" / "quality.json").read_text())
    assert set(quality["results"]) == {"dsp_v1", "dsp_v2", "dsp_v2_stats", "bliss", "chromaprint"}
    assert "Workers, dsp, 24 tracks (24 generated tracks × 2 s" in report and "speed-up" in report
    workers = json.loads((tmp_path / "var" / "bench" / "workers.json").read_text())
    assert all(r["buckets_once"] and r["stored"] == 24 for r in workers["results"].values())
    if not torch.cuda.is_available():
        assert "Deep models (GPU section): skipped — no CUDA device on this machine" in report


@pytest.fixture(scope="module")
def musicnn_weights(tmp_path_factory) -> Path:
    """MSD_musicnn converted from the real ``musicnn`` 0.1.0 wheel (skipped only without a package index)."""
    from navembed_pipeline.lib.models.musicnn.weights import WheelError, fetch_wheel, install

    try:
        wheel = fetch_wheel(tmp_path_factory.mktemp("musicnn-wheel"))
    except WheelError as exc:
        pytest.skip(f"the musicnn 0.1.0 wheel cannot be fetched from the package index here: {exc}")
    models_dir = tmp_path_factory.mktemp("musicnn-models")
    install(models_dir, wheel=wheel)
    return models_dir


def test_musicnn_patch_reader_decodes_the_same_windows_as_the_whole_track(tmp_path) -> None:
    """The benchmark decodes only the patches it uses, by seeking: the samples must be the port's own."""
    from benchmarks.musicnn_patches import evenly_spaced, patch_reader
    from navembed_pipeline.lib.library import load_audio, write_audio
    from navembed_pipeline.lib.models.musicnn.mel import SAMPLE_RATE, patch_windows
    from navembed_pipeline.sample_data.synth import render

    for name, seconds in (("long", 20), ("short", 2)):
        path = write_audio(tmp_path / f"{name}.ogg", render("chords", seconds=seconds, seed=1), 44100)
        whole = patch_windows(load_audio(path, SAMPLE_RATE))
        count, read = patch_reader(path)
        assert count == len(whole)
        for index in evenly_spaced(count, 3):
            np.testing.assert_allclose(read(int(index)), whole[index], atol=1e-6)
    assert list(evenly_spaced(106, 6)) == [0, 21, 42, 63, 84, 105] and list(evenly_spaced(4, 6)) == [0, 1, 2, 3]


@pytest.mark.timeout(900)
def test_musicnn_quality_quick_measures_every_candidate_and_fusion(tmp_path, musicnn_weights) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "musicnn_quality.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.musicnn_quality", "--quick", "--models-dir",
                           str(musicnn_weights), "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "MusiCNN quality (MSD_musicnn, at most 6 patches per track) on generated recordings" in done.stdout
    result = json.loads(out.read_text())
    precision = result["precision_at_5"]
    # layers x poolings x centrings (none, library, reference), fusions of the two fixed centrings x 3 weights
    assert len([c for c in precision if c.startswith("musicnn ") and "shipped" not in c]) == 4 * 2 * 3
    assert len([c for c in precision if c.startswith("fusion ") and "shipped" not in c]) == 4 * 2 * 2 * 3
    assert all(0.0 <= v <= 1.0 for values in precision.values() for v in values.values())
    assert {"all", "held_out"} == set(precision["dsp_v2"])
    # three clearly different generated styles, five songs each (chance 4/14): the real model tells them apart
    assert precision[result["best"]["best musicnn"]]["all"] > 0.5
    assert "musicnn shipped" in precision and "fusion shipped (equal weights)" in precision
    for kind in ("best musicnn", "best fusion", "shipped musicnn", "shipped fusion"):
        mean, low, high = result["minus_dsp_v2"][kind]["all"]
        assert low <= mean <= high


def test_the_same_recording_benchmark_tunes_on_the_tuning_albums_and_counts_on_the_held_out_ones() -> None:
    # The measuring code on hand-made vectors (the real run needs the recordings cache): a copy pair per
    # recording, different songs apart; the threshold comes from the tuning pairs only.
    from benchmarks.recordings import HELD_OUT, TUNING, Recording
    from benchmarks.same_recording import choose_threshold, cosine_floor, report

    rng = np.random.default_rng(0)
    recordings = [Recording(Path(f"/r/{i}.ogg"), f"album{i % 3}", f"song{i}", 60.0,
                            TUNING[0] if i < 6 else HELD_OUT[0]) for i in range(12)]
    vectors = {}
    for i in range(12):
        base = rng.standard_normal(16) + 4.0  # songs share a direction, as real dsp vectors do
        vectors[(i, "original")] = base
        vectors[(i, "clip")] = base + 0.9 * rng.standard_normal(16)
        vectors[(i, "mp3_64k")] = base + 0.01 * rng.standard_normal(16)
        vectors[(i, "clip_mp3_96k")] = vectors[(i, "clip")] + 0.01 * rng.standard_normal(16)
    result = report(recordings, vectors)
    tuning, held_out = result["splits"]["tuning"], result["splits"]["held-out"]
    assert tuning["recordings"] == 6 and held_out["recordings"] == 6
    assert tuning["merged_distinct"] == 0 and sum(tuning["missed_copies"].values()) == 0
    assert tuning["highest_distinct"]["similarity"] < result["threshold"] <= min(tuning["lowest_copy_by_variant"].values())
    assert choose_threshold([0.99, 0.97], [0.9, 0.95]) == 0.96 and cosine_floor([0.9912, 0.996]) == 0.99
