"""A job fanned out over N worker runs (``/batch/start`` with ``workers``), seen as one run.

Pure logic, no I/O. The runs of one job share ``navembed/job`` (``lib/workers.py``); ``as_one_run``
folds them into one ``RunInfo`` (the status a user would expect of the whole job) and
``as_one_progress`` folds their event-log readings into one ``RunProgress``, so
``progress_response`` renders the job exactly as it renders a single run.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from navembed_api.batch_progress import RunProgress
from navembed_api.dagster_client import RunInfo
from navembed_pipeline.lib.runs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from navembed_pipeline.lib.workers import JOB_TAG, RESUMES_TAG, WORKER_TAG, combined_progress, job_of

# The job's status while any run is active: the most advanced one wins.
ACTIVE_ORDER = ("CANCELING", "STARTED", "STARTING", "NOT_STARTED", "QUEUED")

__all__ = ["as_one_progress", "as_one_run", "job_of", "job_runs", "workers_entry"]


def job_runs(job: str, runs: Sequence[RunInfo]) -> list[RunInfo]:
    """The runs of ``job`` among ``runs``, in worker order (resume runs after the run they resume)."""
    mine = [r for r in runs if r.tags.get(JOB_TAG) == job]
    return sorted(mine, key=lambda r: (_worker_number(r), r.creation_time))


def _superseded(runs: Sequence[RunInfo]) -> set[str]:
    """Runs whose worker died and whose buckets another run of the job took over."""
    return {r.tags[RESUMES_TAG] for r in runs if RESUMES_TAG in r.tags}


def as_one_run(runs: Sequence[RunInfo]) -> RunInfo:
    """One ``RunInfo`` for the job: active while any run is; else failed / cancelled if any run that
    counts (not one a resume took over from) was, else succeeded."""
    first = runs[0]
    active = [r.status for r in runs if r.is_active]
    if active:
        status = min(active, key=lambda s: ACTIVE_ORDER.index(s) if s in ACTIVE_ORDER else len(ACTIVE_ORDER))
    else:
        final = {r.status for r in runs if r.run_id not in _superseded(runs)}
        status = "FAILURE" if "FAILURE" in final else "CANCELED" if "CANCELED" in final else "SUCCESS"
    starts = [r.start_time for r in runs if r.start_time is not None]
    ends = [r.end_time for r in runs if r.end_time is not None]
    keys = tuple(dict.fromkeys(k for r in runs for k in r.asset_keys))
    return replace(first, status=status, asset_keys=keys, creation_time=min(r.creation_time for r in runs),
                   start_time=min(starts) if starts else None,
                   end_time=max(ends) if ends and not active else None)


def as_one_progress(job_run: RunInfo, readings: Sequence[tuple[RunInfo, RunProgress]]) -> RunProgress:
    """The job's ``RunProgress``: per model, the runs' latest lines added up (``combined_progress``)."""
    superseded = _superseded([run for run, _ in readings])
    out = RunProgress(job_run.run_id)
    models = dict.fromkeys(m for _, p in readings for m in p.latest)
    for model in models:
        parts = [(p.latest[model], run.is_active, run.run_id in superseded) for run, p in readings if model in p.latest]
        out.latest[model] = combined_progress(model, parts)
        out.seen_at[model] = max(p.seen_at.get(model, 0.0) for _, p in readings)
    counted = [p for run, p in readings if run.run_id not in superseded]
    out.error = next((p.error for p in counted if p.error), None)
    out.format_error = next((p.format_error for _, p in readings if p.format_error), None)
    return out


def workers_entry(runs: Sequence[RunInfo], run_url) -> list[dict[str, Any]]:
    """Per run of the job: which worker, its bucket range, its Dagster status and link."""
    superseded = _superseded(runs)
    return [{"worker": r.tags.get(WORKER_TAG), "run_id": r.run_id, "dagster_status": r.status,
             "first_bucket": r.tags.get(PARTITION_RANGE_START_TAG), "last_bucket": r.tags.get(PARTITION_RANGE_END_TAG),
             "resumes": r.tags.get(RESUMES_TAG), "resumed": r.run_id in superseded,
             "dagster_run_url": run_url(r.run_id)}
            for r in runs]


def _worker_number(run: RunInfo) -> int:
    try:
        return int(run.tags.get(WORKER_TAG, "0/0").split("/")[0])
    except ValueError:
        return 0
