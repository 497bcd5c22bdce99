"""`make bench` in a quick form, so the benchmarks cannot silently rot (no timing is asserted here).

Speed and memory are judged by reading the report, never by timed assertions; this only checks
that every benchmark runs to the end and the combined report has each of its sections.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert "MusiCNN on the CPU" in report  # measured, or skipped saying why (no weights in the temp dir)
    quality = json.loads((tmp_path / "var" / "bench" / "quality.json").read_text())
    assert set(quality["results"]) == {"dsp_v1", "dsp_v2", "dsp_v2_stats", "bliss", "chromaprint"}
    assert "Workers, dsp, 24 tracks (24 generated tracks × 2 s" in report and "speed-up" in report
    workers = json.loads((tmp_path / "var" / "bench" / "workers.json").read_text())
    assert all(r["buckets_once"] and r["stored"] == 24 for r in workers["results"].values())
    if not torch.cuda.is_available():
        assert "Deep models (GPU section): skipped — no CUDA device on this machine" in report
