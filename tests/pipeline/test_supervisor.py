"""The supervisor on real child processes: restart with backoff, give up on a crash loop, say so in stack.json."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from navembed_pipeline.stack import supervisor as sup
from navembed_pipeline.lib.stack_status import read_status
from navembed_pipeline.stack.supervisor import Part, Supervisor


class Child:
    """A real process run by ``command``, started again on ``restart()``."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.starts = 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        self.starts += 1
        return subprocess.Popen(self.command)

    def exit_code(self) -> int | None:
        return self.process.poll()

    def restart(self) -> None:
        self.process = self._start()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def no_dagster(query: str, variables: dict) -> dict:
    raise ConnectionError("no webserver in this test")


def run_until(supervisor: Supervisor, done, timeout: float = 20.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gave_up = supervisor.check()
        if gave_up or done():
            return gave_up
        time.sleep(0.05)
    raise AssertionError("supervision did not get there in time")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sup, "BACKOFF_S", (0.1, 0.2, 0.4))


def test_a_killed_part_is_restarted_logged_and_reported(tmp_path: Path) -> None:
    events: list[str] = []
    child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor = Supervisor(tmp_path, log=events.append, graphql=no_dagster)
    supervisor.add(Part("dagster-daemon", exit_code=child.exit_code, restart=child.restart))
    try:
        assert read_status(tmp_path)["parts"]["dagster-daemon"]["state"] == "running"
        child.process.kill()
        run_until(supervisor, lambda: read_status(tmp_path)["parts"]["dagster-daemon"]["state"] == "restarting")
        run_until(supervisor, lambda: child.starts == 2 and child.exit_code() is None)
        part = read_status(tmp_path)["parts"]["dagster-daemon"]
        assert part["state"] == "running" and part["restarts"] == 1 and part["last_exit_code"] == -9
        assert events[0].startswith("dagster-daemon exited with code -9; restarting it in 0.1 s")
        assert events[-1] == "dagster-daemon is running again (restart 1)"
    finally:
        child.stop()


def test_a_part_that_dies_right_after_every_start_is_given_up_on(tmp_path: Path) -> None:
    events: list[str] = []
    child = Child([sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Supervisor(tmp_path, log=events.append, graphql=no_dagster)
    supervisor.add(Part("dagster-webserver", exit_code=child.exit_code, restart=child.restart))
    assert run_until(supervisor, lambda: False) == "dagster-webserver"
    assert child.starts == 1 + sup.MAX_QUICK_DEATHS
    assert read_status(tmp_path)["parts"]["dagster-webserver"]["state"] == "failed"
    assert "giving up" in events[-1]


def test_nothing_restarts_once_the_stack_stops(tmp_path: Path) -> None:
    child = Child([sys.executable, "-c", "pass"])
    supervisor = Supervisor(tmp_path, log=lambda line: None, graphql=no_dagster)
    supervisor.add(Part("api", exit_code=child.exit_code, restart=child.restart))
    child.process.wait()
    supervisor.stopped = True
    assert supervisor.check() is None and child.starts == 1


def test_a_failed_restart_is_retried_with_backoff(tmp_path: Path) -> None:
    events: list[str] = []
    child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    attempts = []

    def flaky_restart() -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError("port still in use")
        child.restart()

    supervisor = Supervisor(tmp_path, log=events.append, graphql=no_dagster)
    supervisor.add(Part("milvus", exit_code=child.exit_code, restart=flaky_restart))
    try:
        child.process.kill()
        run_until(supervisor, lambda: len(attempts) == 2 and child.exit_code() is None)
        assert any("restarting milvus failed: port still in use" in e for e in events)
        assert read_status(tmp_path)["parts"]["milvus"]["state"] == "running"
    finally:
        child.stop()


class RunsAfterACrash:
    """Dagster's answers about three runs a crash interrupted: one still STARTED (run monitoring then fails it
    and Dagster retries it), one that failed in an asset at the crash (Dagster does not retry that), one
    that failed long before the crash; records every re-execution asked for."""

    def __init__(self, crashed_at: float) -> None:
        self.crashed_at = crashed_at
        self.reexecuted: list[str] = []
        self.status = {"started": "STARTED", "asset-failed": "FAILURE", "old-failure": "FAILURE"}
        self.tags = {"asset-failed": [{"key": "dagster/will_retry", "value": "false"}], "old-failure": []}

    def __call__(self, query: str, variables: dict) -> dict:
        if "runsOrError" in query:
            ends = {"started": None, "asset-failed": self.crashed_at + 1, "old-failure": self.crashed_at - 3600}
            return {"runsOrError": {"results": [
                {"runId": run, "status": self.status[run], "jobName": "reembed_job", "endTime": ends[run],
                 "assetSelection": [{"path": ["embeddings_dsp"]}]} for run in self.status]}}
        if "runOrError" in query:
            run = variables["id"]
            if run == "started":  # run monitoring has found its worker gone by now
                self.status[run], self.tags[run] = "FAILURE", [{"key": "dagster/will_retry", "value": "true"}]
            return {"runOrError": {"runId": run, "status": self.status[run], "tags": self.tags[run]}}
        run = variables["params"]["parentRunId"]
        self.reexecuted.append(run)
        return {"launchPipelineReexecution": {"__typename": "LaunchRunSuccess", "run": {"runId": f"{run}-again"}}}


def test_after_a_crash_only_runs_dagster_does_not_retry_are_reexecuted_once(tmp_path: Path) -> None:
    events: list[str] = []
    dagster = RunsAfterACrash(crashed_at=time.time() - 60)
    supervisor = Supervisor(tmp_path, log=events.append, graphql=dagster)
    supervisor.after_crash(since=dagster.crashed_at)
    supervisor.join(timeout=30)
    assert dagster.reexecuted == ["asset-failed"]  # not the one Dagster retries, not the one that failed before
    assert supervisor.relaunched == {"asset-failed": "asset-failed-again"}
    assert "run started failed; Dagster's run retries launch it again" in events
