"""The fixed cost of one run, stage by stage: from ``POST /batch/start`` until ``/batch/progress`` says completed.

Starts the real stack (``navembed up``'s: Milvus Lite, dagster-webserver, dagster-daemon, the API) on a
small library of real recordings (``benchmarks/recordings.py``; ``--quick``: generated audio), does one
uncounted warm-up run, then POSTs ``/batch/start`` (dsp, ``force``: the same work each time)
``--runs`` times, polling ``/batch/progress`` every ``--poll`` s until it says completed. For each run it
prints the timeline read from the run's own Dagster events (each stamped by the process that logged it):

  POST answered · queued · launching (the daemon dequeued it) · run worker started (its process) · run start ·
  step start · engine planned · engine done · step end · run success · /batch/progress completed

Times are seconds after the POST was sent. The step's own work (engine planned → engine done) is what
the library costs; everything else is the fixed cost per run this benchmark is about.

usage: python -m benchmarks.launch_timeline [--compare] [--compare-decode] [--tracks 10] [--runs 3] [--warmup 1] [--quick]
       [--poll 0.1] [--min-seconds 60] [--max-seconds 150] [--json PATH] [--events]

``--compare`` first measures a stack with Dagster's defaults (run workers spawned by the code server,
the queue looked at every 5 s), then navembed's, and prints both tables and the ratio. ``--compare-decode``
first measures navembed's stack with the small run decoding on threads (as before warm decode workers),
then with its default (warm worker processes from 2 tracks on).
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TOKEN = "launch-timeline-token"  # a throwaway admin token for the stack this benchmark starts
MARKS = (  # (label, how it is found in the run's events)
    ("POST answered", None),
    ("queued", "RUN_ENQUEUED"),
    ("launching", "RUN_STARTING"),
    ("worker process", "worker"),
    ("run start", "RUN_START"),
    ("step start", "STEP_START"),
    ("engine planned", "plan"),
    ("engine done", "stages"),
    ("step end", "STEP_SUCCESS"),
    ("run success", "RUN_SUCCESS"),
    ("progress completed", None),
)
DONE = ("completed", "completed_with_errors", "failed", "cancelled")


@dataclass(frozen=True)
class Timeline:
    """One run's marks (seconds after the POST) and the answers that bracket it."""

    run_id: str
    status: str
    marks: dict[str, float]
    polls: int
    events: tuple[tuple[float, str], ...] = ()  # every event of the run: (seconds after the POST, what)


def library(root: Path, *, tracks: int, quick: bool, min_seconds: float = 60.0,
            max_seconds: float = 150.0) -> tuple[Path, Path, float]:
    """(navidrome.db, music root, seconds of audio) of ``tracks`` real recordings (or generated ones)."""
    from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

    if quick:
        from tests.pipeline.helpers import write_bulk_library

        bulk = write_bulk_library(root, tracks=tracks, seconds=20.0)
        return bulk.db_path, bulk.root, tracks * 20.0
    from benchmarks.recordings import DEFAULT_CACHE, real_recordings

    cache = Path(os.environ.get("NAVEMBED_RECORDINGS_DIR", DEFAULT_CACHE))
    found = real_recordings(cache, min_seconds=min_seconds, max_seconds=max_seconds)
    step = max(1, len(found) // tracks)
    chosen = found[::step][:tracks]  # spread over the albums
    if len(chosen) < tracks:
        raise SystemExit(f"only {len(chosen)} real recordings in {cache}; run `python -m benchmarks.recordings` "
                         "or pass --quick")
    fixtures = [FixtureTrack(path=r.path.relative_to(cache).as_posix(), title=r.title, artist=r.album,
                             album=r.album, duration=r.duration_seconds, size=r.path.stat().st_size)
                for r in chosen]
    root.mkdir(parents=True, exist_ok=True)
    db = root / "navidrome.db"
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Real", str(cache))], tracks=fixtures)
    return db, cache, sum(r.duration_seconds for r in chosen)


def wait_idle(instance, *, timeout: float = 300.0) -> None:
    """Until no run is queued or running (the change sensor's first run, a previous POST, the sonic
    mixes run that follows each embedding run)."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not instance.get_runs(filters=dg.RunsFilter(statuses=[s for s in dg.DagsterRunStatus if not s in (
                dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]), limit=1):
            return
        time.sleep(0.5)
    raise SystemExit(f"the stack did not become idle within {timeout:.0f} s")


def one_run(api, instance, *, poll: float, timeout: float = 300.0) -> Timeline:
    """POST, poll until done, then read the run's events."""
    while True:
        posted = time.time()
        response = api.post("/batch/start", json={"models": ["dsp"], "force": True})
        answered = time.time()
        if response.status_code != 409:  # 409: a run the sensor requested meanwhile; wait for it
            break
        wait_idle(instance)
    if response.status_code != 200:
        raise SystemExit(f"/batch/start answered {response.status_code}: {response.text}")
    run_id = response.json()["run_id"]
    polls, deadline = 0, time.monotonic() + timeout
    while True:
        answer = api.get("/batch/progress", params={"run_id": run_id}).json()
        polls += 1
        if answer["status"] in DONE:
            finished = time.time()
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} not done within {timeout:.0f} s: {answer}")
        time.sleep(poll)
    marks = {"POST answered": answered - posted, **event_marks(instance, run_id, posted),
             "progress completed": finished - posted}
    return Timeline(run_id, answer["status"], marks, polls, all_events(instance, run_id, posted))


def all_events(instance, run_id: str, origin: float) -> tuple[tuple[float, str], ...]:
    """Every event of the run, (seconds after ``origin``, its type and message's start)."""
    found = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        kind = event.event_type.name if event is not None else "log"
        message = (event.message if event is not None else entry.user_message) or entry.user_message or ""
        found.append((round(entry.timestamp - origin, 3), f"{kind}: {message[:300]}"))
    return tuple(found)


def event_marks(instance, run_id: str, origin: float) -> dict[str, float]:
    """The first time each mark's event appears in the run's event log, relative to ``origin``."""
    found: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        kind = event.event_type.name if event is not None else None
        message = (event.message if event is not None else entry.user_message) or entry.user_message or ""
        for label, key in MARKS:
            if key is None or label in found:
                continue
            if (key == kind
                    or (key == "worker" and kind == "ENGINE_EVENT" and message.startswith("Started process for run"))
                    or (key == "plan" and kind is None and " to embed" in message)
                    or (key == "stages" and kind is None and "stage seconds:" in message)):
                found[label] = entry.timestamp - origin
    return found


def collapsed(events: tuple[tuple[float, str], ...]) -> list[tuple[float, float, int, str]]:
    """Events in a row that are alike (same type, same start of message: the buckets' materializations,
    their check results) as one (first, last, count, what)."""
    lines: list[tuple[float, float, int, str]] = []
    for at, what in events:
        if lines and lines[-1][3][:60] == what[:60]:
            first, _, count, text = lines[-1]
            lines[-1] = (first, at, count + 1, text)
        else:
            lines.append((at, at, 1, what))
    return lines


def print_table(timelines: list[Timeline], *, tracks: int, audio_s: float) -> None:
    width = max(len(label) for label, _ in MARKS)
    header = " ".join(f"{'run ' + str(i + 1):>8}" for i in range(len(timelines)))
    print(f"Timeline of POST /batch/start → /batch/progress completed, dsp, {tracks} tracks "
          f"({audio_s / 60:.1f} audio-min), {os.cpu_count()} cores (seconds after the POST)")
    print(f"{'mark':<{width}} {header} {'median':>8} {'stage':>8}")
    previous = 0.0
    for label, _ in MARKS:
        values = [t.marks.get(label) for t in timelines]
        known = [v for v in values if v is not None]
        median = statistics.median(known) if known else None
        cells = " ".join(f"{v:8.2f}" if v is not None else f"{'-':>8}" for v in values)
        stage = f"{median - previous:+8.2f}" if median is not None else f"{'':>8}"
        print(f"{label:<{width}} {cells} {f'{median:8.2f}' if median is not None else '       -'} {stage}")
        previous = median if median is not None else previous
    fixed = [t.marks["progress completed"] - (t.marks.get("engine done", 0) - t.marks.get("engine planned", 0))
             for t in timelines]
    print(f"fixed cost (total minus the engine's own work), median: {statistics.median(fixed):.2f} s; "
          f"total, median: {statistics.median(t.marks['progress completed'] for t in timelines):.2f} s")


VARIANTS = {  # name -> (what it is, run workers forked from the warm process, dequeue twice a second)
    "dagster": ("Dagster's defaults: run workers spawned by the code server, queue looked at every 5 s", False),
    "navembed": ("navembed: run workers forked from the warm process, queue looked at every 0.5 s", True),
    "threads": ("navembed, but a small run decodes on threads (NAVEMBED_DECODE_PROCESSES=false; before warm decode "
                "workers, runs under 16 tracks did)", True),
}


def measure(args: argparse.Namespace, variant: str, root: Path) -> tuple[list[Timeline], float]:
    """Start a stack configured as ``variant``, do the runs, stop it; (timelines, seconds of audio)."""
    import httpx

    from navembed_api.settings import ApiSettings
    from navembed_pipeline.instance import instance_yaml, open_instance
    from navembed_pipeline.stack import Stack, free_port

    db, music, audio_s = library(root / "lib", tracks=args.tracks, quick=args.quick,
                                 min_seconds=args.min_seconds, max_seconds=args.max_seconds)
    warm = VARIANTS[variant][1]
    os.environ.pop("NAVEMBED_DECODE_PROCESSES", None)
    if variant == "threads":  # the stack's processes (and so the run workers) inherit it
        os.environ["NAVEMBED_DECODE_PROCESSES"] = "false"
    settings = ApiSettings(data_dir=root / "data", navidrome_db=db, music_root=music, models="dsp",
                           admin_token=TOKEN, socket_path=None, api_port=free_port(), dagster_port=free_port(),
                           sensor_interval_seconds=3600, upload_dir=root / "uploads", run_worker_server=warm)
    if not warm:  # Dagster's default dequeue interval: navembed's dagster.yaml without its run_coordinator block
        text = instance_yaml(postgres=False)
        end = "dequeue_poll_seconds: 0.5\n"
        block = text[text.index("run_coordinator:"):text.index(end) + len(end)]
        settings.dagster_home.mkdir(parents=True, exist_ok=True)
        (settings.dagster_home / "dagster.yaml").write_text(text.replace(block, ""))
    print(f"\n== {VARIANTS[variant][0]}", flush=True)
    started = time.perf_counter()
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, timeout=60,
                                                headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        print(f"stack up in {time.perf_counter() - started:.1f} s", flush=True)
        instance = open_instance(settings.dagster_home)
        time.sleep(3.0)  # the daemon's first sensor tick
        if args.warmup:  # the first run after start also waits for the daemon's own start-up: not counted
            wait_idle(instance)
            first = one_run(api, instance, poll=args.poll)
            print(f"warm-up run (first after the stack started, not counted): {first.status} in "
                  f"{first.marks['progress completed']:.2f} s; launched {first.marks.get('launching', 0):.2f} s "
                  "after the POST", flush=True)
        timelines = []
        for number in range(args.runs):
            wait_idle(instance)
            time.sleep(1.0)  # let the previous run's processes exit
            timeline = one_run(api, instance, poll=args.poll)
            print(f"run {number + 1}: {timeline.status} in {timeline.marks['progress completed']:.2f} s "
                  f"({timeline.polls} polls; run {timeline.run_id})", flush=True)
            timelines.append(timeline)
        instance.dispose()
    return timelines, audio_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="generated audio (20 s per track), no recordings")
    parser.add_argument("--compare", action="store_true",
                        help="first the same runs on a stack with Dagster's defaults (spawned run workers, 5 s "
                             "dequeue interval), then navembed's: before and after in one command")
    parser.add_argument("--compare-decode", action="store_true",
                        help="first the same runs with a small run decoding on threads, then navembed's default")
    parser.add_argument("--warmup", type=int, default=1, choices=(0, 1),
                        help="first do one uncounted run (the daemon's start-up delays the first launch)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between /batch/progress polls")
    parser.add_argument("--min-seconds", type=float, default=60.0, help="shortest recording to use")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="longest recording to use")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--events", action="store_true", help="also print every event of each variant's last run")
    args, _ = parser.parse_known_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the stack is stopped on the way out
    results: dict[str, list[Timeline]] = {}
    for variant in (["dagster"] if args.compare else []) + (["threads"] if args.compare_decode else []) + ["navembed"]:
        with tempfile.TemporaryDirectory(prefix="navembed-bench-launch-") as tmp:
            results[variant], audio_s = measure(args, variant, Path(tmp))
    for variant, timelines in results.items():
        print(f"\n{VARIANTS[variant][0]}:")
        print_table(timelines, tracks=args.tracks, audio_s=audio_s)
        if args.events:
            print(f"every event of run {timelines[-1].run_id} (seconds after the POST; alike ones in a row as one line):")
            for first, last, count, what in collapsed(timelines[-1].events):
                span = f"{first:7.2f}" + (f"–{last:.2f} ×{count}" if count > 1 else "")
                print(f"  {span:<22} {what[:140]}")
    after = statistics.median(t.marks["progress completed"] for t in results["navembed"])
    for variant in (v for v in results if v != "navembed"):
        before = statistics.median(t.marks["progress completed"] for t in results[variant])
        print(f"\nPOST → completed, median: {variant} {before:.2f} s, navembed {after:.2f} s "
              f"({before / after:.2f}x faster)")
    print("(on a shared machine these figures are rough: rerun on an idle one)")
    if args.json:
        args.json.write_text(json.dumps({"tracks": args.tracks, "audio_seconds": audio_s, "cores": os.cpu_count(),
                                         "variants": {v: [t.__dict__ for t in ts] for v, ts in results.items()}},
                                        indent=2))
    ok = all(t.status == "completed" for ts in results.values() for t in ts)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
