"""The worker process pool: results, exceptions and deaths reach exactly the job they belong to."""

import os
import signal
import subprocess
import sys
import time

import pytest

from navembed_pipeline.lib.engine import zygote as zygote_module
from navembed_pipeline.lib.engine.pool import WorkerDied, WorkerPool
from navembed_pipeline.lib.engine.zygote import start_zygote, stop_zygote, warm_workers
from navembed_pipeline.lib.pids import pid_alive
from navembed_pipeline.lib.engine.run import PROCESSES_FROM_TRACKS, use_processes
from tests.lib.engine.worker_functions import exit_now, niceness, parent_and_torch, refuse, square


def _keeps_the_pools_contract(pool: WorkerPool) -> None:
    """Results, exceptions and a worker's death each reach their own job; a fresh worker takes over."""
    futures = [pool.submit(square, n) for n in range(6)]
    refused = pool.submit(refuse, "not this one")
    died = pool.submit(exit_now, 9)
    after = [pool.submit(square, n) for n in range(6, 10)]
    assert [f.result(timeout=60) for f in futures] == [n * n for n in range(6)]
    with pytest.raises(ValueError, match="not this one"):
        refused.result(timeout=60)
    with pytest.raises(WorkerDied, match="exited with 9"):  # with a zygote, it reports its worker's status
        died.result(timeout=60)
    assert [f.result(timeout=60) for f in after] == [n * n for n in range(6, 10)]


def test_results_exceptions_and_a_death_each_reach_their_own_job() -> None:
    with WorkerPool(2) as pool:
        _keeps_the_pools_contract(pool)


def test_shutdown_cancels_what_has_not_started() -> None:
    pool = WorkerPool(1)
    futures = [pool.submit(square, n) for n in range(50)]
    pool.shutdown(cancel_futures=True)
    assert all(f.done() for f in futures)
    assert any(f.cancelled() for f in futures)
    assert all(f.result() == n * n for n, f in enumerate(futures) if not f.cancelled())


@pytest.fixture
def zygote():
    """A zygote forked from this process (torch imported first, as in a warm run worker), stopped after."""
    import torch  # noqa: F401 - what the warm run worker has loaded before it forks its zygote

    assert start_zygote(("tests.lib.engine.worker_functions",))
    yield zygote_module._ZYGOTE
    stop_zygote()


def test_warm_workers_are_forked_by_the_zygote_with_its_imports_and_keep_the_pools_contract(zygote) -> None:
    assert warm_workers()
    with WorkerPool(2) as pool:
        parent, had_torch = pool.submit(parent_and_torch).result(timeout=60)
        assert parent == zygote.pid and had_torch  # not a fresh interpreter: torch came with the fork
        _keeps_the_pools_contract(pool)


def test_small_runs_use_worker_processes_only_where_they_start_warm(zygote) -> None:
    assert use_processes(2) and not use_processes(1)
    stop_zygote()
    assert not warm_workers()
    assert not use_processes(PROCESSES_FROM_TRACKS - 1) and use_processes(PROCESSES_FROM_TRACKS)


def test_a_dead_zygote_means_fresh_interpreters_not_a_broken_pool(zygote) -> None:
    os.kill(zygote.pid, signal.SIGKILL)
    os.waitpid(zygote.pid, 0)
    with WorkerPool(1) as pool:
        parent, _ = pool.submit(parent_and_torch).result(timeout=60)
    assert parent == os.getpid()  # a fresh interpreter, started by this process as without a zygote


def _last_two_numbers(script: str) -> tuple[int, int]:
    """Run ``script`` in a fresh interpreter (this test tree importable); the two numbers it printed last."""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, check=True)
    first, second = map(int, out.stdout.split()[-2:])
    return first, second


def test_the_zygote_and_its_workers_exit_with_the_process_that_started_them(tmp_path) -> None:
    script = (
        "import os, sys\n"
        "from navembed_pipeline.lib.engine.pool import WorkerPool\n"
        "from navembed_pipeline.lib.engine.zygote import start_zygote\n"
        "import navembed_pipeline.lib.engine.zygote as p\n"
        "start_zygote()\n"
        "pool = WorkerPool(1)\n"
        "from tests.lib.engine.worker_functions import parent_and_torch\n"
        "worker_parent, _ = pool.submit(parent_and_torch).result(timeout=60)\n"
        "print(p._ZYGOTE.pid, pool.submit(os.getpid).result(timeout=60), flush=True)\n"
        "os._exit(0)  # gone without closing anything, as a killed run worker would be\n"
    )
    zygote_pid, worker_pid = _last_two_numbers(script)
    assert worker_pid not in (zygote_pid, os.getpid())
    deadline = time.monotonic() + 30
    while (pid_alive(zygote_pid) or pid_alive(worker_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(zygote_pid) and not pid_alive(worker_pid)


def test_warm_workers_run_at_the_priority_the_process_has_when_it_starts_them(tmp_path) -> None:
    script = (
        "import os\n"
        "from navembed_pipeline.lib.engine.pool import WorkerPool\n"
        "from navembed_pipeline.lib.engine.zygote import start_zygote\n"
        "from tests.lib.engine.worker_functions import niceness\n"
        "start_zygote()\n"
        "os.nice(5)  # lowered after the zygote was forked, as a run with NAVEMBED_NICE does at its step\n"
        "with WorkerPool(1) as pool:\n"
        "    print(os.nice(0), pool.submit(niceness).result(timeout=60), flush=True)\n"
    )
    own, worker = _last_two_numbers(script)
    assert worker == own >= 5
