"""`make bench`: every benchmark in one run, then one report of the headline numbers and ratios.

Each benchmark prints its own details as it goes and writes its results as JSON; the report at the
end puts them side by side and is also saved to ``var/bench/report.txt`` (with the JSON beside it).
Flags are passed to every benchmark (each takes the ones it knows), e.g.
``python -m benchmarks --tracks 500 --sizes 10000``.

Only the whole job through the API against bliss-audio on unseen real files (issue 25), both library
sizes and both model sets: ``python -m benchmarks.api_job --library-sizes 60,200 --model-sets dsp,default``.
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = {"pipeline": "benchmarks.pipeline_throughput", "real_length": "benchmarks.real_length",
              "recommend": "benchmarks.recommend_latency", "ann": "benchmarks.ann_scale",
              "deep_models": "benchmarks.deep_models", "quality": "benchmarks.quality",
              "calibration": "benchmarks.calibration", "workers": "benchmarks.workers_throughput",
              "musicnn": "benchmarks.musicnn_speed", "api_job": "benchmarks.api_job"}
OUT = Path("var/bench")


def run_all(argv: list[str]) -> tuple[dict, int]:
    OUT.mkdir(parents=True, exist_ok=True)
    results, failed = {}, 0
    for name, module in BENCHMARKS.items():
        print(f"\n===== {module} =====", flush=True)
        target = OUT / f"{name}.json"
        target.unlink(missing_ok=True)
        code = subprocess.call([sys.executable, "-m", module, *argv, "--json", str(target)])
        failed |= code
        results[name] = json.loads(target.read_text()) if code == 0 and target.exists() else {"failed": code}
    return results, failed


def report(results: dict) -> list[str]:
    lines = ["", "=" * 78, f"navembed benchmark report — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
             f"{platform.machine()}, Python {platform.python_version()}", "=" * 78]
    pipeline = results.get("pipeline", {})
    if "results" in pipeline:
        r, tracks = pipeline["results"], pipeline["tracks"]
        d, e, s = (r[v]["seconds"] for v in ("dagster", "engine", "seed"))
        stages = r["engine"]["stages"]
        lines += [f"Pipeline, dsp, {tracks} tracks × {pipeline['seconds_per_track']:g} s:",
                  f"  throughput        Dagster {tracks / d:.1f} tracks/s | engine alone {tracks / e:.1f} | "
                  f"seed-style loop {tracks / s:.1f}",
                  f"  ratios            pipeline vs seed loop {s / d:.2f}x, engine vs seed loop {s / e:.2f}x, "
                  f"Dagster overhead {(d - e) / d * 100:.1f}%",
                  f"  peak RSS          Dagster {r['dagster']['peak_rss_mb']:.0f} MiB | engine "
                  f"{r['engine']['peak_rss_mb']:.0f} | seed {r['seed']['peak_rss_mb']:.0f} | Milvus Lite server "
                  f"{max(v.get('milvus_peak_rss_mb') or 0 for v in r.values()):.0f}",
                  "  engine stages (s) " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()),
                  f"  dsp model alone   {tracks / (stages['model'] + stages['enrich']):.1f} tracks/s"]
    else:
        lines.append(f"Pipeline: failed ({pipeline})")
    real = results.get("real_length", {})
    if "report" in real:
        kind = "generated (quick form)" if real["quick"] else "real recordings"
        lines += [f"Real-length compressed music ({kind}), dsp vs bliss-audio on the same files:"]
        lines += ["  " + line for line in real["report"]]
    else:
        lines.append(f"Real-length benchmark: failed ({real})")
    recommend = results.get("recommend", {})
    if "sizes" in recommend:
        lines.append(f"Recommendations, {recommend['playlist']}-track playlists, p50 / p95 ms "
                     "(ratio of p50 to one raw Milvus Lite search | to numpy brute force):")
        for size, rows in recommend["sizes"].items():
            lite = rows["Lite search (1x top 50)"]["p50_ms"]
            brute = rows["numpy brute (1x top 50)"]["p50_ms"]
            cells = [f"{what} {v['p50_ms']:.1f}/{v['p95_ms']:.1f} ({v['p50_ms'] / lite:.2f}x|{v['p50_ms'] / brute:.1f}x)"
                     for what, v in rows.items() if "search" not in what and "brute" not in what]
            lines.append(f"  {int(size):>7} tracks  " + "; ".join(cells))
            lines.append(f"  {'':>7}         raw Lite search {lite:.1f} ms, numpy brute force {brute:.1f} ms")
    else:
        lines.append(f"Recommendations: failed ({recommend})")
    ann = results.get("ann", {})
    if "sizes" in ann:
        lines.append(f"Vector search at scale ({ann['source']}), faiss index vs exact numpy:")
        for size, v in ann["sizes"].items():
            lines.append(f"  {int(size):>8} tracks  recall@50 {v['recall_mean']:.3f} (worst {v['recall_worst']:.2f}), "
                         f"p95 {v['index_p95_ms']:.1f} ms vs exact {v['exact_p95_ms']:.1f} ms "
                         f"({v['exact_p95_ms'] / v['index_p95_ms']:.1f}x); start from snapshot {v['warm_s']:.1f} s, "
                         f"first build {v['build_s']:.1f} s, RSS {v['rss_mb']} MB")
    else:
        lines.append(f"Vector search at scale: failed ({ann})")
    deep = results.get("deep_models", {})
    if "skipped" in deep:
        lines.append(f"Deep models (GPU section): skipped — {deep['skipped']}")
    elif "failed" in deep:
        lines.append(f"Deep models (GPU section): failed ({deep})")
    else:
        lines.append("Deep models, real-size architectures:")
        for name, v in deep.items():
            memory = f", peak GPU {v['peak_gpu_memory_gib']} GiB" if v["peak_gpu_memory_gib"] is not None else ""
            lines.append(f"  {name:<7} {v['tracks_per_second']:.3f} tracks/s, {v['seconds_per_audio_minute']:.2f} s per "
                         f"audio minute ({v['parameters_m']:.0f}M params, {v['device']} {v['dtype']}{memory})")
    quality = results.get("quality", {})
    if "results" in quality:
        from benchmarks.quality import table

        lines += table(quality)
    else:
        lines.append(f"Quality on real music: failed ({quality})")
    calibration = results.get("calibration", {})
    if "results" in calibration:
        from benchmarks.calibration import table as calibration_table

        lines += calibration_table(calibration)
    else:
        lines.append(f"Calibrated similarity: failed ({calibration})")
    workers = results.get("workers", {})
    if "results" in workers:
        from benchmarks.workers_throughput import report_lines

        lines += report_lines(workers)
    else:
        lines.append(f"Workers: failed ({workers})")
    musicnn = results.get("musicnn", {})
    if "failed" in musicnn:
        lines.append(f"MusiCNN on the CPU: failed ({musicnn})")
    else:
        from benchmarks.musicnn_speed import report_lines as musicnn_lines

        lines += musicnn_lines(musicnn)
    api_job = results.get("api_job", {})
    if "report" in api_job:
        lines += api_job["report"]
    elif "skipped" in api_job:
        lines.append(f"Whole job through the API vs bliss-audio: skipped — {api_job['skipped']}")
    else:
        lines.append(f"Whole job through the API vs bliss-audio: failed ({api_job})")
    return lines


if __name__ == "__main__":
    collected, status = run_all(sys.argv[1:])
    text = "\n".join(report(collected))
    print(text)
    (OUT / "report.txt").write_text(text + "\n")
    sys.exit(status)
