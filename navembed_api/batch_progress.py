"""Turn a Dagster run and its structured progress lines into the original ``/batch/progress`` answer.

Pure logic, no I/O: ``RunProgress`` accumulates the events read so far (with the cursor to read on
from), ``progress_response`` renders the answer. Each embedding asset logs ``lib/runs.Progress``
records as ``navembed.progress {json}`` lines (parsed by ``Progress.from_log_line``: a line whose
fields differ from the record is reported as ``progress_format_error``, never read as zeros); a
run over several models runs them one after another, so the run's figures are the models' combined:

* ``total_tracks`` is the library size; ``processed_tracks`` counts tracks every selected model
  has passed (the mean over models, so two models half done = half the tracks); ``failed_tracks``
  is the most any model failed (a broken file fails in every model, it is one track);
* ``progress_percent`` is the exact share of (track, model) pairs done;
* ``written_tracks`` counts tracks whose vectors every model has stored (writes are batched, so
  it trails ``processed_tracks`` by up to one write batch);
* ``estimated_completion`` (unix time) adds the running model's ETA and, for models not started
  yet, their tracks at the latest known rate.
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from navembed_api.dagster_client import RunEvent, RunInfo
from navembed_pipeline.lib import runs
from navembed_pipeline.lib.runs import PROGRESS_PREFIX, Progress, ProgressFormatError

LOGGER = logging.getLogger("navembed.api.batch")
FAILURE_EVENTS = ("ExecutionStepFailureEvent", "RunFailureEvent")

STATUS_BY_DAGSTER = {
    "QUEUED": "initialized", "NOT_STARTED": "initialized", "STARTING": "initialized", "MANAGED": "initialized",
    "STARTED": "running", "CANCELING": "running",
    "SUCCESS": "completed", "FAILURE": "failed", "CANCELED": "cancelled",
}
TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
__all__ = ["PROGRESS_PREFIX", "RunProgress", "asset_key", "embedding_models", "is_embedding_run", "job_number",
           "progress_response", "trigger_of"]


def asset_key(model: str) -> str:
    return runs.asset_name(model)


def embedding_models(run: RunInfo) -> list[str]:
    """The models whose embedding assets ``run`` materializes (in the pipeline's model order)."""
    return runs.embedded_models(run.asset_keys)


def is_embedding_run(run: RunInfo) -> bool:
    """Runs of the embedding jobs, and asset runs (Dagster UI, sensors) that embed any model."""
    return runs.is_embedding_run(run.job_name, run.asset_keys)


def job_number(run_id: str) -> int:
    """The original API's numeric ``job_id``: the run id's first 32 bits (the run id is given too)."""
    digits = run_id.replace("-", "")[:8]
    try:
        return int(digits, 16)
    except ValueError:
        return 0


def trigger_of(run: RunInfo) -> str:
    """Who started the run: navembed's own tag, else Dagster's sensor/schedule/backfill tags, else the UI."""
    return runs.trigger_of(run.tags)


@dataclass
class RunProgress:
    """What has been read of one run's event log so far."""

    run_id: str
    cursor: str | None = None
    latest: dict[str, Progress] = field(default_factory=dict)  # model -> last progress record
    seen_at: dict[str, float] = field(default_factory=dict)  # model -> time of that record
    error: str | None = None
    format_error: str | None = None  # the last progress line that did not parse (a version mismatch)

    def feed(self, events: tuple[RunEvent, ...] | list[RunEvent]) -> None:
        """Take in events that follow the ones already fed (in log order)."""
        for event in events:
            if event.message.startswith(PROGRESS_PREFIX):
                try:
                    line = Progress.from_log_line(event.message)
                except ProgressFormatError as exc:
                    if self.format_error is None:
                        LOGGER.warning("run %s: unreadable progress line: %s", self.run_id, exc)
                    self.format_error = str(exc)
                    continue
                if line is not None:
                    self.latest[line.model] = line
                    self.seen_at[line.model] = event.timestamp
            elif event.kind in FAILURE_EVENTS and self.error is None:
                self.error = (event.error or event.message).strip() or None


def progress_response(run: RunInfo, progress: RunProgress, *, now: float, run_url: str) -> dict[str, Any]:
    """The ``/batch/progress`` body for ``run``: the original fields first, then navembed's extras."""
    models = embedding_models(run) or sorted(progress.latest)
    lines = {m: progress.latest[m] for m in models if m in progress.latest}
    total = max((line.total for line in lines.values()), default=0)
    units_total = total * len(models)
    units_done = sum(min(line.processed, total) for line in lines.values())
    failed = max((line.failed for line in lines.values()), default=0)
    status = _status(run.status, failed)
    percent = round(100.0 * units_done / units_total, 1) if units_total else 0.0
    newest = _newest(progress, lines)
    return {
        "total_tracks": total,
        "processed_tracks": units_done // len(models) if models else 0,
        "failed_tracks": failed,
        "current_track": newest.current_track if newest else None,
        "status": status,
        "progress_percent": percent,
        "estimated_completion": _completion(run, progress, lines, models, total, status=status, now=now),
        "skipped_tracks": max((line.skipped for line in lines.values()), default=0),
        "written_tracks": min((lines[m].written + lines[m].skipped if m in lines else 0) for m in models)
        if models else 0,
        "tracks_per_second": newest.tracks_per_second if newest else 0.0,
        "models": {m: _model_entry(lines.get(m), total) for m in models},
        "job_id": job_number(run.run_id),
        "run_id": run.run_id,
        "dagster_status": run.status,
        "dagster_run_url": run_url,
        "trigger": trigger_of(run),
        "started_at": run.start_time,
        "finished_at": run.end_time,
        "error": progress.error if status == "failed" else None,
        "progress_format_error": progress.format_error,
    }


def _status(dagster_status: str, failed: int) -> str:
    status = STATUS_BY_DAGSTER.get(dagster_status, "running")
    return "completed_with_errors" if status == "completed" and failed > 0 else status


def _newest(progress: RunProgress, lines: dict[str, Progress]) -> Progress | None:
    if not lines:
        return None
    return lines[max(lines, key=lambda m: progress.seen_at.get(m, 0.0))]


def _model_entry(line: Progress | None, total: int) -> dict[str, Any]:
    if line is None:
        return {"status": "pending", "total": total, "processed": 0, "embedded": 0, "written": 0, "skipped": 0,
                "failed": 0, "percent": 0.0, "tracks_per_second": 0.0, "eta_seconds": None}
    return {"status": "done" if line.done else "running", "total": line.total, "processed": line.processed,
            "embedded": line.embedded, "written": line.written, "skipped": line.skipped, "failed": line.failed,
            "percent": line.percent, "tracks_per_second": line.tracks_per_second, "eta_seconds": line.eta_seconds}


def _completion(run: RunInfo, progress: RunProgress, lines: dict[str, Progress], models: list[str],
                total: int, *, status: str, now: float) -> float | None:
    """Unix time the run should end: its end time once over, else now + the remaining work's ETA."""
    if status in TERMINAL:
        return run.end_time
    newest = _newest(progress, lines)
    rate = newest.tracks_per_second if newest else 0.0
    remaining = 0.0
    for model in models:
        line = lines.get(model)
        if line is None:
            if rate <= 0:
                return None
            remaining += total / rate
            continue
        if line.eta_seconds is None:
            if not line.done:
                return None
            continue
        waited = max(0.0, now - progress.seen_at.get(model, now))
        remaining += max(0.0, line.eta_seconds - waited)
    if not math.isfinite(remaining):
        return None
    return round(now + remaining, 3)
