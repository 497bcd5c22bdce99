"""The guard of `navembed up`: ends every process of the stack the moment `navembed up` dies, however it dies.

``python -m navembed_pipeline.stack.guard --data-dir D --token T`` runs in a session of its own (a
Ctrl-C or a kill of `navembed up`'s process group does not reach it) and reads a pipe whose only
writer is `navembed up`. A clean stop writes ``stop`` and closes it: the guard exits. Anything else
ends in EOF without ``stop`` (SIGKILL, the OOM killer, a crash): the kernel closes the pipe, and the
guard kills, at once, every process of that instance (``leftovers.processes_of``: the parts recorded
in the pid file, and everything carrying the instance's token, grandchildren included: code servers,
run workers, decode workers), then stops the Milvus Lite server, notes the time in the pid file (the
next start re-launches the runs that failed from then on) and exits.

A pipe rather than a child subreaper: the guard is not an ancestor of the parts (they are children
of `navembed up`, which must wait() on them), so orphans would not be handed to it; the token in
their environment finds them wherever they were re-parented.
"""

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from navembed_pipeline.stack.leftovers import end_all, processes_of, read_record, write_record

STOP = b"stop"
STOP_WAIT_S = 10.0


class Guard:
    """`navembed up`'s side of the guard: start it, and tell it about a clean stop."""

    def __init__(self, data_dir: Path, token: str, *, log_dir: Path, env: dict[str, str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / "guard.log").open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __spec__.name if __spec__ else "navembed_pipeline.stack.guard",
                 "--data-dir", str(data_dir), "--token", token],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data_dir,
                start_new_session=True)

    def release(self) -> None:
        """The stack stopped cleanly: the guard exits without killing anything."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.write(STOP)
                stdin.close()
            except OSError:  # the guard died: nothing to tell
                pass
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m navembed_pipeline.stack.guard")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    said = sys.stdin.buffer.read()  # blocks until `navembed up` closes the pipe, or dies
    if said.strip() == STOP:
        return 0
    died_at = time.time()
    data_dir = args.data_dir.resolve()
    record = read_record(data_dir)
    mine = record if record is not None and record.token == args.token else None
    log_path = data_dir / "logs" / "supervisor.log"

    def log(message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} navembed guard: {message}"
        print(line, flush=True)
        with log_path.open("a") as out:
            out.write(line + "\n")

    who = f"pid {mine.pid}" if mine else "its process"
    log(f"`navembed up` ({who}) died without stopping; ending its processes")
    ended, alive = end_all(lambda: processes_of(data_dir, mine, token=args.token), log=log)
    log(f"ended {len(ended)} process(es): " + "; ".join(f"{pid} {what}" for pid, what in sorted(ended.items())))
    if alive:
        log(f"still alive: {', '.join(map(str, alive))}")
    if mine is not None and (now := read_record(data_dir)) is not None and now.token == args.token:
        write_record(data_dir, replace(now, crashed_at=died_at))
    return 0 if not alive else 1


if __name__ == "__main__":
    sys.exit(main())
