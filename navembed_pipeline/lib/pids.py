"""What a pid says about its process: alive or not (zombies count as dead), and since when.

Asked by the Milvus server manager (``store.server``) about the server it started, and by the run
launcher about a run's worker process. Plain Linux ``/proc``; elsewhere only existence is known.
"""

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists and is not a zombie (dead, not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _stat_fields(pid)[:1] != ["Z"]


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None where /proc cannot tell."""
    fields = _stat_fields(pid)
    if len(fields) < 20:
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); [] if unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0
