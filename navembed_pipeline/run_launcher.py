"""The run launcher of navembed's instance: Dagster's default one, plus a health check of each run worker.

Dagster's ``DefaultRunLauncher`` starts a run worker as a local process but cannot tell the daemon's run
monitoring that the worker died (killed, out of memory, or taken down with the daemon that started it): the
run would stay STARTED for ever. This launcher tags every run it launches with the machine it runs on and
answers ``check_run_worker_health`` from the worker's pid (Dagster's own "Started process for run" event).
Run monitoring (dagster.yaml ``run_monitoring``) then marks a run whose worker is gone as failed, and the
instance's run retries (``run_retries``, for such crashes only, not for failed assets) launch it again;
tracks it had already stored are skipped. Runs launched on another machine, or executed in a process
this launcher did not start, are left alone.
"""

import socket

from dagster import DagsterInstance
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from navembed_pipeline.lib.pids import pid_alive, started_at

HOST_TAG = "navembed/launched_on"
WORKER_STARTED = "Started process for run"  # the engine event Dagster's code server logs with the pid
CLOCK_SLACK_S = 5.0


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers the daemon's run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def launch_run(self, context: LaunchRunContext) -> None:
        """Record where the worker runs (only this machine can check its pid), then launch as Dagster does."""
        self._instance.add_run_tags(context.dagster_run.run_id, {HOST_TAG: socket.gethostname()})
        super().launch_run(context)

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """FAILED when the run's worker process is gone; RUNNING when it runs or cannot be checked here."""
        if run.tags.get(HOST_TAG) != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, "launched elsewhere; not checked here")
        started = worker_started(self._instance, run.run_id)
        if started is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker recorded yet")
        pid, at = started
        if process_alive(pid, started_by=at + CLOCK_SLACK_S):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker process (pid {pid}) is gone")


def worker_started(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid and start time (epoch s) of the run's latest worker process, from its engine events."""
    entries = instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
    for entry in reversed(entries):
        event = entry.dagster_event
        if event is None or not (event.message or "").startswith(WORKER_STARTED):
            continue
        pid = event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def process_alive(pid: int, *, started_by: float) -> bool:
    """Whether ``pid`` runs, is no zombie, and is the process started by ``started_by`` (not a reused pid)."""
    if not pid_alive(pid):
        return False
    start = started_at(pid)
    return start is None or start <= started_by
