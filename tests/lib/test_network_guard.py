"""The network guard the model tests use cannot be swallowed by the code under test."""

import socket
import threading
import urllib.request

import pytest

from tests.lib.network_guard import NetworkBlocked, network_blocked


def download_or_fallback() -> str:
    """Library code as it often is: any failure to download means 'use the fallback'."""
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1).close()
    except Exception:  # noqa: BLE001 - the pattern the guard must survive
        return "fallback"
    return "downloaded"


def test_an_except_exception_around_a_connect_does_not_hide_it() -> None:
    with network_blocked() as attempts, pytest.raises(NetworkBlocked):
        download_or_fallback()
    assert len(attempts) == 1 and "127.0.0.1" in attempts[0]


def test_an_attempt_swallowed_even_by_a_bare_except_is_still_recorded() -> None:
    with network_blocked() as attempts:
        try:
            urllib.request.urlopen("http://example.invalid/weights.bin", timeout=1)
        except BaseException:  # noqa: BLE001
            pass
    assert attempts and attempts[0].startswith("socket.getaddrinfo")


def test_other_threads_are_blocked_too() -> None:
    seen: list[BaseException] = []

    def worker() -> None:
        try:
            download_or_fallback()
        except BaseException as exc:  # noqa: BLE001
            seen.append(exc)

    with network_blocked() as attempts:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert attempts and isinstance(seen[0], NetworkBlocked)


def test_outside_the_block_nothing_is_blocked() -> None:
    with network_blocked():
        pass
    assert download_or_fallback() in ("fallback", "downloaded")  # a refused local port, not a block
