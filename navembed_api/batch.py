"""Re-embed control over Dagster: start one run over every bucket, report its progress, cancel it.

A re-embed is one run of ``reembed_job`` covering all 256 buckets (partition-range tags),
restricted to the chosen models' assets. Progress is read incrementally: each run's event-log
cursor is kept, so a poll reads only the events logged since the previous one.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from navembed_api.batch_jobs import as_one_progress, as_one_run, job_of, job_runs, workers_entry
from navembed_api.batch_progress import RunProgress, asset_key, is_embedding_run, job_number, progress_response
from navembed_api.dagster_client import ACTIVE_STATUSES, DagsterClient, RunInfo
from navembed_api.errors import Conflict, NotFound, TerminateRefused, Unprocessable
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.errors import WeightsUnreadableError
from navembed_pipeline.lib.models import MODEL_NAMES, weights_present, weights_repos
from navembed_pipeline.lib.runs import REEMBED_JOB, embed_run_config, run_tags
from navembed_pipeline.lib.workers import new_job_id, worker_ranges, worker_tags

LOGGER = logging.getLogger("navembed.api.batch")
API_TRIGGER = "api"
RECENT_RUNS = 50  # how far back the latest embedding run is looked for
CACHED_RUNS = 16
LOG_PAGE = 1000
EXECUTING = ("STARTING", "STARTED", "CANCELING")
CANCEL_RETRY_S = 60.0  # how long a cancel keeps trying on a run Dagster cannot terminate yet
CANCEL_POLL_S = 0.25


class BatchControl:
    """``/batch/*`` behaviour over a ``DagsterClient``."""

    def __init__(self, client: DagsterClient, *, models_dir_check: Callable[[str], bool] | None = None) -> None:
        self.client = client
        self._weights_ok = models_dir_check or (lambda name: True)
        self._start_lock = asyncio.Lock()
        self._runs: OrderedDict[str, RunProgress] = OrderedDict()
        self._run_locks: dict[str, asyncio.Lock] = {}
        self._retries: set[asyncio.Task] = set()

    async def start(self, models: Sequence[str], *, clear_existing: bool = False,
                    force: bool = False, workers: int = 1, confirm_deletions: bool = False) -> dict[str, Any]:
        """Launch one re-embed run of ``models`` over all buckets (``workers`` > 1: that many runs over
        disjoint bucket ranges, one job); 409 while an embedding run is queued or running.
        ``confirm_deletions``: the run deletes what the deletion guard refused (this run only)."""
        chosen = validate_models(models, weights_ok=self._weights_ok)
        if workers > 1 and clear_existing:
            raise Unprocessable("clearExisting rebuilds each collection in one run: use it with workers 1")
        if workers > 1:
            return await self._start_workers(chosen, force=force, workers=workers,
                                             confirm_deletions=confirm_deletions)
        async with self._start_lock:  # two clicks at once must not launch two runs
            active = await self.active_runs()
            if active:
                run = active[0]
                raise Conflict(f"an embedding run is already {run.status.lower()} (run {run.run_id}); "
                               "wait for it or POST /batch/cancel")
            run_id = await self.client.launch_run(
                REEMBED_JOB, asset_keys=[asset_key(m) for m in chosen],
                run_config=embed_run_config(chosen, force=force, clear_existing=clear_existing,
                                            confirm_deletions=confirm_deletions),
                tags=run_tags(API_TRIGGER))
        return {"status": "started", "job_id": job_number(run_id), "run_id": run_id, "models": chosen,
                "dagster_run_url": self.client.run_url(run_id)}

    async def progress(self, run_id: str | None = None) -> dict[str, Any]:
        """The progress of run ``run_id``, else of the latest embedding run (whoever started it);
        ``{"status": "no_job"}`` when there has been none."""
        if run_id is not None:
            return await self._run_progress(run_id)
        run = await self.latest_run()
        if run is None:
            return {"status": "no_job"}
        if job_of(run.tags):
            return await self._job_progress(run)
        if run.is_active:  # its status may change while its events are read: both in one request
            return await self._run_progress(run.run_id)
        progress = await self._read_new_events(run.run_id)
        return progress_response(run, progress, now=time.time(), run_url=self.client.run_url(run.run_id))

    async def _run_progress(self, run_id: str) -> dict[str, Any]:
        """The progress of run ``run_id`` (404 unless an embedding run): its new events and then its status,
        one request per page of events. Status after the events: a run that ended meanwhile shows its final lines."""
        lock = self._run_locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            progress = self._runs.get(run_id) or RunProgress(run_id)
            while True:
                try:
                    page, run = await self.client.run_and_logs(run_id, after_cursor=progress.cursor, limit=LOG_PAGE)
                except NavembedError:
                    self._forget_lock(run_id)
                    raise
                if not is_embedding_run(run):
                    self._forget_lock(run_id)
                    raise NotFound(f"run {run_id} is a {run.job_name} run, not an embedding run")
                if job_of(run.tags):  # a worker of a fanned-out job: the job's progress (read below, unlocked)
                    break
                self._remember(progress)
                progress.feed(page.events)
                progress.cursor = page.cursor or progress.cursor
                if not page.has_more or not page.events:
                    return progress_response(run, progress, now=time.time(), run_url=self.client.run_url(run_id))
        return await self._job_progress(run)

    def _forget_lock(self, run_id: str) -> None:
        """Drop the lock of a run that is not followed (not found, or not an embedding run)."""
        if run_id not in self._runs:
            self._run_locks.pop(run_id, None)

    async def _start_workers(self, chosen: list[str], *, force: bool, workers: int,
                             confirm_deletions: bool = False) -> dict[str, Any]:
        job, ranges = new_job_id(), worker_ranges(workers)
        async with self._start_lock:
            active = await self.active_runs()
            if active:
                raise Conflict(f"an embedding run is already {active[0].status.lower()} (run {active[0].run_id}); "
                               "wait for it or POST /batch/cancel")
            run_ids = [await self.client.launch_run(
                REEMBED_JOB, asset_keys=[asset_key(m) for m in chosen],
                run_config=embed_run_config(chosen, force=force, confirm_deletions=confirm_deletions),
                tags=worker_tags(API_TRIGGER, job=job, index=i, count=workers, first=first, last=last))
                for i, (first, last) in enumerate(ranges)]
        return {"status": "started", "job_id": job_number(run_ids[0]), "run_id": run_ids[0], "models": chosen,
                "dagster_run_url": self.client.run_url(run_ids[0]), "job": job, "run_ids": run_ids}

    async def _job_progress(self, run: RunInfo) -> dict[str, Any]:
        """The progress of the fanned-out job ``run`` belongs to, as one run."""
        recent = await self.client.runs(limit=RECENT_RUNS)
        runs = job_runs(job_of(run.tags), [*recent, *([] if run.run_id in {r.run_id for r in recent} else [run])])
        readings = [(r, await self._read_new_events(r.run_id)) for r in runs]
        runs = [await self.client.run(r.run_id) if r.is_active else r for r in runs]  # status after the events
        readings = [(fresh, progress) for fresh, (_, progress) in zip(runs, readings)]
        whole = as_one_run(runs)
        answer = progress_response(whole, as_one_progress(whole, readings), now=time.time(),
                                   run_url=self.client.run_url(whole.run_id))
        return {**answer, "job": job_of(run.tags), "workers": workers_entry(runs, self.client.run_url)}

    async def cancel(self) -> dict[str, Any]:
        """Terminate every queued or running embedding run; 404 when there is none.

        A run Dagster cannot terminate yet (still STARTING) is terminated as soon as it can be,
        in the background: the answer does not wait for it.
        """
        active = await self.active_runs()
        if not active:
            raise NotFound("no embedding run is queued or running")
        for run in active:
            if run.status != "CANCELING" and not await self._terminate(run.run_id):
                task = asyncio.create_task(self._terminate_when_possible(run.run_id))
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)
        newest = active[0]
        return {"status": "cancelling", "job_id": job_number(newest.run_id), "run_id": newest.run_id}

    async def aclose(self) -> None:
        """Stop pending cancel retries (the app is shutting down)."""
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def _terminate(self, run_id: str) -> bool:
        try:
            await self.client.terminate_run(run_id)
        except TerminateRefused as exc:
            LOGGER.info("run %s cannot be terminated yet (%s); retrying", run_id, exc)
            return False
        return True

    async def _terminate_when_possible(self, run_id: str) -> None:
        deadline = time.monotonic() + CANCEL_RETRY_S
        while time.monotonic() < deadline:
            await asyncio.sleep(CANCEL_POLL_S)  # polling Dagster: it has no "run started" notification
            try:
                run = await self.client.run(run_id)
                if not run.is_active or run.status == "CANCELING" or await self._terminate(run_id):
                    return
            except NavembedError as exc:
                LOGGER.warning("cancelling run %s: %s", run_id, exc)
        LOGGER.warning("run %s could not be cancelled within %.0f s", run_id, CANCEL_RETRY_S)

    async def active_runs(self) -> list[RunInfo]:
        runs = await self.client.runs(limit=RECENT_RUNS, statuses=ACTIVE_STATUSES)
        return [r for r in runs if is_embedding_run(r)]

    async def latest_run(self) -> RunInfo | None:
        """The newest embedding run that is executing, else the newest one (a queued run waits its turn)."""
        runs = [r for r in await self.client.runs(limit=RECENT_RUNS) if is_embedding_run(r)]
        executing = [r for r in runs if r.status in EXECUTING]
        return (executing or runs or [None])[0]

    async def _read_new_events(self, run_id: str) -> RunProgress:
        """Feed the run's events since the last poll into its cached ``RunProgress``."""
        lock = self._run_locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            progress = self._runs.get(run_id) or RunProgress(run_id)
            self._remember(progress)
            while True:
                page = await self.client.logs_for_run(run_id, after_cursor=progress.cursor, limit=LOG_PAGE)
                progress.feed(page.events)
                progress.cursor = page.cursor or progress.cursor
                if not page.has_more or not page.events:
                    return progress

    def _remember(self, progress: RunProgress) -> None:
        self._runs[progress.run_id] = progress
        self._runs.move_to_end(progress.run_id)
        while len(self._runs) > CACHED_RUNS:
            old, _ = self._runs.popitem(last=False)
            self._run_locks.pop(old, None)


def validate_models(models: Sequence[str], *, weights_ok: Callable[[str], bool]) -> list[str]:
    """The requested models, de-duplicated; unknown ones or ones without weights are a 422."""
    chosen = list(dict.fromkeys(m.strip().lower() for m in models))
    if not chosen:
        raise Unprocessable(f"choose at least one model: {', '.join(MODEL_NAMES)}")
    unknown = [m for m in chosen if m not in MODEL_NAMES]
    if unknown:
        raise Unprocessable(f"unknown model(s) {', '.join(map(repr, unknown))}; known models: "
                            f"{', '.join(MODEL_NAMES)}")
    try:
        missing = [m for m in chosen if not weights_ok(m)]
    except WeightsUnreadableError as exc:  # there, but damaged: a run would only fail
        raise Unprocessable(f"cannot start: {exc}") from None
    if missing:
        raise Unprocessable(f"no weights on this machine for {', '.join(missing)}; download them with "
                            f"`navembed models download {' '.join(missing)}` or leave them out")
    return chosen


def weights_checker(models_dir) -> Callable[[str], bool]:
    """Whether a model's weights are present under ``models_dir`` (or the Hugging Face cache)."""
    return lambda name: weights_present(weights_repos(name), models_dir)
