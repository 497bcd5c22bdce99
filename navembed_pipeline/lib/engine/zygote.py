"""The zygote that forks warm pool workers (``pool.py``): workers that start in milliseconds.

A process that has its heavy third-party modules imported already (a run worker forked from navembed's
warm process: torch, NumPy, PyAV) forks a *zygote* with ``start_zygote`` while it is still
single-threaded (forking a process with threads running, torch's among them, is not safe). The zygote
forks each pool worker on request, so a worker starts with those modules loaded instead of spending
seconds importing them (torch alone: ~2.5 s of CPU). Its job and answer pipes are the worker's own,
exactly as with a fresh interpreter; the zygote reports each worker's exit status on a third pipe, and
runs it at the requester's priority of the moment (a run lowers its own with ``nice``). The zygote exits
when the process that started it closes its end (exits or dies); its workers exit when their job pipe
closes.
"""

import importlib
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import traceback
from collections.abc import Sequence
from typing import BinaryIO

from navembed_pipeline.lib.engine.wire import answer_jobs

LOGGER = logging.getLogger("navembed.pool")
_STATUS = struct.Struct("<i")
_PID = struct.Struct("<q")
_NICE = struct.Struct("<i")
_ZYGOTE: "Zygote | None" = None
REAP_INTERVAL_S = 0.1  # how often the zygote collects its exited workers' status


class ForkedWorker:
    """A worker forked by the zygote: what the pool uses of ``subprocess.Popen`` (pipes, poll, wait, kill)."""

    def __init__(self, pid: int, stdin: BinaryIO, stdout: BinaryIO, status_fd: int) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self._status_fd = status_fd
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status once the worker has exited (the zygote reports it), else None."""
        if self.returncode is None and select.select([self._status_fd], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._status_fd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            self._read_status()
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _read_status(self) -> None:
        data = os.read(self._status_fd, _STATUS.size)
        os.close(self._status_fd)
        # No status: the zygote itself died before the worker's exit was collected.
        self.returncode = _STATUS.unpack(data)[0] if len(data) == _STATUS.size else -1
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Zygote:
    """A single-threaded process, forked from this one, forking pool workers on request."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the zygote
            code = 0
            try:
                ours.close()
                _zygote_main(theirs, tuple(preload))
            except BaseException:  # noqa: BLE001 - a zygote must never return into its parent's code
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self.owner = os.getpid()
        self._socket = ours
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """Whether this process started it (a fork of this process has no use of it) and it still runs."""
        return self.owner == os.getpid() and self._socket.fileno() >= 0

    def start(self) -> ForkedWorker:
        """Fork one worker; OSError when the zygote is gone."""
        jobs_r, jobs_w = os.pipe()
        answers_r, answers_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                # The worker runs at this process's priority now (a run may have lowered it: ``nice``).
                socket.send_fds(self._socket, [_NICE.pack(os.nice(0))], [jobs_r, answers_w, status_w])
                data = _recv_exactly(self._socket, _PID.size)
        except (OSError, EOFError) as exc:
            for fd in (jobs_w, answers_r, status_r):
                os.close(fd)
            self.close()
            raise OSError(f"the zygote (pid {self.pid}) is gone: {exc}") from exc
        finally:
            for fd in (jobs_r, answers_w, status_w):
                os.close(fd)
        return ForkedWorker(_PID.unpack(data)[0], os.fdopen(jobs_w, "wb"), os.fdopen(answers_r, "rb"), status_r)

    def close(self) -> None:
        """Let the zygote exit (its running workers finish their jobs and exit on end-of-file)."""
        self._socket.close()


def start_zygote(preload: Sequence[str] = ()) -> bool:
    """Fork this process's zygote now (call it while the process has no other thread), which imports
    ``preload`` (the modules the workers' jobs need) before forking the first worker. Pools started in
    this process later fork their workers from it. False where there is no ``fork``."""
    global _ZYGOTE  # noqa: PLW0603 - one zygote per process, as the process's own state
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return False
    if _ZYGOTE is None or not _ZYGOTE.usable():
        _ZYGOTE = Zygote(preload)
    return True


def stop_zygote() -> None:
    """Stop this process's zygote (pools started later use fresh interpreters)."""
    global _ZYGOTE  # noqa: PLW0603
    if _ZYGOTE is not None and _ZYGOTE.usable():
        _ZYGOTE.close()
    _ZYGOTE = None


def current_zygote() -> "Zygote | None":
    """This process's running zygote, if it started one."""
    return _ZYGOTE if _ZYGOTE is not None and _ZYGOTE.usable() else None


def warm_workers() -> bool:
    """Whether pools started in this process get warm workers (a zygote this process started runs)."""
    return current_zygote() is not None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the zygote closed its socket")
        data += chunk
    return data


def _zygote_main(sock: socket.socket, preload: tuple[str, ...]) -> None:
    """Fork a worker for each request on ``sock``, report each one's exit status; return at end-of-file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a cancel interrupts the run's process, not its helpers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the worker's job imports it again and reports the error
            LOGGER.debug("zygote: could not preload %s", name, exc_info=True)
    statuses: dict[int, int] = {}  # worker pid -> the fd its exit status is written to
    while True:
        _reap(statuses)
        if not select.select([sock], [], [], REAP_INTERVAL_S)[0]:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(sock, _NICE.size, 3)
        except OSError:
            message, fds = b"", []
        if len(message) != _NICE.size or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            for fd in statuses.values():
                os.close(fd)  # the workers' owner is gone: nobody reads their status
            return
        jobs, answers, status = fds
        pid = os.fork()
        if pid == 0:
            _forked_worker(sock, statuses, jobs, answers, status, _NICE.unpack(message)[0])
        os.close(jobs)
        os.close(answers)
        statuses[pid] = status
        sock.sendall(_PID.pack(pid))


def _forked_worker(sock: socket.socket, statuses: dict[int, int], jobs: int, answers: int, status: int,
                   niceness: int) -> None:
    """In a worker the zygote forked: answer jobs until the pipe closes, then exit (never return)."""
    code = 0
    try:
        if niceness > os.nice(0):
            os.nice(niceness - os.nice(0))
        sock.close()
        os.close(status)
        for fd in statuses.values():
            os.close(fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        answer_jobs(os.fdopen(jobs, "rb"), os.fdopen(answers, "wb"))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported as the worker's death, as a fresh interpreter's would be
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _reap(statuses: dict[int, int]) -> None:
    """Write each exited worker's status (Popen's returncode convention) to its status pipe."""
    while statuses:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = statuses.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, _STATUS.pack(os.waitstatus_to_exitcode(wait_status)))
            except OSError:
                pass  # the pool has stopped reading
            os.close(fd)
