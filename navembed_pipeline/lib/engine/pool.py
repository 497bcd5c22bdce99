"""A small pool of worker processes for module-level functions, each worker a plain ``python -m``.

Why not ``concurrent.futures.ProcessPoolExecutor``: its forkserver and spawn workers re-import the
parent's main module (a Dagster run worker's ``dagster`` console script, say: ~2 s of imports per
worker, per run), and when one worker dies the whole pool breaks, so the job that killed it cannot be
told from the jobs that merely shared the pool. Here each worker is a fresh interpreter that imports
only what its jobs need; a worker that dies fails exactly the job it was running (``WorkerDied``) and
is replaced for the next one. Jobs and results travel as length-prefixed pickles over the worker's
stdin/stdout (the worker's own prints go to stderr). A worker whose parent dies reads end-of-file
and exits.

Warm workers: in a process that started a zygote (``zygote.py``), each worker is forked by it with
the process's heavy imports already loaded, in milliseconds, instead of started as a fresh interpreter.
"""

import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from navembed_pipeline.lib.engine.wire import answer_jobs, read_message, write_message
from navembed_pipeline.lib.engine.zygote import ForkedWorker, current_zygote

LOGGER = logging.getLogger("navembed.pool")

_STOP = object()


class WorkerDied(RuntimeError):
    """The worker process running a job exited before answering (a crash, a kill)."""


class WorkerPool:
    """``workers`` processes running submitted calls of module-level functions, results as futures."""

    def __init__(self, workers: int, *, name: str = "navembed-worker") -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Stop the workers once the running jobs end (queued ones are cancelled with ``cancel_futures``)."""
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    job[0].cancel()
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown(cancel_futures=True)

    # ----- one thread per worker process ---------------------------------------------------------
    def _serve(self) -> None:
        process: subprocess.Popen | None = None
        try:
            while (job := self._jobs.get()) is not _STOP:
                future, fn, args = job
                if not future.set_running_or_notify_cancel():
                    continue
                if process is None or process.poll() is not None:
                    process = _start()
                try:
                    write_message(process.stdin, (fn, args))
                    ok, value = read_message(process.stdout)
                except (OSError, EOFError, pickle.UnpicklingError) as exc:
                    code = process.wait()
                    future.set_exception(WorkerDied(f"worker process exited with {code} ({type(exc).__name__})"))
                    process = None
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        finally:
            if process is not None:
                _stop(process)


def _start() -> "subprocess.Popen | ForkedWorker":
    zygote = current_zygote()
    if zygote is not None:
        try:
            return zygote.start()
        except OSError as exc:  # the zygote is gone: a fresh interpreter, as without one
            LOGGER.warning("the warm zygote could not fork a worker (%s); starting a fresh interpreter", exc)
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))  # the parent's imports resolve alike
    return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": path}, close_fds=True)


def _stop(process: "subprocess.Popen | ForkedWorker") -> None:
    try:
        process.stdin.close()
        process.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()


def _worker_main() -> None:
    """Answer jobs from stdin until it closes; stdout carries answers only (prints go to stderr)."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    answer_jobs(sys.stdin.buffer, answers)


if __name__ == "__main__":
    _worker_main()
