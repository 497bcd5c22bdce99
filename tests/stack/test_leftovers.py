"""One `navembed up` per data dir, and only its own leftovers ended: real processes, real /proc, real locks."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.pids import pid_alive, start_ticks
from navembed_pipeline.lib.stack_status import STACK_DIR_ENV, STACK_TOKEN_ENV
from navembed_pipeline.stack.leftovers import Record, StackInstance, read_record, write_record
from navembed_pipeline.stack.tether import LOCKED_EXIT

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def _start(spawned: list[subprocess.Popen], **env: str) -> subprocess.Popen:
    process = subprocess.Popen(SLEEP, env={**os.environ, **env})
    spawned.append(process)
    _wait(lambda: start_ticks(process.pid) is not None and b"sleep" in Path(f"/proc/{process.pid}/cmdline").read_bytes())
    return process


def _wait(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _gone(process: subprocess.Popen, timeout: float = 10.0) -> bool:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_restart_ends_only_the_earlier_instance_of_its_own_data_dir(tmp_path: Path, spawned: list) -> None:
    data, other = (tmp_path / "data").resolve(), (tmp_path / "other").resolve()
    data.mkdir()
    ours = _start(spawned, **{STACK_DIR_ENV: str(data), STACK_TOKEN_ENV: "crashed-1"})  # e.g. a run worker
    recorded = _start(spawned)  # a part recorded in the pid file with its true start time
    reused = _start(spawned)  # an unrelated process that got a pid the pid file names (other start time)
    neighbour = _start(spawned, **{STACK_DIR_ENV: str(other), STACK_TOKEN_ENV: "other-1"})  # another data dir's stack
    stranger = _start(spawned, NAVEMBED_DATA_DIR=str(data))  # e.g. a `navembed run` a person started by hand
    (data / "run").mkdir()
    write_record(data, Record(pid=999_999, ticks=1, token="crashed-1", started=time.time(), parts={
        "api": (recorded.pid, start_ticks(recorded.pid)),
        "dagster-daemon": (reused.pid, start_ticks(reused.pid) - 1)}))
    events: list[str] = []

    instance = StackInstance(data, log=events.append)
    instance.claim()
    try:
        assert _gone(ours) and _gone(recorded)
        assert all(p.poll() is None for p in (reused, neighbour, stranger)), events
        assert instance.earlier is not None and instance.earlier.pid == 999_999
        assert events and f"{ours.pid} " in events[0] and f"{recorded.pid} api" in events[0]
        assert str(reused.pid) not in events[0] and str(neighbour.pid) not in events[0]
        now = read_record(data)
        assert now.pid == os.getpid() and now.token == instance.token and not now.stopped
    finally:
        instance.release()
    assert read_record(data).stopped


def test_a_second_instance_of_a_data_dir_is_refused_and_a_clean_stop_leaves_nothing_to_end(tmp_path: Path) -> None:
    first, events = StackInstance(tmp_path, log=print), []
    first.claim()
    try:
        with pytest.raises(NavembedError, match=f"another `navembed up` \\(pid {os.getpid()}\\) already runs"):
            StackInstance(tmp_path, log=print).claim()
    finally:
        first.release()
    again = StackInstance(tmp_path, log=events.append)
    again.claim()
    again.release()
    assert again.earlier is None and events == []  # the first stopped cleanly: nothing to end, no runs to re-launch


PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "navembed_pipeline.stack.tether", "--parent", str(__import__("os").getpid()),
                          *sys.argv[1:], "--", sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
child.wait()
"""


def _execed(pid: int) -> bool:
    """The tether has replaced itself with the sleeping command (its own command line names `sleep` too)."""
    line = Path(f"/proc/{pid}/cmdline").read_bytes()
    return b"sleep" in line and b"navembed_pipeline.stack.tether" not in line


def _tethered(*args: str) -> tuple[subprocess.Popen, int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *args], stdout=subprocess.PIPE, text=True)
    return parent, int(parent.stdout.readline())


def test_a_tethered_part_dies_with_its_parent_whatever_kills_it() -> None:
    parent, child = _tethered()
    try:
        _wait(lambda: _execed(child))  # exec'd, same pid
        parent.kill()
        parent.wait()
        _wait(lambda: not pid_alive(child))
    finally:
        parent.kill()
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_second_daemon_of_a_data_dir_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    lock = str(tmp_path / "dagster-daemon.lock")
    first, first_pid = _tethered("--lock", lock, "--what", "Dagster daemon")
    try:
        _wait(lambda: _execed(first_pid))  # the lock is taken before the exec
        second = subprocess.run([sys.executable, "-m", "navembed_pipeline.stack.tether", "--parent", str(os.getpid()),
                                 "--lock", lock, "--what", "Dagster daemon", "--", "true"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == LOCKED_EXIT
        assert f"another Dagster daemon (pid {first_pid}) already holds {lock}" in second.stderr
    finally:
        first.kill()
        first.wait()
    _wait(lambda: not pid_alive(first_pid))
    third = subprocess.run([sys.executable, "-m", "navembed_pipeline.stack.tether", "--parent", str(os.getpid()),
                            "--lock", lock, "--", "true"], capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stderr  # the lock died with its holder


TOP = """
import os, subprocess, sys, time
from pathlib import Path
from navembed_pipeline.stack.guard import Guard
data, token = Path(sys.argv[1]), sys.argv[2]
guard = Guard(data, token, log_dir=data / "logs", env=dict(os.environ))
marker = {**os.environ, "NAVEMBED_STACK_DIR": str(data), "NAVEMBED_STACK_TOKEN": token}
# a grandchild whose parent exits at once: orphaned, re-parented away from this process
subprocess.run(["sh", "-c", sys.executable + " -c 'import time; time.sleep(120)' & echo $!"], env=marker,
               stdout=sys.stdout)
sys.stdout.flush()
time.sleep(120)
"""


def test_the_guard_ends_the_processes_of_its_instance_when_the_top_process_is_killed(tmp_path: Path,
                                                                                   spawned: list) -> None:
    data = tmp_path.resolve()
    (data / "run").mkdir()
    sibling = _start(spawned, **{STACK_DIR_ENV: str(data), STACK_TOKEN_ENV: "another-instance"})
    top = subprocess.Popen([sys.executable, "-c", TOP, str(data), "token-1"], stdout=subprocess.PIPE, text=True)
    try:
        orphan = int(top.stdout.readline())
        _wait(lambda: b"sleep" in Path(f"/proc/{orphan}/cmdline").read_bytes())
        top.kill()
        top.wait()
        _wait(lambda: not pid_alive(orphan), timeout=5.0)
        log_file = data / "logs" / "supervisor.log"
        _wait(lambda: "ended" in log_file.read_text())
        log = log_file.read_text()
        assert "died without stopping" in log and f"{orphan} {sys.executable} -c" in log
        assert sibling.poll() is None  # another instance's token: not this guard's to end
    finally:
        top.kill()
        if pid_alive(orphan):
            os.kill(orphan, signal.SIGKILL)
