"""The whole job through the API against bliss-audio, on real files the tuning never saw (issue 25).

What a user gets: a real stack (``navembed up``'s Milvus Lite, Dagster webserver + daemon, the API)
per library size and model set, an empty library whose tracks appear once the change sensor has
ticked, then ``POST /batch/start`` and ``GET /batch/progress`` every 0.2 s until it says completed:
the job's seconds run from the POST to that answer (queueing, launch, the run worker's start, the
embedding step, the work at the end, the API catching up: everything). bliss-audio (the version
``requirements.txt`` pins, ``Song(path).analysis``, one process per core as blissify runs it) analyses
the same files in the same run, between the two model sets, so both meet the same machine load.

Material: ``benchmarks/unseen.py`` — held-out recordings in a fixed seeded order (Ogg/Vorbis and Opus
as shipped plus Opus/AAC/MP3 encodes), real length; the ~60-track library is the start of the
~200-track one. Model sets: ``dsp``, and ``default`` (the models the stack enables by itself: dsp +
musicnn where MusiCNN's weights are present, ``NAVEMBED_MODELS_DIR``). Without the recordings cache
the benchmark says so and measures nothing (the quick form uses generated songs instead).

usage: python -m benchmarks.api_job [--library-sizes 60,200] [--model-sets dsp,default] [--quick] [--json PATH]
"""

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.real_corpus import CorpusFile, generated_corpus
from benchmarks.real_length import bliss_pool
from benchmarks.recordings import DEFAULT_CACHE

TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
SENSOR = "library_change_sensor"
JOB_TIMEOUT_S = 3600.0


def library_db(corpus: list[CorpusFile], db: Path) -> tuple[Path, list]:
    """An empty Navidrome database rooted at the files' common folder, and the tracks to add to it."""
    from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

    root = Path(os.path.commonpath([f.path.parent for f in corpus]))
    tracks = [FixtureTrack(path=f.path.relative_to(root).as_posix(), title=f.title, artist="Benchmark",
                           album=f.album, duration=f.duration_seconds) for f in corpus]
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Benchmark", str(root))], tracks=[])
    return root, tracks


def wait_for_first_tick(dagster_url: str, headers: dict[str, str], timeout: float = 120.0) -> None:
    """Until the change sensor has evaluated the empty library once (else it would start the run itself)."""
    from navembed_api.dagster_client import DagsterClient

    async def tick() -> str | None:
        client = DagsterClient(dagster_url, headers=headers)
        try:
            latest = await client.latest_sensor_tick(SENSOR, job_name="reembed_job")
        finally:
            await client.aclose()
        return latest.status if latest else None

    deadline = time.monotonic() + timeout
    while (status := asyncio.run(tick())) in (None, "STARTED"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the change sensor did not tick within {timeout:.0f} s")
        time.sleep(0.5)


def api_job(corpus: list[CorpusFile], model_set: str, work: Path) -> dict:
    """A fresh stack, the library added after the sensor's first tick, then the timed POST → completed."""
    from navembed_api.settings import ApiSettings
    from navembed_pipeline.sample_data.navidrome_fixture import add_tracks
    from navembed_pipeline.stack import Stack, free_port

    token = secrets.token_urlsafe(24)
    headers = {"Authorization": f"Bearer {token}"}
    db = work / "navidrome.db"
    root, tracks = library_db(corpus, db)
    (work / "uploads").mkdir()
    models_dir = os.environ.get("NAVEMBED_MODELS_DIR")
    settings = ApiSettings(data_dir=work / "data", navidrome_db=db, music_root=root, upload_dir=work / "uploads",
                           models="dsp" if model_set == "dsp" else "auto", admin_token=token,
                           socket_path=work / "embed.sock", api_port=free_port(), dagster_port=free_port(),
                           sensor_interval_seconds=3600, models_dir=Path(models_dir) if models_dir else None)
    enabled = settings.enabled_models()
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, headers=headers, timeout=60) as api:
        wait_for_first_tick(stack.urls.dagster, headers)
        add_tracks(db, tracks)
        body = {"models": ["dsp"]} if model_set == "dsp" else {}
        started = time.perf_counter()
        answer = api.post("/batch/start", json=body)
        if answer.status_code != 200:
            raise SystemExit(f"POST /batch/start answered {answer.status_code}: {answer.text}")
        polls = 0
        while True:
            progress = api.get("/batch/progress").json()
            polls += 1
            if progress.get("status") in TERMINAL:
                break
            if time.perf_counter() - started > JOB_TIMEOUT_S:
                raise SystemExit(f"no end within {JOB_TIMEOUT_S:.0f} s: {progress}")
            time.sleep(0.2)
        seconds = time.perf_counter() - started
    if progress["status"] not in ("completed", "completed_with_errors"):
        raise SystemExit(f"the {model_set} job ended {progress['status']}: {progress}")
    return {"seconds": seconds, "models": enabled, "status": progress["status"],
            "processed": progress.get("processed_tracks"), "failed": progress.get("failed_tracks"),
            "total": progress.get("total_tracks"), "polls": polls}


def measure(corpus: list[CorpusFile], model_sets: list[str], work: Path, workers: int) -> dict:
    """Each model set's job and bliss on ``corpus``; bliss between the jobs (both meet the same load)."""
    results: dict = {}
    for index, model_set in enumerate(model_sets):
        folder = work / f"{len(corpus)}-{model_set}"
        folder.mkdir(parents=True)
        results[model_set] = api_job(corpus, model_set, folder)
        print(f"  {len(corpus)} tracks, {model_set} job ({'+'.join(results[model_set]['models'])}): "
              f"{results[model_set]['seconds']:.1f} s", flush=True)
        if index == 0:
            results["bliss"] = bliss_pool([str(f.path) for f in corpus], workers)
            print(f"  {len(corpus)} tracks, bliss: {results['bliss']['seconds']:.1f} s", flush=True)
    return results


def report(sizes: dict[int, dict], described: dict[int, str]) -> list[str]:
    """One table: per size and model set, the job's seconds, bliss's, and bliss seconds / ours."""
    import bliss_audio  # noqa: F401 - only to name its version

    from importlib.metadata import version

    lines = [f"Whole job through the API (POST /batch/start → /batch/progress completed, launch included) vs "
             f"bliss-audio {version('bliss-audio')} ({os.cpu_count()} processes) on the same files; "
             "ratio = bliss seconds / job seconds (above 1: faster than bliss)",
             f"  {'library':<48}{'job':<14}{'job s':>8}{'bliss s':>9}{'ratio':>8}{'tracks/s':>10}"]
    for size, results in sizes.items():
        bliss = results["bliss"]
        for model_set, r in results.items():
            if model_set == "bliss":
                continue
            job = f"{model_set} ({'+'.join(r['models'])})"
            lines.append(f"  {described[size]:<48}{job:<14}{r['seconds']:8.1f}{bliss['seconds']:9.1f}"
                         f"{bliss['seconds'] / r['seconds']:7.2f}x{size / r['seconds']:10.2f}")
        if bliss["failed"]:
            lines.append(f"    bliss failed on {bliss['failed']} file(s): {bliss['errors']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library-sizes", default="60,200", help="library sizes, comma-separated (tracks)")
    parser.add_argument("--model-sets", default="dsp,default", help="model sets: dsp, default")
    parser.add_argument("--quick", action="store_true", help="generated songs, one small library, dsp only")
    parser.add_argument("--recordings", type=Path, default=None, help="recordings cache (default: recordings.py's)")
    parser.add_argument("--workers", type=int, default=0, help="bliss processes (0: one per core)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _ = parser.parse_known_args()  # `python -m benchmarks` passes every benchmark's flags to each
    model_sets = [m.strip() for m in args.model_sets.split(",") if m.strip()]
    if any(m not in ("dsp", "default") for m in model_sets):
        parser.error("--model-sets takes dsp and/or default")
    sizes = [int(s) for s in args.library_sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="navembed-api-job-") as tmp:
        work = Path(tmp)
        corpora: dict[int, list[CorpusFile]] = {}
        if args.quick:
            corpora[5] = generated_corpus(work / "music", per_format=1, seconds=6.0)
            model_sets = ["dsp"]
            described = {5: "5 generated songs × 6 s (quick form)"}
        else:
            from benchmarks.unseen import NoRecordings, describe, unseen_library

            try:
                for size in sizes:
                    corpora[size] = unseen_library(size, args.recordings or DEFAULT_CACHE)
            except NoRecordings as exc:
                print(f"skipped: {exc}", flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"skipped": str(exc)}))
                return
            described = {size: describe(corpus).split(" (")[0] for size, corpus in corpora.items()}
            for size, corpus in corpora.items():
                print(f"library of {size}: {describe(corpus)}", flush=True)
        measured = {size: measure(corpus, model_sets, work / "runs", args.workers) for size, corpus in corpora.items()}
        lines = report(measured, described)
    print("\n".join(lines), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "sizes": measured, "report": lines}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
