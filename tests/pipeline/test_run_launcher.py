"""How the run launcher tells whether a run worker process still runs (the daemon's run monitoring asks it)."""

import subprocess
import sys
import time

from navembed_pipeline.run_launcher import process_alive

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_running_worker_started_before_it_was_recorded_is_alive() -> None:
    worker = subprocess.Popen(SLEEPER)
    try:
        assert process_alive(worker.pid, started_by=time.time() + 1)
    finally:
        worker.kill()
        worker.wait()


def test_a_killed_worker_is_gone_reaped_or_not() -> None:
    worker = subprocess.Popen(SLEEPER)
    worker.kill()
    time.sleep(0.5)  # dead but not reaped yet: a zombie
    assert not process_alive(worker.pid, started_by=time.time() + 1)
    worker.wait()
    assert not process_alive(worker.pid, started_by=time.time() + 1)


def test_a_pid_now_held_by_a_process_started_later_is_not_the_worker() -> None:
    recorded_at = time.time() - 60  # the worker was recorded a minute ago; this process is newer
    newer = subprocess.Popen(SLEEPER)
    try:
        assert not process_alive(newer.pid, started_by=recorded_at)
    finally:
        newer.kill()
        newer.wait()
