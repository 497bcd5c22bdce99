"""A taken port or upload socket is reported with the process that holds it (real sockets, real /proc)."""

import subprocess
import sys
from pathlib import Path

import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.stack import Stack, free_port
from navembed_pipeline.stack.holders import port_holders, socket_holders

LISTENER = """
import socket, sys
tcp = socket.socket(); tcp.bind(("127.0.0.1", int(sys.argv[1]))); tcp.listen()
unix = socket.socket(socket.AF_UNIX); unix.bind(sys.argv[2]); unix.listen()
print("listening", flush=True)
sys.stdin.read()
"""


def test_the_holder_of_a_taken_port_and_socket_is_named(tmp_path: Path) -> None:
    port, sock = free_port(), tmp_path / "embed.sock"
    holder = subprocess.Popen([sys.executable, "-c", LISTENER, str(port), str(sock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "listening"
        assert list(port_holders(port)) == [holder.pid] and list(socket_holders(sock)) == [holder.pid]
        assert port_holders(free_port()) == {} and socket_holders(tmp_path / "nothing.sock") == {}
        for settings, taken in ((ApiSettings(data_dir=tmp_path / "a", api_port=port, socket_path=None), f"port {port}"),
                                (ApiSettings(data_dir=tmp_path / "b", api_port=free_port(), socket_path=sock),
                                 f"another server already listens on {sock}")):
            with pytest.raises(NavembedError, match=f"{taken}.* \\(held by pid {holder.pid}: .*-c"):
                Stack(settings).start()
    finally:
        holder.kill()
        holder.wait()
