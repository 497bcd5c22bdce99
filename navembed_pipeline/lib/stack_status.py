"""What the supervisor of `navembed up` says about each part, shared through a small JSON file.

The stack process writes ``<data_dir>/logs/stack.json`` whenever a part changes state; the API's
``/health`` reads it, so a client sees "milvus: restarting (restart 2, exit code -9)" while the
store is being brought back. Plain Python: both sides import it.
"""

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATUS_FILE = "stack.json"
RUNNING, RESTARTING, FAILED, STOPPED = "running", "restarting", "failed", "stopped"


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
