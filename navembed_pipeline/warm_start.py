"""Run workers forked from a warm process: a run's worker starts in milliseconds instead of seconds.

Dagster's ``DefaultRunLauncher`` asks the code server to start each run worker as a *spawned* process:
a fresh interpreter that imports Dagster, then the code location (torch, pandas, pymilvus: ~5 s of CPU
here) before the run's first step. ``WarmStarter`` keeps one Python ``forkserver`` (started by the
process that launches runs: the daemon) with those third-party modules imported, and forks each run
worker from it. The worker then does exactly what ``dagster api execute_run`` (the command Dagster's
own Docker and Kubernetes launchers run) does: it loads the run from the instance, logs "Started
process for run" with its pid, imports navembed's code fresh from disk (so a code change is picked up
as with the code server; only third-party modules are pre-imported) and executes the run with
Dagster's ``core_execute_run``. Before anything else, while it is still single-threaded, the worker forks
a zygote (``lib/engine/zygote.py``) that forks the run's decode worker processes: they start with torch,
NumPy and PyAV loaded, in milliseconds, so even a small run decodes on every core. Queueing, concurrency limits, run monitoring, retries and the event log
are untouched; cancelling sends the worker SIGINT, as the code server does.
"""

import importlib.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.context import BaseContext
from typing import Any

LOGGER = logging.getLogger("navembed.warm_start")
# Imported once in the fork server, inherited by every run worker (what a run worker imports that is
# not navembed's own code; the heaviest first).
PRELOAD = ("torch", "dagster", "dagster._cli.api", "dagster._core.execution.api", "pandas", "pymilvus", "numpy",
           "av", "httpx", "pydantic_settings", "mutagen", "sqlalchemy", "alembic", "structlog", "fsspec", "upath",
           "pygments", "rich", "mako", "watchdog.observers", "dagster._core.instance.factory",
           "dagster._core.storage.root", "dagster._core.storage.sqlite_storage", "dagster._core.storage.legacy_storage",
           "dagster._core.storage.runs.sqlite", "dagster._core.storage.event_log.sqlite",
           "dagster._core.storage.schedules.sqlite",
           # What loading navembed's definitions imports besides (``Settings.enabled_models`` looks for weights in
           # the Hugging Face cache; reading tags; Dagster building the repository): ~0.1 s less per run worker
           # (tests/pipeline/test_warm_start.py keeps this list complete).
           "huggingface_hub.hf_api", "huggingface_hub._snapshot_download", "httpcore", "mutagen.flac", "mutagen.id3",
           "dagster._core.definitions.external_asset",
           "dagster._core.definitions.repository_definition.repository_data_builder",
           "dagster._core.types.transform_typing", "dagster._core.types.primitive_mapping")

# What the run's decode worker processes import (navembed's own code, fresh for each run: the zygote is
# forked by the run worker), imported by the zygote while the run worker loads the run.
ZYGOTE_PRELOAD = ("navembed_pipeline.lib.engine.worker", "navembed_pipeline.lib.models.dsp")


def enabled() -> bool:
    """Warm starts need ``fork`` (POSIX) and are on unless the ``run_worker_server`` setting is off (or the
    settings do not read: then Dagster's own launch, whose run reports what is wrong with them)."""
    from pydantic import ValidationError

    from navembed_pipeline.lib.settings import Settings

    try:
        wanted = Settings().run_worker_server
    except ValidationError:
        LOGGER.warning("navembed's settings do not validate; run workers are spawned by Dagster", exc_info=True)
        return False
    return wanted and "forkserver" in multiprocessing.get_all_start_methods()


class WarmStarter:
    """One fork server per process, started on first use (or ``prestart``), forking run workers."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self._preload = [name for name in preload if _findable(name)]
        self._lock = threading.Lock()
        self._context: BaseContext | None = None
        self._workers: list[Any] = []

    def prestart(self) -> None:
        """Start the fork server now (it imports ``PRELOAD`` in the background)."""
        self._ctx()

    def start(self, run_id: str, instance_ref: str) -> int:
        """Fork a worker executing run ``run_id`` of the instance ``instance_ref`` (serialized); its pid.

        The worker gets this process's environment and working directory as they are now (the fork
        server's are those of when it started), as a worker the code server spawned gets the server's.
        """
        ctx = self._ctx()
        process = ctx.Process(target=execute_run, args=(run_id, instance_ref, dict(os.environ), os.getcwd()),
                              name=f"dagster-run-{run_id}")
        process.start()
        # The worker outlives this process if need be (as a code server's would): never joined at exit.
        multiprocessing.process._children.discard(process)  # noqa: SLF001
        with self._lock:
            self._workers = [p for p in self._workers if _running(p)] + [process]
        return int(process.pid)

    def _ctx(self) -> BaseContext:
        with self._lock:
            if self._context is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(self._preload)
                from multiprocessing import forkserver

                forkserver.ensure_running()
                self._context = ctx
            return self._context


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package that is not installed
        return False


def _running(process: Any) -> bool:
    if process.exitcode is None:
        return True
    process.close()
    return False


def execute_run(run_id: str, instance_ref: str, env: dict[str, str], cwd: str) -> None:
    """In the forked worker: execute the run as ``dagster api execute_run`` does (interrupts captured)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    # While this process has no other thread: the zygote its decode worker processes are forked from.
    from navembed_pipeline.lib.engine import start_zygote

    start_zygote(ZYGOTE_PRELOAD)
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance, InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the fork server ignores SIGINT
    with capture_interrupts():
        with DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef)) as instance:
            _execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)
    sys.stdout.flush()
    sys.stderr.flush()


def interrupt(pid: int) -> None:
    """Ask a run worker to stop (Dagster marks its run cancelled), as the code server does."""
    os.kill(pid, signal.SIGINT)
