"""`navembed reembed --workers N`: one re-embed as N worker processes over disjoint bucket ranges.

The coordinator splits the buckets (``lib/workers.py``), starts one worker process per range
(``fanout_worker.py``: one Dagster run each, the model loaded once per run, all runs tagged with
one job id), follows their progress lines in the instance's event log as one job, and resumes a
worker that dies (killed, out of memory): its run is marked failed and a new run takes over the
buckets it had not finished; tracks it had already stored are skipped. Ctrl-C stops every worker.
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import dagster as dg

from navembed_pipeline.cli.fanout_worker import WorkerSpec, worker_spec
from navembed_pipeline.instance import instance_env, open_instance
from navembed_pipeline.lib.buckets import BUCKETS
from navembed_pipeline.lib.runs import (PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, Progress,
                                        ProgressFormatError, asset_name)
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.workers import check_job_id, combined_progress, new_job_id, unfinished_ranges, worker_ranges

POLL_S = 0.5
STOP_GRACE_S = 30.0
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass
class WorkerRun:
    """One worker process and the Dagster run it executes."""

    index: int
    spec: WorkerSpec
    process: subprocess.Popen
    cursor: str | None = None
    progress: dict[str, Progress] = field(default_factory=dict)  # model -> latest line
    outcome: str | None = None  # success / failed / cancelled / died

    @property
    def first(self) -> str:
        return self.spec.tags[PARTITION_RANGE_START_TAG]

    @property
    def last(self) -> str:
        return self.spec.tags[PARTITION_RANGE_END_TAG]


@dataclass(frozen=True)
class FanoutSummary:
    job: str
    success: bool
    runs: tuple[str, ...]
    resumed: tuple[str, ...]  # runs whose worker died and whose unfinished buckets were taken over
    embedded: int
    skipped: int
    failed: int
    seconds: float


class Fanout:
    """Start, follow and resume the N workers of one re-embed."""

    def __init__(self, settings: Settings, models: list[str], *, workers: int, force: bool = False,
                 first: str = BUCKETS[0], last: str = BUCKETS[-1], job: str | None = None, resumes: int = 2,
                 trigger: str = "cli") -> None:
        self.settings, self.models, self.force, self.trigger = settings, list(models), force, trigger
        self.count = workers
        self.ranges = worker_ranges(workers, first, last)
        self.resumes_left = resumes
        self.job = check_job_id(job) if job else new_job_id()
        self.instance = open_instance(settings.dagster_home, postgres_url=settings.postgres_url)
        self.runs: list[WorkerRun] = []
        self.resumed: list[str] = []
        self._env = _worker_env(settings)
        self._started = time.monotonic()

    def start(self) -> None:
        for index, (first, last) in enumerate(self.ranges):
            self._spawn(index, first, last)

    def _spawn(self, index: int, first: str, last: str, *, resumes: str | None = None) -> WorkerRun:
        spec = worker_spec(self.models, job=self.job, index=index, count=self.count, first=first, last=last,
                           force=self.force, trigger=self.trigger, resumes=resumes)
        process = subprocess.Popen([sys.executable, "-m", "navembed_pipeline.cli.fanout_worker", spec.to_json()],
                                   env=self._env, stdin=subprocess.DEVNULL, start_new_session=True)
        run = WorkerRun(index, spec, process)
        self.runs.append(run)
        return run

    @property
    def active(self) -> list[WorkerRun]:
        return [r for r in self.runs if r.outcome is None]

    def poll(self) -> bool:
        """Read new progress, settle workers that exited, resume dead ones; True while any is active."""
        for run in self.active:
            self._read_progress(run)
            if run.process.poll() is not None:
                self._settle(run)
        return bool(self.active)

    def wait(self, *, on_poll=lambda fanout: None) -> FanoutSummary:
        """Poll until every worker is done (Ctrl-C stops them all and re-raises)."""
        try:
            while self.poll():
                on_poll(self)
                time.sleep(POLL_S)
        except BaseException:
            self.stop()
            raise
        on_poll(self)
        return self.summary()

    def stop(self) -> None:
        """Interrupt every worker (their runs end cancelled or failed); kill what lingers."""
        for run in self.active:
            _signal(run.process, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for run in self.active:
            try:
                run.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(run.process, signal.SIGKILL)
                run.process.wait()
            self._read_progress(run)
            self._settle(run, resume=False)

    def _settle(self, run: WorkerRun, *, resume: bool = True) -> None:
        record = self.instance.get_run_by_id(run.spec.run_id)
        if record is not None and record.status in FINISHED:
            run.outcome = {dg.DagsterRunStatus.SUCCESS: "success",
                           dg.DagsterRunStatus.CANCELED: "cancelled"}.get(record.status, "failed")
            return
        run.outcome = "died"  # the process is gone but its run never ended: killed or crashed
        if record is not None:
            self.instance.report_run_failed(record, message=f"worker process exited with code "
                                                            f"{run.process.returncode} before its run ended")
        if not resume or self.resumes_left <= 0:
            return
        self.resumes_left -= 1
        self.resumed.append(run.spec.run_id)
        for first, last in unfinished_ranges(run.first, run.last, self.finished_buckets(run.spec.run_id)):
            self._spawn(run.index, first, last, resumes=run.spec.run_id)

    def finished_buckets(self, run_id: str) -> set[str]:
        """Buckets the run materialized for every one of its models."""
        done: dict[str, set[str]] = {asset_name(m): set() for m in self.models}
        records = self.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        for record in records.records:
            materialization = record.event_log_entry.asset_materialization
            if materialization is not None and materialization.partition:
                done.setdefault(materialization.asset_key.to_user_string(), set()).add(materialization.partition)
        return set.intersection(*done.values()) if done else set()

    def _read_progress(self, run: WorkerRun) -> None:
        while True:
            page = self.instance.get_records_for_run(run.spec.run_id, cursor=run.cursor, limit=1000)
            for record in page.records:
                try:
                    line = Progress.from_log_line(record.event_log_entry.user_message or "")
                except ProgressFormatError:  # written by another navembed version: not ours to read
                    continue
                if line is not None:
                    run.progress[line.model] = line
            run.cursor = page.cursor or run.cursor
            if not page.has_more:
                return

    def combined(self) -> dict[str, Progress]:
        """Per model, the job's progress so far: every worker's latest line added up."""
        out: dict[str, Progress] = {}
        for model in self.models:
            pairs = [(r, r.progress[model]) for r in self.runs if model in r.progress]
            if pairs:
                out[model] = combined_progress(model, [(line, run.outcome is None, run.outcome == "died")
                                                        for run, line in pairs])
        return out

    def summary(self) -> FanoutSummary:
        totals = self.combined()
        ended = [r for r in self.runs if r.outcome != "died"]
        # Success: every run that ended succeeded and every dead worker's buckets were taken over.
        covered = all(r.spec.run_id in self.resumed for r in self.runs if r.outcome == "died")
        return FanoutSummary(
            job=self.job, success=bool(ended) and covered and all(r.outcome == "success" for r in ended),
            runs=tuple(r.spec.run_id for r in self.runs), resumed=tuple(self.resumed),
            embedded=sum(p.embedded for p in totals.values()), skipped=sum(p.skipped for p in totals.values()),
            failed=max((p.failed for p in totals.values()), default=0),
            seconds=round(time.monotonic() - self._started, 2))


def _worker_env(settings: Settings) -> dict[str, str]:
    from navembed_pipeline.stack import settings_env

    env = {**os.environ, **settings_env(settings), **instance_env(settings.dagster_home, settings.postgres_url)}
    if not settings.milvus_uri:  # every worker must reach the same store: the Lite server's URI, started once
        from navembed_pipeline.lib.store import ensure_running

        env["NAVEMBED_MILVUS_URI"] = ensure_running(settings.milvus_data_dir)
    return env


def _signal(process: subprocess.Popen, sig: signal.Signals) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass


def run_fanout(settings: Settings, models: list[str], *, workers: int, force: bool = False,
               buckets: tuple[str, str] = (BUCKETS[0], BUCKETS[-1]), job: str | None = None,
               show_progress: bool = False) -> FanoutSummary:
    """Re-embed buckets ``buckets`` (inclusive) with ``workers`` worker processes, as job ``job`` (one
    is made up when None; machines sharing a job id show as one job); blocks until they are done."""
    fanout = Fanout(settings, models, workers=workers, force=force, first=buckets[0], last=buckets[1], job=job)
    fanout.start()
    bars = Bars() if show_progress else None
    try:
        return fanout.wait(on_poll=bars.draw if bars else lambda _: None)
    finally:
        if bars:
            bars.close()


class Bars:
    """One progress bar per model for the whole job (the figures the API's progress shows)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bars: dict = {}

    def draw(self, fanout: Fanout) -> None:
        for model, line in fanout.combined().items():
            if model not in self.bars:
                self.bars[model] = self._tqdm(total=line.total, desc=f"{model:>6}", unit="track", dynamic_ncols=True)
            bar = self.bars[model]
            bar.total, bar.n = line.total, line.processed
            bar.set_postfix_str(f"{len(fanout.active)} workers, {line.figures()}", refresh=False)
            bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
