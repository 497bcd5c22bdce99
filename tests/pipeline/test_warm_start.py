"""Run workers forked from the warm process (``warm_start.py``) through navembed's run launcher, on a real
Dagster instance: the run executes in its own process and succeeds, its pid is what run monitoring checks,
a cancel ends it CANCELED, and a killed worker is reported failed."""

import os
import signal
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.launcher import LaunchRunContext, WorkerStatus
from dagster._daemon.controller import create_daemon_of_type
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from navembed_pipeline import warm_start
from navembed_pipeline.run_launcher import FORKED, WORKER_TAG, LocalRunLauncher, same_environment, worker_started
from tests.pipeline import warm_jobs
from tests.pipeline.helpers import navembed_instance

TIMEOUT_S = 120.0


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with navembed_instance() as instance:
        yield instance


def launch(instance: dg.DagsterInstance, job: dg.JobDefinition) -> dg.DagsterRun:
    origin = dg.reconstructable(getattr(warm_jobs, job.name)).get_python_origin()
    run = instance.create_run_for_job(job, job_code_origin=origin)
    launcher = instance.run_launcher
    assert isinstance(launcher, LocalRunLauncher)
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return run


def wait_for(instance: dg.DagsterInstance, run_id: str, done) -> dg.DagsterRun:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if done(run):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {instance.get_run_by_id(run_id).status} after {TIMEOUT_S} s")


def ended(run: dg.DagsterRun) -> bool:
    return run.is_finished


def test_a_run_executes_in_a_forked_worker_and_succeeds(instance: dg.DagsterInstance) -> None:
    assert warm_start.enabled()
    run = launch(instance, warm_jobs.quick_job)
    final = wait_for(instance, run.run_id, ended)
    assert final.status == dg.DagsterRunStatus.SUCCESS
    assert final.tags[WORKER_TAG] == FORKED
    pid, _ = worker_started(instance, run.run_id)
    assert pid != os.getpid()
    logged = [e.user_message for e in instance.all_logs(run.run_id) if "worker pid" in (e.user_message or "")]
    assert logged == [f"worker pid {pid}"]  # the op ran in the worker whose pid run monitoring checks


def test_a_forked_worker_starts_worker_processes_of_its_own(instance: dg.DagsterInstance) -> None:
    run = launch(instance, warm_jobs.pool_job)
    final = wait_for(instance, run.run_id, ended)
    assert final.status == dg.DagsterRunStatus.SUCCESS
    line = next(e.user_message for e in instance.all_logs(run.run_id) if "worker processes" in (e.user_message or ""))
    pid, _ = worker_started(instance, run.run_id)
    assert line.endswith(f"of run worker {pid}") and str(pid) not in line.split(" of ")[0]
    # forked by the run worker's zygote (torch already loaded), not started by the run worker as fresh interpreters
    parents = line.split("(forked by [")[1].split("]")[0].split(", ")
    assert len(parents) == 1 and int(parents[0]) != pid


def test_a_cancelled_forked_run_ends_cancelled(instance: dg.DagsterInstance) -> None:
    run = launch(instance, warm_jobs.long_job)
    wait_for(instance, run.run_id, lambda r: any(
        e.user_message == "waiting" for e in instance.all_logs(run.run_id)))
    assert instance.run_launcher.terminate(run.run_id)
    final = wait_for(instance, run.run_id, ended)
    assert final.status == dg.DagsterRunStatus.CANCELED


def test_a_killed_forked_worker_is_reported_failed(instance: dg.DagsterInstance) -> None:
    run = launch(instance, warm_jobs.long_job)
    wait_for(instance, run.run_id, lambda r: worker_started(instance, run.run_id) is not None)
    launcher = instance.run_launcher
    assert launcher.check_run_worker_health(instance.get_run_by_id(run.run_id)).status == WorkerStatus.RUNNING
    pid, _ = worker_started(instance, run.run_id)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while launcher.check_run_worker_health(instance.get_run_by_id(run.run_id)).status != WorkerStatus.FAILED:
        assert time.monotonic() < deadline, "the killed worker was never reported"
        time.sleep(0.2)


def test_warm_starts_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAVEMBED_RUN_WORKER_SERVER", "false")
    assert not warm_start.enabled()
    assert LocalRunLauncher()._warm is None  # noqa: SLF001 - then every run goes through the code server


def test_settings_that_do_not_validate_leave_the_launch_to_dagster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAVEMBED_SENSOR_INTERVAL_SECONDS", "often")
    assert not warm_start.enabled()


def test_a_venv_reached_through_a_symlink_is_the_same_environment(tmp_path) -> None:
    venv, other = tmp_path / "venv", tmp_path / "other"
    for root in (venv, other):
        (root / "bin").mkdir(parents=True)
    (tmp_path / "link").symlink_to(venv)
    assert same_environment(str(tmp_path / "link" / "bin" / "python"), str(venv / "bin" / "python3"))
    assert not same_environment(str(other / "bin" / "python"), str(venv / "bin" / "python"))


def test_the_run_events_come_from_dagster(instance: dg.DagsterInstance) -> None:
    run = launch(instance, warm_jobs.quick_job)
    wait_for(instance, run.run_id, ended)
    kinds = [e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event]
    for expected in (DagsterEventType.RUN_START, DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS,
                     DagsterEventType.RUN_SUCCESS):
        assert expected in kinds


def test_the_queue_is_looked_at_twice_a_second_and_keeps_its_lane_limit(instance: dg.DagsterInstance) -> None:
    daemon = create_daemon_of_type(QueuedRunCoordinatorDaemon.daemon_type(), instance)
    assert isinstance(daemon, QueuedRunCoordinatorDaemon) and daemon.interval_seconds == 0.5  # the loop's wait
    queue = instance.get_concurrency_config().run_queue_config  # what the daemon's run queue applies
    assert queue.max_concurrent_runs == 4
    limits = queue.tag_concurrency_limits
    assert {"key": "navembed/lane", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


def test_a_queue_poll_out_of_range_is_refused() -> None:
    from navembed_pipeline.run_queue import QuickQueuedRunCoordinator

    with pytest.raises(ValueError, match="dequeue_poll_seconds"):
        QuickQueuedRunCoordinator(dequeue_poll_seconds=0.0)


# What a run worker imports after its fork: everything but navembed's own code and the standard library
# should already be in the fork server (``PRELOAD``), not imported again by every run.
RUN_WORKER_IMPORTS = """
import importlib, json, sys
from navembed_pipeline.warm_start import PRELOAD
for name in PRELOAD:
    importlib.import_module(name)
before = set(sys.modules)
import navembed_pipeline.definitions as definitions
definitions.defs().get_job_def("reembed_job")  # the code location, as the run worker loads it
from navembed_pipeline.lib.engine import run, decode, pool  # what the embedding step runs
from navembed_pipeline.lib.store import client
top = lambda name: name.split(".")[0]
print(json.dumps(sorted(m for m in set(sys.modules) - before
                        if top(m) not in sys.stdlib_module_names and top(m) != "navembed_pipeline")))
"""


def test_the_fork_server_preloads_every_third_party_module_a_run_worker_imports() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RUN_WORKER_IMPORTS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
