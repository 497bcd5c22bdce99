"""The Milvus Lite server process: ``python -m navembed_pipeline.lib.store.lite_main``.

It runs the same engine and servicer as ``milvus-lite server`` (3.2.2), assembled here because
that CLI inherits an ignored SIGINT from background shells (it then never stops gracefully), dies
on SIGTERM without closing the engine, lets gRPC set SO_REUSEPORT (two servers can silently
share one port) and cannot report the port it bound when asked for port 0.

Once it listens, it writes its pid and URI into ``navembed-server.json`` in the data directory,
and removes the file when it stops. ``server`` starts, finds and stops it.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "navembed-server.json"
LOOPBACK = "127.0.0.1"
UNIX_PREFIX = "unix:"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # what Milvus standalone accepts
DEFAULT_WORKERS = 10
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
SOCKET_MODE = 0o600  # owner only


@dataclass(frozen=True)
class ServerState:
    """What a running server wrote about itself into its data directory."""

    pid: int
    uri: str


def serve(argv: list[str] | None = None) -> int:
    """Run a Milvus Lite gRPC server in this process until SIGINT/SIGTERM (or its owner dies)."""
    # Block the stop signals before any thread exists, so every thread inherits the mask and
    # only sigwait() below sees them: a shutdown that never races a Python signal handler. The
    # default disposition undoes a SIG_IGN inherited from a background shell or nohup.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    args = _parse_serve_args(argv)
    from milvus_lite import MilvusLite  # heavy: imported here, not by the processes that start us

    if args.owner_pid is not None:
        threading.Thread(target=_watch_owner, args=(args.owner_pid,), daemon=True).start()
    data_dir = Path(args.data_dir)
    db = MilvusLite(str(data_dir))
    own_socket: Path | None = None
    try:
        server = _grpc_server(db, args.max_workers)
        is_unix = args.host.startswith(UNIX_PREFIX)
        address = args.host if is_unix else f"{args.host}:{args.port}"
        try:
            bound = _bind(server, address, is_unix=is_unix)
        except RuntimeError:
            print(f"Milvus Lite cannot listen on {address}: it is in use (or not allowed).",
                  file=sys.stderr, flush=True)
            return 2
        own_socket = Path(address[len(UNIX_PREFIX):]) if is_unix else None
        uri = args.host if is_unix else f"http://{args.host}:{bound}"
        write_state(data_dir, ServerState(pid=os.getpid(), uri=uri))
        print(f"Milvus Lite serving {data_dir} at {uri}", flush=True)
        received = signal.sigwait(STOP_SIGNALS)
        print(f"Milvus Lite stopping on {signal.Signals(received).name}", flush=True)
        server.stop(grace=5).wait()
    finally:
        remove_state(data_dir, os.getpid())
        if own_socket is not None:
            own_socket.unlink(missing_ok=True)
        db.close()
    return 0


def _bind(server: Any, address: str, *, is_unix: bool) -> int:
    """Bind ``address`` and start serving. A unix socket is born owner-only (0600): Milvus Lite has
    no authentication, so the socket file's permissions are its only lock."""
    if not is_unix:
        bound = server.add_insecure_port(address)
        server.start()
        return bound
    path = Path(address[len(UNIX_PREFIX):])
    if path.is_socket():
        if _socket_answers(path):
            raise RuntimeError(f"another server listens on {path}")
        path.unlink()  # left by a server that was killed: nothing answers on it any more
    old_umask = os.umask(0o177)  # no window in which the socket is open to others
    try:
        bound = server.add_insecure_port(address)
        server.start()
    finally:
        os.umask(old_umask)
    os.chmod(path, SOCKET_MODE)
    return bound


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(str(path)) == 0


def _grpc_server(db: Any, max_workers: int) -> Any:
    """The Milvus gRPC service over ``db``, never sharing its port (no SO_REUSEPORT)."""
    import grpc
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from pymilvus.grpc_gen import milvus_pb2_grpc

    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
    return server


def _parse_serve_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m navembed_pipeline.lib.store.lite_main")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--owner-pid", type=int, default=None)
    parser.add_argument("--max-workers", type=int, default=DEFAULT_WORKERS)
    return parser.parse_args(argv)


def _watch_owner(owner_pid: int) -> None:
    """Stop when the owning process is gone (it may have been killed without stopping us)."""
    while os.getppid() == owner_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def read_state(data_dir: Path) -> ServerState | None:
    """The state a server recorded in ``data_dir``, or None (absent or unreadable)."""
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
        return ServerState(pid=int(raw["pid"]), uri=str(raw["uri"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(data_dir: Path, state: ServerState) -> None:
    """Record ``state`` atomically: a reader never sees half a file."""
    tmp = data_dir / f"{STATE_FILE}.{state.pid}.tmp"
    tmp.write_text(json.dumps({"pid": state.pid, "uri": state.uri}))
    os.replace(tmp, data_dir / STATE_FILE)


def remove_state(data_dir: Path, pid: int | None) -> None:
    """Remove the state file; with ``pid``, only if it still describes that process."""
    state = read_state(data_dir)
    if pid is None or (state is not None and state.pid == pid):
        (data_dir / STATE_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(serve())
