"""The run launcher of navembed's instance: Dagster's default one, plus a health check of each run worker.

Dagster's ``DefaultRunLauncher`` starts a run worker as a local process but cannot tell the daemon's run
monitoring that the worker died (killed, out of memory, or taken down with the daemon that started it): the
run would stay STARTED for ever. This launcher tags every run it launches with the machine it runs on and
answers ``check_run_worker_health`` from the worker's pid (Dagster's own "Started process for run" event).
Run monitoring (dagster.yaml ``run_monitoring``) then marks a run whose worker is gone as failed, and the
instance's run retries (``run_retries``, for such crashes only, not for failed assets) launch it again;
tracks it had already stored are skipped. Runs launched on another machine, or executed in a process
this launcher did not start, are left alone.

Run workers are forked from a warm process (``warm_start.py``): the daemon keeps a fork server with
Dagster, torch and the other heavy imports loaded, so a run's worker does not spend seconds importing them
before its first step. A run the warm path cannot start (another machine's code, no ``fork``) is launched
through the code server as Dagster does.
"""

import os
import socket
import sys
import threading

from dagster import DagsterInstance
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import serialize_value

from navembed_pipeline import warm_start
from navembed_pipeline.lib.pids import pid_alive, started_at

HOST_TAG = "navembed/launched_on"
WORKER_TAG = "navembed/run_worker"  # "forked": started by warm_start, stopped by this launcher's terminate
FORKED = "forked"
WORKER_STARTED = "Started process for run"  # the engine event Dagster's code server logs with the pid
CLOCK_SLACK_S = 5.0


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers the daemon's run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def __init__(self, inst_data=None) -> None:
        super().__init__(inst_data=inst_data)
        self._warm = warm_start.WarmStarter() if warm_start.enabled() else None
        if self._warm is not None and _in_daemon():  # the daemon launches the queued runs: warm up now
            threading.Thread(target=self._warm.prestart, daemon=True, name="navembed-warm-start").start()

    def launch_run(self, context: LaunchRunContext) -> None:
        """Record where the worker runs (only this machine can check its pid), then fork a warm worker
        (or, when that is not possible, launch through the code server as Dagster does)."""
        run = context.dagster_run
        self._instance.add_run_tags(run.run_id, {HOST_TAG: socket.gethostname()})
        if self._warm is not None and _local_code(run):
            self._instance.report_engine_event("Launching a run worker forked from navembed's warm process",
                                               run, cls=self.__class__)
            try:
                self._warm.start(run.run_id, serialize_value(self._instance.get_ref()))
            except (OSError, EOFError) as exc:  # the fork server is gone or cannot fork: Dagster's own way
                self._instance.report_engine_event(f"The warm process could not fork a run worker ({exc}); "
                                                   "launching through the code server", run, cls=self.__class__)
            else:
                self._instance.add_run_tags(run.run_id, {WORKER_TAG: FORKED})
                return
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        """Interrupt a forked worker (its run ends CANCELED), else ask the code server as Dagster does.
        False while a forked worker has not started yet (the caller asks again)."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.tags.get(WORKER_TAG) != FORKED:
            return super().terminate(run_id)
        started = worker_started(self._instance, run_id)
        if run.tags.get(HOST_TAG) != socket.gethostname() or started is None:
            return False
        pid, at = started
        self._instance.report_run_canceling(run)
        if process_alive(pid, started_by=at + CLOCK_SLACK_S):
            warm_start.interrupt(pid)
        return True

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


def _local_code(run: DagsterRun) -> bool:
    """Whether the run's code can be loaded by this machine's interpreter (a forked worker runs it here)."""
    origin = run.job_code_origin
    return origin is not None and same_environment(origin.repository_origin.executable_path, sys.executable)


def same_environment(python: str, other: str) -> bool:
    """Whether two interpreter paths are in the same bin folder (a venv reached through a symlink is the
    same venv; the interpreters themselves are often links to one base Python, shared by every venv)."""
    return os.path.realpath(os.path.dirname(python)) == os.path.realpath(os.path.dirname(other))


def _in_daemon() -> bool:
    """Whether this process is ``dagster-daemon`` (the one that launches queued runs)."""
    argv0 = sys.argv[0] if sys.argv else ""
    return "dagster-daemon" in argv0 or argv0.replace("\\", "/").endswith("dagster/_daemon/__main__.py")


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
