"""What a pid says about its process: alive or not (zombies count as dead), since when, its command and environment.

Asked by the Milvus server manager (``store.server``) about the server it started, by the run launcher
about a run's worker process, and by `navembed up` about the processes an earlier instance of the same
data dir left behind. Plain Linux ``/proc``; elsewhere only existence is known.
"""

import os
from pathlib import Path

PROC = Path("/proc")


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
    ticks = start_ticks(pid)
    return None if ticks is None else _boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot: exact, so a reused pid never matches."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) >= 20 else None


def same_process(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is alive and is the very process that started at ``ticks`` (not a reused pid)."""
    return ticks is not None and pid_alive(pid) and start_ticks(pid) == ticks


def environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was started with ({} if unreadable: gone, or not ours)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def cmdline(pid: int) -> list[str]:
    """The arguments of process ``pid`` ([] if gone, unreadable or a zombie)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def processes_with_env(key: str, value: str) -> list[int]:
    """This user's live processes (this one excluded) started with ``key=value`` in their environment."""
    found = []
    for pid in own_pids():
        if environ(pid).get(key) == value and pid_alive(pid):
            found.append(pid)
    return found


def own_pids() -> list[int]:
    """Every process of this user but this one."""
    uid, me = os.getuid(), os.getpid()
    pids = []
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid == uid:
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return pids


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first); [] if unreadable."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def _boot_time() -> float:
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0
