"""What the supervisor of `navembed up` says about each part, shared through a small JSON file.

The stack process writes ``<data_dir>/logs/stack.json`` whenever a part changes state; the API's
``/health`` reads it, so a client sees "milvus: restarting (restart 2, exit code -9)" while the
store is being brought back. Plain Python: both sides import it.

Every process `navembed up` starts carries ``NAVEMBED_STACK_DIR`` (the data dir) and
``NAVEMBED_STACK_TOKEN`` (that instance) in its environment, and passes them on to whatever it starts
(run workers, decode workers): that is how the stack's guard, a later start and ``/health`` tell the
processes of one data dir from any other process (``dagster_daemons``).
"""

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from navembed_pipeline.lib.pids import cmdline, environ, own_pids, pid_alive

STATUS_FILE = "stack.json"
RUNNING, RESTARTING, FAILED, STOPPED = "running", "restarting", "failed", "stopped"
STACK_DIR_ENV = "NAVEMBED_STACK_DIR"  # the data dir of the `navembed up` a process belongs to
STACK_TOKEN_ENV = "NAVEMBED_STACK_TOKEN"  # which instance of it (a new one per start)
DAEMON_COMMANDS = ("dagster-daemon", "dagster._daemon")


@dataclass(frozen=True)
class PartStatus:
    """One supervised part: its state, how often it was restarted, and how it last exited."""

    state: str
    restarts: int = 0
    last_exit_code: int | None = None
    since: float = 0.0
    message: str = ""


def status_path(data_dir: Path) -> Path:
    return Path(data_dir) / "logs" / STATUS_FILE


def write_status(data_dir: Path, parts: dict[str, PartStatus]) -> None:
    """Replace the status file atomically (a reader never sees half of it)."""
    path = status_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"updated": time.time(), "parts": {k: asdict(v) for k, v in parts.items()}}))
    os.replace(tmp, path)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The last status the stack wrote, or None (no stack runs this data dir, or unreadable)."""
    try:
        raw = json.loads(status_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) and isinstance(raw.get("parts"), dict) else None


def clear_status(data_dir: Path) -> None:
    status_path(data_dir).unlink(missing_ok=True)


def dagster_daemons(dagster_home: Path) -> list[int]:
    """The pids of this user's Dagster daemons (``dagster-daemon run``) serving ``dagster_home``."""
    home = str(Path(dagster_home).resolve())
    found = []
    for pid in own_pids():
        args = cmdline(pid)
        is_daemon = "run" in args and any(arg.endswith(DAEMON_COMMANDS) for arg in args[:3])
        if is_daemon and environ(pid).get("DAGSTER_HOME") == home and pid_alive(pid):
            found.append(pid)
    return sorted(found)


def daemons_state(dagster_home: Path) -> dict[str, Any]:
    """``/health``'s view of the daemons: not ok when more than one serves the instance (two daemons
    launch every queued run and sensor tick twice)."""
    pids = dagster_daemons(dagster_home)
    if len(pids) <= 1:
        return {"ok": True, "pids": pids}
    return {"ok": False, "pids": pids, "error": f"{len(pids)} Dagster daemons serve {Path(dagster_home).resolve()} "
                                                f"(pids {', '.join(map(str, pids))}); exactly one must: stop the "
                                                "extra ones (`navembed up` ends those of an earlier instance)"}
