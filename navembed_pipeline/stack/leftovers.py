"""One `navembed up` per data dir, and what an earlier one left behind.

``StackInstance`` is the data dir's claim: an exclusive ``flock`` on ``<data_dir>/run/stack.lock``,
held by `navembed up` for its lifetime (the kernel lets go of it however the process ends), and the
pid file ``<data_dir>/run/stack.json``: the top process, a token naming this start, and each part's
pid with its start time in clock ticks. A start that finds the lock held refuses (another instance
runs). A start that gets the lock but finds a pid file not marked stopped knows the earlier instance
crashed: it ends what that instance left, and only that:

- the processes recorded in the pid file that are still the very same processes (same start time:
  a reused pid is never touched),
- every process of this user started with ``NAVEMBED_STACK_DIR=<this data dir>`` in its environment
  (the parts, and what they started: code servers, run workers, decode workers); a process of
  another data dir's stack carries another value, any other process none.

Those are killed outright (SIGKILL), so an interrupted run stays STARTED, its worker gone: Dagster's
run monitoring marks it failed and run retries launch it again, skipping tracks already stored. The
Milvus Lite server goes last, with SIGTERM (it closes its engine cleanly), once nothing that writes
to it runs any more. The guard (``guard.py``) does the same the moment `navembed up` dies.
"""

import contextlib
import fcntl
import json
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.pids import cmdline, environ, pid_alive, processes_with_env, same_process, start_ticks
from navembed_pipeline.lib.stack_status import STACK_DIR_ENV, STACK_TOKEN_ENV

RUN_DIR = "run"
LOCK_FILE = "stack.lock"
PID_FILE = "stack.json"
DAEMON_LOCK_FILE = "dagster-daemon.lock"
MILVUS_MODULE = "navembed_pipeline.lib.store.lite_main"
KILL_WAIT_S = 5.0
MILVUS_GRACE_S = 10.0
POLL_S = 0.05


@dataclass(frozen=True)
class Record:
    """What an instance wrote about itself: its top process, its token, its parts (pid, start ticks)."""

    pid: int
    ticks: int | None
    token: str
    started: float
    parts: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    stopped: bool = False  # it stopped cleanly
    crashed_at: float | None = None  # when its guard saw it die

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "ticks": self.ticks, "token": self.token, "started": self.started,
                "parts": {name: list(value) for name, value in self.parts.items()}, "stopped": self.stopped,
                "crashed_at": self.crashed_at}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Record":
        parts = {str(k): (int(v[0]), None if v[1] is None else int(v[1])) for k, v in (raw.get("parts") or {}).items()}
        return cls(int(raw["pid"]), raw.get("ticks"), str(raw["token"]), float(raw.get("started") or 0), parts,
                   bool(raw.get("stopped")), raw.get("crashed_at"))


def run_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RUN_DIR


def read_record(data_dir: Path) -> Record | None:
    """The pid file of ``data_dir``, or None (absent or unreadable)."""
    try:
        return Record.from_json(json.loads((run_dir(data_dir) / PID_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def write_record(data_dir: Path, record: Record) -> None:
    """Replace the pid file atomically."""
    path = run_dir(data_dir) / PID_FILE
    tmp = path.with_name(f"{PID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.to_json()))
    os.replace(tmp, path)


def processes_of(data_dir: Path, record: Record | None, *, token: str | None = None,
                 spare_token: str | None = None) -> dict[int, str]:
    """The live processes of ``data_dir``'s stack, pid → what it is: ``record``'s parts that are still
    the same processes, and every process carrying the data dir's marker (with ``token``: only that
    instance's; ``spare_token``: not that instance's)."""
    found: dict[int, str] = {}
    for name, (pid, ticks) in (record.parts if record else {}).items():
        if same_process(pid, ticks):
            found[pid] = name
    for pid in processes_with_env(STACK_DIR_ENV, str(Path(data_dir).resolve())):
        mark = environ(pid).get(STACK_TOKEN_ENV)
        if (token is None or mark == token) and (spare_token is None or mark != spare_token):
            found.setdefault(pid, describe(pid))
    return found


def describe(pid: int) -> str:
    args = cmdline(pid)
    return " ".join(args)[:120] if args else "?"


def end_processes(found: dict[int, str], *, log: Callable[[str], None]) -> list[int]:
    """SIGKILL every process but the Milvus Lite server, wait until they are gone, then stop Milvus with
    SIGTERM (SIGKILL after a grace period). Returns the pids still alive after that (should be none)."""
    milvus = [pid for pid in found if MILVUS_MODULE in cmdline(pid)]
    others = [pid for pid in found if pid not in milvus]
    _signal_all(others, signal.SIGKILL)
    _wait_gone(others, KILL_WAIT_S)
    _signal_all(milvus, signal.SIGTERM)
    if _wait_gone(milvus, MILVUS_GRACE_S):
        log(f"the Milvus Lite server (pid {', '.join(map(str, milvus))}) did not stop on SIGTERM; killing it")
        _signal_all(milvus, signal.SIGKILL)
        _wait_gone(milvus, KILL_WAIT_S)
    return [pid for pid in found if pid_alive(pid)]


def end_all(find: Callable[[], dict[int, str]], *, log: Callable[[str], None],
            rounds: int = 3) -> tuple[dict[int, str], list[int]]:
    """``end_processes(find())`` until ``find`` finds nothing more (a process may start another while
    it is being killed); every process found, and those still alive at the end."""
    ended: dict[int, str] = {}
    alive: list[int] = []
    for _ in range(rounds):
        found = {pid: what for pid, what in find().items() if pid not in ended or pid_alive(pid)}
        if not found:
            break
        ended.update(found)
        alive = end_processes(found, log=log)
    return ended, alive


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive (zombies count as gone); the ones left after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return alive


class StackInstance:
    """The claim of one `navembed up` on its data dir: the lock, the pid file, the token its processes carry."""

    def __init__(self, data_dir: Path, *, log: Callable[[str], None]) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log = log
        self.token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.earlier: Record | None = None  # the instance before this one, if it did not stop cleanly
        self._lock: int | None = None
        self._record: Record | None = None

    @property
    def env(self) -> dict[str, str]:
        """The marker every process of this instance carries (and passes on to what it starts)."""
        return {STACK_DIR_ENV: str(self.data_dir), STACK_TOKEN_ENV: self.token}

    @property
    def daemon_lock(self) -> Path:
        """Held by the Dagster daemon for its lifetime (``tether.py``): one daemon per data dir."""
        return run_dir(self.data_dir) / DAEMON_LOCK_FILE

    def claim(self) -> None:
        """Take the data dir (or raise: another instance runs it), end what a crashed earlier instance
        left, and write this instance's pid file."""
        folder = run_dir(self.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_record(self.data_dir)
            who = f" (pid {holder.pid})" if holder and pid_alive(holder.pid) else ""
            raise NavembedError(f"another `navembed up`{who} already runs data dir {self.data_dir}; stop it "
                                "first, or choose another --data-dir") from None
        self._lock = fd
        earlier = read_record(self.data_dir)
        self.earlier = earlier if earlier is not None and not earlier.stopped else None
        self.end_leftovers()
        self._record = Record(os.getpid(), start_ticks(os.getpid()), self.token, time.time())
        write_record(self.data_dir, self._record)

    def end_leftovers(self) -> None:
        """End every process an earlier instance of this data dir left running (none of this one's)."""
        ended, alive = end_all(lambda: processes_of(self.data_dir, self.earlier, spare_token=self.token),
                               log=self.log)
        if not ended:
            return
        was = f"of `navembed up` pid {self.earlier.pid}, which did not stop cleanly" if self.earlier else \
            "of an earlier `navembed up`"
        self.log(f"ended {len(ended)} process(es) left {was}: "
                 + "; ".join(f"{pid} {what}" for pid, what in sorted(ended.items())))
        if alive:
            raise NavembedError(f"processes left by an earlier `navembed up` of {self.data_dir} would not end: "
                                f"pids {', '.join(map(str, alive))}")

    def record(self, name: str, pid: int) -> None:
        """Note a part's process in the pid file (so a later start can tell it from a reused pid)."""
        if self._record is None:
            return
        self._record = replace(self._record, parts={**self._record.parts, name: (pid, start_ticks(pid))})
        write_record(self.data_dir, self._record)

    def release(self) -> None:
        """A clean stop: mark the pid file stopped and let go of the lock."""
        if self._record is not None:
            write_record(self.data_dir, replace(self._record, stopped=True))
            self._record = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
