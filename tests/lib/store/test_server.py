"""The managed Milvus Lite server: real server processes in temporary data directories."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.errors import ConfigError, StoreError
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.lib.store.server import (STATE_FILE, MilvusLiteServer, ensure_running, private_socket,
                                                running_uri, stop_running)

ENSURE_IN_CHILD = "import sys; from navembed_pipeline.lib.store.server import ensure_running; " \
                  "print(ensure_running(sys.argv[1]))"
OWNED_IN_CHILD = "import sys, time; from navembed_pipeline.lib.store.server import MilvusLiteServer; " \
                 "s = MilvusLiteServer(sys.argv[1]); s.start(); print(s.pid, flush=True); time.sleep(60)"


def gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z"


def wait_until_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_server_answers_at_its_uri_and_stops_cleanly(tmp_path):
    server = MilvusLiteServer(tmp_path, host="127.0.0.1")
    uri = server.start()
    pid = server.pid
    assert uri.startswith("http://127.0.0.1:")
    assert json.loads((tmp_path / STATE_FILE).read_text()) == {"pid": pid, "uri": uri}
    assert VectorStore(uri).count("dsp") == 0
    assert server.stop() == 0
    assert not (tmp_path / STATE_FILE).exists()
    assert gone(pid)


def test_concurrent_starters_in_other_processes_share_one_server(tmp_path):
    starters = [subprocess.Popen([sys.executable, "-c", ENSURE_IN_CHILD, str(tmp_path)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        uris = {p.communicate(timeout=60)[0].strip() for p in starters}
        assert len(uris) == 1
        assert ensure_running(tmp_path) == running_uri(tmp_path) == uris.pop()
    finally:
        assert stop_running(tmp_path)
    assert running_uri(tmp_path) is None
    assert not stop_running(tmp_path)


def test_an_owned_server_refuses_a_directory_already_served(tmp_path):
    with MilvusLiteServer(tmp_path) as first:
        with pytest.raises(StoreError, match=f"already served by pid {first.pid}"):
            MilvusLiteServer(tmp_path).start()


def test_state_left_by_a_dead_server_is_replaced(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": dead.pid, "uri": "http://127.0.0.1:9"}))
    try:
        uri = ensure_running(tmp_path)
        assert uri != "http://127.0.0.1:9"
        assert VectorStore(uri).count("dsp") == 0
    finally:
        stop_running(tmp_path)


def test_two_servers_never_share_a_port(tmp_path):
    with MilvusLiteServer(tmp_path / "a", host="127.0.0.1") as first:
        port = int(first.uri.rsplit(":", 1)[1])
        with pytest.raises(StoreError, match=f"(?s)exited with code 2.*cannot listen on 127.0.0.1:{port}"):
            MilvusLiteServer(tmp_path / "b", host="127.0.0.1", port=port).start()


def test_only_loopback_or_a_unix_socket_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match="no authentication"):
        MilvusLiteServer(tmp_path, host="0.0.0.0")


def test_by_default_the_server_listens_on_an_owner_only_unix_socket(tmp_path):
    with MilvusLiteServer(tmp_path) as server:
        assert server.uri == f"unix:{tmp_path}/milvus.sock" == private_socket(tmp_path)
        mode = (tmp_path / "milvus.sock").stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert VectorStore(server.uri).count("dsp") == 0  # pymilvus connects by the unix: URI
        assert not any(f"pid={server.pid}" in line for line in _tcp_listeners())
    assert not (tmp_path / "milvus.sock").exists()


def test_a_data_dir_too_deep_for_a_socket_path_gets_a_private_socket_elsewhere(tmp_path):
    deep = tmp_path / ("d" * 100)
    uri = private_socket(deep)
    folder = Path(uri.removeprefix("unix:")).parent
    assert len(uri) < 110 and stat.S_IMODE(folder.stat().st_mode) == 0o700 and uri == private_socket(deep)


def test_a_second_server_never_takes_over_a_live_socket(tmp_path):
    sock = f"unix:{tmp_path}/shared.sock"
    with MilvusLiteServer(tmp_path / "a", host=sock) as first:
        with pytest.raises(StoreError, match="exited with code 2"):
            MilvusLiteServer(tmp_path / "b", host=sock).start()
        assert VectorStore(first.uri).count("dsp") == 0


def _tcp_listeners() -> list[str]:
    """``ss -ltnp`` lines (listening TCP sockets with their processes)."""
    return subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=False).stdout.splitlines()


def test_a_unix_socket_server_answers(tmp_path):
    with MilvusLiteServer(tmp_path, host=f"unix:{tmp_path}/milvus.sock") as server:
        assert server.uri == f"unix:{tmp_path}/milvus.sock"
        assert VectorStore(server.uri).count("dsp") == 0


def test_a_starter_that_ignores_sigint_still_gets_a_clean_shutdown(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup or `cmd &`
    try:
        server = MilvusLiteServer(tmp_path)
        server.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert server.stop(grace=5) == 0


def test_an_owned_server_stops_when_its_owner_is_killed(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", OWNED_IN_CHILD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    server_pid = int(owner.stdout.readline())
    owner.kill()
    owner.wait()
    try:
        assert wait_until_gone(server_pid)
    finally:
        if not gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_vectors_written_before_a_server_restart_are_searchable_after_it(tmp_path):
    """Milvus Lite brings collections back released after a restart; the store loads them again."""
    from navembed_pipeline.lib.store import VectorRow

    vector = np.zeros(327, dtype=np.float32)
    vector[3] = 1.0
    row = VectorRow(track_id="t1", segment=0, name="Artist - One", offset_seconds=0.0, duration_seconds=10.0,
                    model_id="dsp", model_version="v1", fingerprint="fp", bucket="00", vectors={"embedding": vector})
    from navembed_pipeline.lib.store.failure_log import FailureLog

    failures = tmp_path / "data" / "failures.sqlite"  # the failure log lives beside Milvus, in the data dir
    with MilvusLiteServer(tmp_path) as first:
        store = VectorStore(first.uri, failure_log=FailureLog(failures))
        store.ensure_collection("dsp", {"embedding": 327})
        store.upsert("dsp", [row])
        store.record_failures("dsp", [("t2", "unreadable")])
        store.close()
    with MilvusLiteServer(tmp_path) as second:
        store = VectorStore(second.uri, failure_log=FailureLog(failures))
        try:
            assert [hit.track_id for hit in store.search("dsp", vector, limit=1)] == [row.track_id]
            assert store.failed_tracks("dsp") == {"t2": "unreadable"}
            assert store.stored("dsp", ["t1"])["t1"].fingerprint == "fp"
        finally:
            store.close()



@pytest.mark.slow  # 40-100 s here: in `make test`, not in `make test-fast`
def test_a_new_connection_after_an_idle_one_is_not_refused_for_too_many_pings(tmp_path):
    """Idle connections must not get this process's next connection refused.

    With pymilvus's own keepalive (every 10 s, also without calls) Milvus Lite's gRPC server
    answers GOAWAY "too_many_pings", and the next client with the same channel options fails with
    "Fail connecting to server". The store's connections ping only during calls.
    """
    from pymilvus import MilvusClient

    from navembed_pipeline.lib.store.client import GRPC_OPTIONS

    with MilvusLiteServer(tmp_path) as server:
        idle = [MilvusClient(uri=server.uri, grpc_options=GRPC_OPTIONS), VectorStore(server.uri)]
        try:
            idle[0].list_collections()
            assert idle[1].count("dsp") == 0
            time.sleep(45)
            fresh = VectorStore(server.uri)
            try:
                assert fresh.count("dsp") == 0
            finally:
                fresh.close()
        finally:
            idle[0].close()
            idle[1].close()
