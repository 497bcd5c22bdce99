"""Run ``reembed_job`` in this process on the embedded instance, with a live progress bar.

The run is a normal Dagster run in the instance under the data dir, so it shows in the Dagster UI
like any other; progress comes from the same structured log lines the API reads.
"""

import threading
from dataclasses import dataclass

import dagster as dg
from dagster._core.utils import make_new_run_id
from tqdm import tqdm

from navembed_pipeline.definitions import build_definitions
from navembed_pipeline.instance import open_instance
from navembed_pipeline.lib.progress import ProgressFormatError, parse_progress
from navembed_pipeline.lib.runs import REEMBED_JOB, Progress, asset_name, embed_run_config, run_tags
from navembed_pipeline.lib.settings import Settings

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    success: bool
    embedded: int
    skipped: int
    failed: int
    error: str | None


def run_reembed(settings: Settings, models: list[str], *, force: bool = False, clear_existing: bool = False,
                show_progress: bool = True) -> RunSummary:
    """Embed the library with ``models`` over all buckets; blocks until the run ends."""
    instance = open_instance(settings.dagster_home, postgres_url=settings.postgres_url)
    job = build_definitions(settings).resolve_job_def(REEMBED_JOB)
    run_id = make_new_run_id()
    latest: dict[str, Progress] = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(instance, run_id, latest, done, show_progress), daemon=True)
    watcher.start()
    try:
        result = job.execute_in_process(
            run_config={**embed_run_config(models, force=force, clear_existing=clear_existing),
                        "loggers": {"console": {"config": {"log_level": "ERROR"}}}},  # the bar reports
            instance=instance, run_id=run_id, tags=run_tags("cli"),
            asset_selection=[dg.AssetKey(asset_name(m)) for m in models], raise_on_error=False)
    finally:
        done.set()
        watcher.join()
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        error = failures[0].step_failure_data.error.message.strip() if failures else "run failed"
    totals = {k: sum(getattr(p, k) for p in latest.values()) for k in ("embedded", "skipped", "failed")}
    return RunSummary(run_id, result.success, error=error, **totals)


def _watch(instance: dg.DagsterInstance, run_id: str, latest: dict[str, Progress], done: threading.Event,
           show: bool) -> None:
    """Follow the run's progress lines in the event log and draw one bar per model."""
    bars: dict[str, tqdm] = {}
    cursor: str | None = None

    def update() -> None:
        # Only the events logged since the last poll (a run logs hundreds of materializations).
        nonlocal cursor
        page = instance.get_records_for_run(run_id, cursor=cursor)
        for record in page.records:
            try:
                progress = parse_progress(record.event_log_entry.user_message or "")
            except ProgressFormatError as exc:  # written by another navembed version: say so, go on
                tqdm.write(f"unreadable progress line: {exc}")
                continue
            if progress is not None:
                latest[progress.model] = progress
                if show:
                    _draw(bars, progress)
        cursor = page.cursor

    while not done.wait(POLL_SECONDS):
        update()
    update()
    for bar in bars.values():
        bar.close()


def _draw(bars: dict[str, tqdm], progress: Progress) -> None:
    """One bar per model with the same figures the Dagster log line and ``/batch/progress`` show."""
    if progress.model not in bars:
        bars[progress.model] = tqdm(total=progress.total, desc=f"{progress.model:>6}", unit="track",
                                    dynamic_ncols=True)
    bar = bars[progress.model]
    bar.n = progress.processed
    bar.set_postfix_str(f"{progress.figures()} {(progress.current_track or '')[:40]}", refresh=False)
    bar.refresh()

