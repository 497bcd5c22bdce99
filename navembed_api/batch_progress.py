"""Turn a Dagster run and its structured progress lines into the original ``/batch/progress`` answer.

Pure logic, no I/O: ``RunProgress`` accumulates the events read so far (with the cursor to read on
from), ``progress_response`` renders the answer. Each embedding asset logs
``navembed.progress {json}`` lines (model, total, processed, embedded, skipped, failed,
current_track, tracks_per_second, eta_seconds); a run over several models runs them one after
another, so the run's figures are the models' figures combined:

* ``total_tracks`` is the library size; ``processed_tracks`` counts tracks every selected model
  has passed (the mean over models, so two models half done = half the tracks); ``failed_tracks``
  is the most any model failed (a broken file fails in every model, it is one track);
* ``progress_percent`` is the exact share of (track, model) pairs done;
* ``estimated_completion`` (unix time) adds the running model's ETA and, for models not started
  yet, their tracks at the latest known rate.
"""

import json
import math
from dataclasses import dataclass, field
from typing import Any

from navembed_api.dagster_client import RunEvent, RunInfo
from navembed_pipeline.jobs import ASSET_SUFFIX, embedded_models
from navembed_pipeline.jobs import is_embedding_run as embeds
from navembed_pipeline.lib.progress import PROGRESS_PREFIX

TRIGGER_TAG = "navembed/trigger"
FAILURE_EVENTS = ("ExecutionStepFailureEvent", "RunFailureEvent")

STATUS_BY_DAGSTER = {
    "QUEUED": "initialized", "NOT_STARTED": "initialized", "STARTING": "initialized", "MANAGED": "initialized",
    "STARTED": "running", "CANCELING": "running",
    "SUCCESS": "completed", "FAILURE": "failed", "CANCELED": "cancelled",
}
TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")


def asset_key(model: str) -> str:
    return f"{model}{ASSET_SUFFIX}"


def embedding_models(run: RunInfo) -> list[str]:
    """The models whose embedding assets ``run`` materializes (in the pipeline's model order)."""
    return embedded_models(run.asset_keys)


def is_embedding_run(run: RunInfo) -> bool:
    """Runs of the embedding jobs, and asset runs (Dagster UI, sensors) that embed any model."""
    return embeds(run.job_name, run.asset_keys)


def job_number(run_id: str) -> int:
    """The original API's numeric ``job_id``: the run id's first 32 bits (the run id is given too)."""
    digits = run_id.replace("-", "")[:8]
    try:
        return int(digits, 16)
    except ValueError:
        return 0


def trigger_of(run: RunInfo) -> str:
    """Who started the run: navembed's own tag, else Dagster's sensor/schedule/backfill tags, else the UI."""
    tags = run.tags
    if TRIGGER_TAG in tags:
        return tags[TRIGGER_TAG]
    for key, label in (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule"),
                       ("dagster/backfill", "backfill")):
        if key in tags:
            return f"{label}:{tags[key]}"
    return "dagster_ui"


@dataclass
class RunProgress:
    """What has been read of one run's event log so far."""

    run_id: str
    cursor: str | None = None
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> last progress line
    seen_at: dict[str, float] = field(default_factory=dict)  # model -> time of that line
    error: str | None = None

    def feed(self, events: tuple[RunEvent, ...] | list[RunEvent]) -> None:
        """Take in events that follow the ones already fed (in log order)."""
        for event in events:
            if event.message.startswith(PROGRESS_PREFIX):
                line = _parse_progress(event.message)
                if line is not None:
                    self.latest[line["model"]] = line
                    self.seen_at[line["model"]] = event.timestamp
            elif event.kind in FAILURE_EVENTS and self.error is None:
                self.error = (event.error or event.message).strip() or None


def _parse_progress(message: str) -> dict[str, Any] | None:
    try:
        line = json.loads(message[len(PROGRESS_PREFIX):])
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("model"), str):
        return None
    return line


def progress_response(run: RunInfo, progress: RunProgress, *, now: float, run_url: str) -> dict[str, Any]:
    """The ``/batch/progress`` body for ``run``: the original fields first, then navembed's extras."""
    models = embedding_models(run) or sorted(progress.latest)
    lines = {m: progress.latest[m] for m in models if m in progress.latest}
    total = max((int(line.get("total", 0)) for line in lines.values()), default=0)
    units_total = total * len(models)
    units_done = sum(min(int(line.get("processed", 0)), total) for line in lines.values())
    failed = max((int(line.get("failed", 0)) for line in lines.values()), default=0)
    status = _status(run.status, failed)
    percent = round(100.0 * units_done / units_total, 1) if units_total else 0.0
    current = _current_track(progress, lines)
    return {
        "total_tracks": total,
        "processed_tracks": units_done // len(models) if models else 0,
        "failed_tracks": failed,
        "current_track": current,
        "status": status,
        "progress_percent": percent,
        "estimated_completion": _completion(run, progress, lines, models, total, status=status, now=now),
        "skipped_tracks": max((int(line.get("skipped", 0)) for line in lines.values()), default=0),
        "tracks_per_second": _rate(progress, lines),
        "models": {m: _model_entry(lines.get(m), total) for m in models},
        "job_id": job_number(run.run_id),
        "run_id": run.run_id,
        "dagster_status": run.status,
        "dagster_run_url": run_url,
        "trigger": trigger_of(run),
        "started_at": run.start_time,
        "finished_at": run.end_time,
        "error": progress.error if status == "failed" else None,
    }


def _status(dagster_status: str, failed: int) -> str:
    status = STATUS_BY_DAGSTER.get(dagster_status, "running")
    return "completed_with_errors" if status == "completed" and failed > 0 else status


def _current_track(progress: RunProgress, lines: dict[str, dict[str, Any]]) -> str | None:
    if not lines:
        return None
    newest = max(lines, key=lambda m: progress.seen_at.get(m, 0.0))
    return lines[newest].get("current_track")


def _rate(progress: RunProgress, lines: dict[str, dict[str, Any]]) -> float:
    if not lines:
        return 0.0
    newest = max(lines, key=lambda m: progress.seen_at.get(m, 0.0))
    return float(lines[newest].get("tracks_per_second") or 0.0)


def _model_entry(line: dict[str, Any] | None, total: int) -> dict[str, Any]:
    if line is None:
        return {"status": "pending", "total": total, "processed": 0, "embedded": 0, "skipped": 0, "failed": 0}
    done = int(line.get("processed", 0)) >= int(line.get("total", 0))
    return {"status": "done" if done else "running",
            **{k: int(line.get(k, 0)) for k in ("total", "processed", "embedded", "skipped", "failed")}}


def _completion(run: RunInfo, progress: RunProgress, lines: dict[str, dict[str, Any]], models: list[str],
                total: int, *, status: str, now: float) -> float | None:
    """Unix time the run should end: its end time once over, else now + the remaining work's ETA."""
    if status in TERMINAL:
        return run.end_time
    rate = _rate(progress, lines)
    remaining = 0.0
    for model in models:
        line = lines.get(model)
        if line is None:
            if rate <= 0:
                return None
            remaining += total / rate
            continue
        eta = line.get("eta_seconds")
        if eta is None:
            if int(line.get("processed", 0)) < int(line.get("total", 0)):
                return None
            continue
        waited = max(0.0, now - progress.seen_at.get(model, now))
        remaining += max(0.0, float(eta) - waited)
    if not math.isfinite(remaining):
        return None
    return round(now + remaining, 3)
