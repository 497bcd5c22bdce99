"""Small real Dagster jobs for the warm-start tests (loaded by the forked run worker from this module)."""

import os
import time

import dagster as dg


@dg.op
def report_pid(context: dg.OpExecutionContext) -> int:
    """Log the worker's pid and whether torch came preloaded (it is imported before this module)."""
    context.log.info(f"worker pid {os.getpid()}")
    return os.getpid()


@dg.job(executor_def=dg.in_process_executor)  # as navembed's embedding jobs: the step runs in the run worker
def quick_job() -> None:
    report_pid()


@dg.op
def wait_long(context: dg.OpExecutionContext) -> None:
    """Run for up to a minute in small steps (a cancel interrupts it)."""
    context.log.info("waiting")
    for _ in range(600):
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)  # as navembed's embedding jobs: the step runs in the run worker
def long_job() -> None:
    wait_long()


@dg.op
def use_worker_processes(context: dg.OpExecutionContext) -> None:
    """Run a call in a decode-style worker process (``lib/engine/pool.py``) from the forked run worker."""
    from navembed_pipeline.lib.engine.pool import WorkerPool

    with WorkerPool(2, name="warm-test") as pool:
        pids = {pool.submit(os.getpid).result(timeout=120) for _ in range(4)}
        parents = {pool.submit(os.getppid).result(timeout=120) for _ in range(4)}
    context.log.info(f"worker processes {sorted(pids)} (forked by {sorted(parents)}) of run worker {os.getpid()}")


@dg.job(executor_def=dg.in_process_executor)
def pool_job() -> None:
    use_worker_processes()
