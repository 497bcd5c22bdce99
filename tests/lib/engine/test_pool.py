"""The worker process pool: results, exceptions and deaths reach exactly the job they belong to."""

import pytest

from navembed_pipeline.lib.engine.pool import WorkerDied, WorkerPool
from tests.lib.engine.worker_functions import exit_now, refuse, square


def test_results_exceptions_and_a_death_each_reach_their_own_job() -> None:
    with WorkerPool(2) as pool:
        futures = [pool.submit(square, n) for n in range(6)]
        refused = pool.submit(refuse, "not this one")
        died = pool.submit(exit_now, 9)
        after = [pool.submit(square, n) for n in range(6, 10)]
        assert [f.result(timeout=60) for f in futures] == [n * n for n in range(6)]
        with pytest.raises(ValueError, match="not this one"):
            refused.result(timeout=60)
        with pytest.raises(WorkerDied, match="exited with 9"):
            died.result(timeout=60)
        assert [f.result(timeout=60) for f in after] == [n * n for n in range(6, 10)]  # a fresh worker took over


def test_shutdown_cancels_what_has_not_started() -> None:
    pool = WorkerPool(1)
    futures = [pool.submit(square, n) for n in range(50)]
    pool.shutdown(cancel_futures=True)
    assert all(f.done() for f in futures)
    assert any(f.cancelled() for f in futures)
    assert all(f.result() == n * n for n, f in enumerate(futures) if not f.cancelled())
