"""Child processes of the stack: start one in its own session, stop its group, read its log, probe ports."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from navembed_pipeline.lib.errors import NavembedError

POLL_S = 0.25
LOG_TAIL_CHARS = 3000


@dataclass
class Child:
    """One part running as a child process, logging to ``log``; ``command`` starts it again."""

    name: str
    process: subprocess.Popen
    log: Path
    command: list[str]


def spawn(name: str, command: list[str], *, log_dir: Path, env: dict[str, str], cwd: Path) -> Child:
    """Start ``command`` in its own session (a Ctrl-C reaches only the stack), appending to ``<name>.log``."""
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=cwd, start_new_session=True)
    return Child(name, process, log, command)


def wait_until_ready(child: Child, children: list[Child], ready: Callable[[], bool], timeout: float) -> None:
    """Poll ``ready`` until it holds; raise with the log's tail if any child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for other in children:
            if other.process.poll() is not None:
                raise NavembedError(f"{other.name} exited with code {other.process.returncode} while "
                                    f"starting; {other.log} ends with:\n{tail(other.log)}")
        if ready():
            return
        time.sleep(POLL_S)
    raise NavembedError(f"{child.name} did not become ready within {timeout:.0f} s; "
                        f"{child.log} ends with:\n{tail(child.log)}")


def tool(script: str, module: str) -> list[str]:
    """The console script beside this interpreter, else ``python -m module``."""
    beside = Path(sys.executable).parent / script
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", module]


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group (its own session), SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip() or "(empty)"
    except OSError as exc:
        return f"(unreadable: {exc})"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for tests and side-by-side stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0

