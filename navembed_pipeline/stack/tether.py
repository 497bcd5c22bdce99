"""Start a part of the stack tied to `navembed up`: ``python -m navembed_pipeline.stack.tether --parent PID
[--lock PATH --what NAME] -- COMMAND ...``.

It asks Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``: kept across the
``exec`` below), checks the parent is still the one that started it (it may have died already), takes
``--lock`` if given (an exclusive ``flock``, left open across the exec so the lock lives exactly as long
as the part: one Dagster daemon per data dir), then replaces itself with ``COMMAND`` (same pid, same
process group). A wrapper instead of a ``preexec_fn``: nothing runs between ``fork`` and ``exec`` in
the stack's own, threaded, process.

``PR_SET_PDEATHSIG`` fires when the *thread* that started the child ends, not only the process:
`navembed up` starts and restarts its parts from its main thread. It reaches the part only, not what
the part starts; the guard (``guard.py``) ends those.
"""

import argparse
import ctypes
import fcntl
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
LOCKED_EXIT = 75  # EX_TEMPFAIL: another process holds the lock


def tie_to_parent(parent: int, sig: int = signal.SIGKILL) -> bool:
    """Have ``sig`` sent to this process when its parent dies; False if the parent is gone already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return os.getppid() == parent


def hold_lock(path: str, what: str) -> int | None:
    """Take an exclusive lock on ``path`` (written with this pid), kept open across exec; None if another
    process holds it (its pid is printed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        print(f"navembed: another {what} (pid {holder}) already holds {path}; not starting a second one",
              file=sys.stderr, flush=True)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, True)
    return fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m navembed_pipeline.stack.tether")
    parser.add_argument("--parent", type=int, required=True, help="the pid this process must not outlive")
    parser.add_argument("--lock", help="a file to hold an exclusive lock on for the command's lifetime")
    parser.add_argument("--what", default="process", help="what the lock guards (for the message)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    if not tie_to_parent(args.parent):
        return 1  # the stack died while starting us: nothing to run for
    if args.lock and hold_lock(args.lock, args.what) is None:
        return LOCKED_EXIT
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
