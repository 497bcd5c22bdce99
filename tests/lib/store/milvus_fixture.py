"""Pytest fixtures: one real Milvus Lite server for the whole test session.

Import the fixtures into a test module or a conftest (``from tests.lib.store.milvus_fixture import
milvus_server, milvus_uri, vector_store``). However many places import them, the session shares
one server process: it starts on first use and stops after its last user.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.lib.store.client import GRPC_OPTIONS
from navembed_pipeline.lib.store.failure_log import FAILURES_FILE, FailureLog
from navembed_pipeline.lib.store.server import MilvusLiteServer


class _Shared:
    """The session's server and how many fixture definitions currently use it."""

    server: MilvusLiteServer | None = None
    users = 0
    failures_db: Path | None = None  # the session's failure log, beside the server's data


def session_failures_db() -> Path | None:
    """The failure log every store and pipeline run of the session shares (as a data dir's would be);
    None outside a session that runs the ``milvus_server`` fixture (e.g. a run in a child process)."""
    return _Shared.failures_db


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    """A running Milvus Lite server in a temporary data directory."""
    if _Shared.server is None:
        server = MilvusLiteServer(tmp_path_factory.mktemp("milvus-lite"))
        server.start()
        _Shared.server = server
        _Shared.failures_db = tmp_path_factory.mktemp("navembed-data") / FAILURES_FILE
    _Shared.users += 1
    try:
        yield _Shared.server
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.server.stop()
            _Shared.server = None


@pytest.fixture(scope="session")
def milvus_uri(milvus_server: MilvusLiteServer) -> str:
    """The URI of the session's Milvus Lite server."""
    return milvus_server.uri


@pytest.fixture
def vector_store(milvus_uri: str) -> Iterator[VectorStore]:
    """A VectorStore on an empty database; everything it created is dropped afterwards."""
    drop_everything(milvus_uri)
    store = VectorStore(milvus_uri, failure_log=FailureLog(_Shared.failures_db or ":memory:"))
    try:
        yield store
    finally:
        store.close()
        drop_everything(milvus_uri)


def drop_everything(uri: str) -> None:
    """Drop every alias and collection at ``uri`` and empty the session's failure log (test isolation)."""
    if _Shared.failures_db is not None:
        FailureLog(_Shared.failures_db).clear_all()
    # The store's gRPC options: a default client pings every 10 s, and during a long fixture setup
    # Milvus Lite answers GOAWAY "too_many_pings", failing the next connection of the process.
    client = MilvusClient(uri=uri, grpc_options=GRPC_OPTIONS)
    try:
        for name in client.list_collections():
            for alias in client.list_aliases(name)["aliases"]:
                client.drop_alias(alias)
            client.drop_collection(name)
    finally:
        client.close()
