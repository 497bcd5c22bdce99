"""The pool's wire format: jobs and answers as length-prefixed pickles over a worker's pipes, and the
loop a worker runs (``pool.py`` starts workers as fresh interpreters, ``zygote.py`` forks them)."""

import pickle
import struct
from typing import Any, BinaryIO

_HEADER = struct.Struct("<Q")


def write_message(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_message(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("worker closed its output")
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("worker output cut short")
    return pickle.loads(data)  # noqa: S301 - our own child process, over its own pipe


def answer_jobs(jobs: BinaryIO, answers: BinaryIO) -> None:
    """Answer the jobs read from ``jobs`` on ``answers`` until ``jobs`` closes."""
    while True:
        try:
            fn, args = read_message(jobs)
        except EOFError:
            return
        try:
            answer = (True, fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller's future as it is
            answer = (False, exc)
        try:
            write_message(answers, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an answer pickle cannot carry
            write_message(answers, (False, RuntimeError(f"unpicklable answer from {fn.__name__}: {exc}")))
