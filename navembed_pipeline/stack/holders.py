"""Who holds a TCP port or a unix socket: the pid and command line behind a "port in use" (Linux /proc).

`navembed up` names the holder when its API port or upload socket is taken, so a person sees at once
whether it is a stray process or another program (leftovers of this data dir's earlier instance are
ended before the check: ``leftovers.py``).
"""

import os
from pathlib import Path

from navembed_pipeline.lib.pids import PROC, cmdline

LISTEN = "0A"  # TCP state in /proc/net/tcp


def port_holders(port: int) -> dict[int, str]:
    """This user's processes listening on TCP ``port`` (any local address), pid → command line."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        for fields in _rows(PROC / "net" / table):
            if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return _holders(inodes)


def socket_holders(path: Path) -> dict[int, str]:
    """This user's processes listening on the unix socket ``path``, pid → command line."""
    wanted = str(Path(path).absolute())
    inodes = {fields[6] for fields in _rows(PROC / "net" / "unix") if len(fields) > 7 and fields[7] == wanted}
    return _holders(inodes)


def describe_holders(holders: dict[int, str]) -> str:
    """`` (held by pid N: command)``, or "" when nobody is known to hold it."""
    if not holders:
        return ""
    return " (held by " + "; ".join(f"pid {pid}: {what}" for pid, what in sorted(holders.items())) + ")"


def _rows(table: Path) -> list[list[str]]:
    try:
        return [line.split() for line in table.read_text().splitlines()[1:]]
    except OSError:
        return []


def _holders(inodes: set[str]) -> dict[int, str]:
    inodes.discard("0")
    if not inodes:
        return {}
    targets = {f"socket:[{inode}]" for inode in inodes}
    found: dict[int, str] = {}
    uid = os.getuid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    found[int(entry.name)] = " ".join(cmdline(int(entry.name)))[:120] or "?"
                    break
            except OSError:
                continue
    return found
