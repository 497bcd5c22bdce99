"""The managed Milvus Lite server: one process per data directory, shared by URI.

A Lite data directory can be opened by one process only, and Dagster runs every run in its own
process next to the API. So navembed runs one Milvus Lite gRPC server per data directory (a child
process whose entry point is ``lite_main``; this module starts, finds and stops it) and every
component connects to it by URI, exactly as it would to Milvus standalone. Milvus Lite has no authentication, so by default it listens on an owner-only
(0600) unix socket, ``milvus.sock`` in the data directory (``private_socket``): other local accounts
cannot reach it. Loopback TCP (``127.0.0.1``, reachable by every local account) only when asked.

Files in the data directory: ``navembed-server.lock`` (held while a process starts a server),
``navembed-server.json`` (pid and URI, written by the server once it listens, removed when it
stops) and ``navembed-server.log`` (the server's output).
"""

import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from navembed_pipeline.lib.errors import ConfigError, StoreError
from navembed_pipeline.lib.pids import pid_alive
from navembed_pipeline.lib.store import lite_main
from navembed_pipeline.lib.store.lite_main import (LOOPBACK, STATE_FILE, UNIX_PREFIX, ServerState, read_state,
                                                   remove_state)

__all__ = ["STATE_FILE", "MilvusLiteServer", "ensure_running", "private_socket", "running_uri", "stop_running"]

LOCK_FILE = "navembed-server.lock"
SOCKET_FILE = "milvus.sock"
PRIVATE = "private"  # host value: the owner-only unix socket of ``private_socket``
LOG_FILE = "navembed-server.log"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
HEALTH_TIMEOUT_S = 2.0
MAX_UNIX_PATH_BYTES = 107  # sun_path is 108 bytes including the terminating NUL
LOG_TAIL_CHARS = 2000
_POLL_S = 0.05

# Servers this process started and has not stopped yet, by pid: they must be reaped by us.
_children: dict[int, subprocess.Popen] = {}


class MilvusLiteServer:
    """One Milvus Lite server process for ``data_dir``, owned by the caller (a context manager).

    ``host`` is ``private`` (the default: an owner-only unix socket, see ``private_socket``),
    ``127.0.0.1`` (the port is picked by the kernel when ``port`` is None) or ``unix:/path/to/socket``. The server stops on ``stop()``, and by itself if its owner dies
    without stopping it. ``ensure_running`` starts a shared one that outlives its starter.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = PRIVATE,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = _loopback_host(host, self.data_dir)
        self.port = port or 0
        self.start_timeout = start_timeout
        self._process: subprocess.Popen | None = None
        self._uri: str | None = None

    @property
    def uri(self) -> str:
        """The URI clients connect to (``http://127.0.0.1:PORT`` or ``unix:PATH``)."""
        if self._uri is None:
            raise StoreError(f"The Milvus Lite server for {self.data_dir} is not running.")
        return self._uri

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def exit_code(self) -> int | None:
        """The server's exit code once it has exited on its own (e.g. killed); None while it runs."""
        return self._process.poll() if self._process else None

    def start(self) -> str:
        """Start the server and wait until it answers; return its URI.

        Raises StoreError if another live server already serves this data directory, or if this
        one does not come up within ``start_timeout`` (with the tail of its log).
        """
        with _start_lock(self.data_dir):
            state = _live_state(self.data_dir)
            if state is not None:
                raise StoreError(
                    f"{self.data_dir} is already served by pid {state.pid} at {state.uri}; "
                    "connect to that URI instead of starting a second server."
                )
            self._process, self._uri = _spawn(
                self.data_dir,
                host=self.host,
                port=self.port,
                timeout=self.start_timeout,
                owner_pid=os.getpid(),
            )
        return self._uri

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """Stop the server: SIGINT (it closes the engine cleanly), SIGKILL after ``grace`` s.

        Returns the server's exit code (0 after a clean shutdown), None if it was not running.
        """
        process, self._process, self._uri = self._process, None, None
        if process is None:
            return None
        _terminate(process, grace)
        remove_state(self.data_dir, process.pid)
        return process.returncode

    def __enter__(self) -> "MilvusLiteServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def ensure_running(
    data_dir: str | Path,
    *,
    host: str = PRIVATE,
    port: int | None = None,
    start_timeout: float = START_TIMEOUT_S,
) -> str:
    """Return the URI of the server for ``data_dir``, starting a detached one if none runs.

    Safe to call from many processes at once: a lock file makes exactly one of them start the
    server, the others reuse its URI. A server that died leaves stale state, which is replaced.
    The detached server keeps running after its starter exits; ``stop_running`` stops it.
    """
    data_dir = Path(data_dir).resolve()
    with _start_lock(data_dir):
        state = _live_state(data_dir)
        if state is not None:
            return state.uri
        _, uri = _spawn(
            data_dir,
            host=_loopback_host(host, data_dir),
            port=port or 0,
            timeout=start_timeout,
            owner_pid=None,
        )
        return uri


def running_uri(data_dir: str | Path) -> str | None:
    """The URI of a live, answering server for ``data_dir``, or None."""
    state = _live_state(Path(data_dir).resolve())
    return state.uri if state else None


def stop_running(data_dir: str | Path, *, grace: float = STOP_GRACE_S) -> bool:
    """Stop the server serving ``data_dir`` (whoever started it); False if none was running."""
    data_dir = Path(data_dir).resolve()
    with _start_lock(data_dir):
        state = read_state(data_dir)
        if state is None or not _pid_alive(state.pid):
            remove_state(data_dir, state.pid if state else None)
            return False
        child = _children.get(state.pid)
        if child is not None:
            _terminate(child, grace)
        else:
            _terminate_foreign(state.pid, grace)
        remove_state(data_dir, state.pid)
        return True


# ── starting and stopping ───────────────────────────────────────────────────


def _spawn(
    data_dir: Path, *, host: str, port: int, timeout: float, owner_pid: int | None
) -> tuple[subprocess.Popen, str]:
    """Start the server process (the start lock is held) and wait until it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    remove_state(data_dir, None)
    log_path = data_dir / LOG_FILE
    log_start = log_path.stat().st_size if log_path.exists() else 0
    command = [sys.executable, "-m", lite_main.__name__, "--data-dir", str(data_dir),
               "--host", host, "--port", str(port)]
    if owner_pid is not None:
        command += ["--owner-pid", str(owner_pid)]
    with log_path.open("ab") as log:
        # A session of its own: a Ctrl-C meant for the starter's terminal must not reach it.
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    _children[process.pid] = process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _children.pop(process.pid, None)
            raise StoreError(
                f"The Milvus Lite server for {data_dir} exited with code {process.returncode} "
                f"while starting. Its log ({log_path}) ends with:\n{_tail(log_path, log_start)}"
            )
        state = read_state(data_dir)
        if state is not None and state.pid == process.pid and _answers(state.uri):
            return process, state.uri
        time.sleep(_POLL_S)
    _terminate(process, grace=1.0)
    raise StoreError(
        f"The Milvus Lite server for {data_dir} did not answer within {timeout:.0f} s. "
        f"Its log ({log_path}) ends with:\n{_tail(log_path, log_start)}"
    )


def _terminate(process: subprocess.Popen, grace: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _children.pop(process.pid, None)


def _terminate_foreign(pid: int, grace: float) -> None:
    """Stop a server another process started (we cannot wait() for it, so poll)."""
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(_POLL_S)


# ── state and lock files ────────────────────────────────────────────────────


@contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _live_state(data_dir: Path) -> ServerState | None:
    """The recorded server if it is alive and answers; stale state is removed."""
    state = read_state(data_dir)
    if state is None:
        return None
    if _pid_alive(state.pid) and _answers(state.uri):
        return state
    remove_state(data_dir, state.pid)
    return None


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:  # our own child: a zombie still "exists" until reaped
        return child.poll() is None
    return pid_alive(pid)  # zombies too: orphans in a container whose PID 1 does not reap


def _answers(uri: str) -> bool:
    """Whether a Milvus server at ``uri`` lists its collections within a short timeout."""
    from pymilvus import MilvusClient  # heavy import, only when a server is probed

    try:
        client = MilvusClient(uri=uri, timeout=HEALTH_TIMEOUT_S, dedicated=True)
        try:
            client.list_collections(timeout=HEALTH_TIMEOUT_S)
        finally:
            client.close()
    except Exception:  # any failure means "not answering"; the caller reports what it needs
        return False
    return True


def _tail(log_path: Path, start: int) -> str:
    try:
        with log_path.open("rb") as log:
            log.seek(start)
            text = log.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return text[-LOG_TAIL_CHARS:].strip() or "(empty)"


def private_socket(data_dir: str | Path, name: str = SOCKET_FILE) -> str:
    """``unix:<data_dir>/<name>``; for a data dir too deep for a socket path, a socket in an
    owner-only directory under the temp dir, named after the data dir (stable across restarts)."""
    data_dir = Path(data_dir).resolve()
    beside = data_dir / name
    if len(str(beside).encode()) <= MAX_UNIX_PATH_BYTES:
        return UNIX_PREFIX + str(beside)
    private = Path(tempfile.gettempdir()) / f"navembed-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    info = private.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(f"{private} is not a directory only this user can enter; remove it or choose a "
                          "shorter data directory")
    digest = hashlib.sha1(str(beside).encode()).hexdigest()[:16]
    return f"{UNIX_PREFIX}{private / digest}.sock"


def _loopback_host(host: str, data_dir: Path) -> str:
    """Milvus Lite has no authentication: only loopback TCP or a unix socket is allowed."""
    if host == PRIVATE:
        return private_socket(data_dir)
    if host in (LOOPBACK, "localhost"):
        return LOOPBACK
    if host.startswith(UNIX_PREFIX):
        path = os.path.abspath(host[len(UNIX_PREFIX) :])
        if len(path.encode()) > MAX_UNIX_PATH_BYTES:
            raise ConfigError(
                f"Unix socket path {path!r} is longer than {MAX_UNIX_PATH_BYTES} bytes; "
                "choose a shorter one."
            )
        return UNIX_PREFIX + path
    raise ConfigError(
        f"Milvus Lite host {host!r} is not allowed: it has no authentication, so it binds only "
        f"to {LOOPBACK} or a unix socket ('unix:/path/to/milvus.sock')."
    )
