"""Block the network in a way the code under test cannot catch, and notice attempts it swallowed.

A Python audit hook sees every ``socket.connect``/``getaddrinfo`` (from any library, any thread)
and aborts it with ``NetworkBlocked``, a ``BaseException``: a library's ``except Exception`` lets it
through. Every attempt is also recorded, so one a library catches with a bare ``except`` still
fails the test when the block ends.
"""

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto",
                  "socket.sendmsg")


class NetworkBlocked(BaseException):  # noqa: N818 - not an error a library should handle
    """Raised into code that reaches for the network while a test forbids it."""


class _Guard:
    lock = threading.Lock()
    attempts: list[str] | None = None  # None: not blocking
    installed = False


def _hook(event: str, args: tuple) -> None:
    if event not in NETWORK_EVENTS or _Guard.attempts is None:
        return
    attempt = f"{event}{args[1:] if event.startswith('socket.connect') else args}"
    _Guard.attempts.append(attempt)
    raise NetworkBlocked(f"network access during a test that forbids it: {attempt}")


@contextmanager
def network_blocked() -> Iterator[list[str]]:
    """While inside, every network attempt raises ``NetworkBlocked``; the attempts are yielded."""
    with _Guard.lock:
        if not _Guard.installed:
            sys.addaudithook(_hook)  # audit hooks cannot be removed: it stays, inert, after the block
            _Guard.installed = True
        attempts: list[str] = []
        _Guard.attempts = attempts
    try:
        yield attempts
    finally:
        _Guard.attempts = None
