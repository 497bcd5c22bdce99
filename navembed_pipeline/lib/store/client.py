"""A thin, safe connection to one Milvus server: every failure becomes a ``StoreError``.

It connects lazily (so a process can start while Milvus is still coming up), names the URI and
the operation in every error, and hides pymilvus quirks that matter to navembed: the fixed sleeps
of synchronous index creation, and how aliases are resolved.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pymilvus import MilvusClient
from pymilvus.client.types import LoadState

from navembed_pipeline.lib.errors import StoreError

CONNECT_TIMEOUT_S = 10.0
OPERATION_TIMEOUT_S = 120.0
QUERY_LIMIT = 16_384  # Milvus caps one query's offset + limit at this
ITERATOR_BATCH = 1000
STRONG = {"consistency_level": "Strong"}  # bookkeeping reads must see the writes just made
# pymilvus pings every 10 s even on idle connections; a gRPC server with default settings (Milvus
# Lite's) counts those as abuse and answers GOAWAY "too_many_pings", and the next client to connect
# in this process (channels with equal options share the connection) fails with "Fail connecting
# to server". Ping only during calls, once a minute: Milvus standalone accepts that too.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 60_000, "grpc.keepalive_permit_without_calls": False}
COLLECTION_NOT_LOADED = 101  # Milvus's error code for search/query on a released collection
LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


class MilvusConnection:
    """Calls to the Milvus server at ``uri``, translated into ``StoreError`` on failure."""

    def __init__(
        self,
        uri: str,
        *,
        token: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        timeout: float = OPERATION_TIMEOUT_S,
    ) -> None:
        self.uri = uri
        self.timeout = timeout
        self._token = token or ""
        self._connect_timeout = connect_timeout
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()
        _quiet_iterator_notice()

    def call(self, operation: str, target: str, action: Callable[[MilvusClient], T]) -> T:
        """Run ``action`` with the client; any failure becomes a StoreError naming the call."""
        client = self._connected()
        try:
            try:
                return action(client)
            except Exception as exc:
                # Milvus Lite brings collections back *released* after a restart: load, then retry once.
                if not (_not_loaded(exc) and self._load_released(client)):
                    raise
                return action(client)
        except Exception as exc:  # never let a pymilvus/grpc error escape unexplained
            raise StoreError(
                f"Milvus at {self.uri}: {operation} on {target!r} failed: {_reason(exc)}"
            ) from exc

    def _load_released(self, client: MilvusClient) -> bool:
        """Load every collection that is not loaded; whether any was."""
        loaded = False
        for name in client.list_collections():
            if client.get_load_state(name)["state"] != LoadState.Loaded:
                LOGGER.info("Milvus at %s: loading collection %r (released, e.g. after a restart)", self.uri, name)
                client.load_collection(name, timeout=self.timeout)
                loaded = True
        return loaded

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a collection or an alias."""
        return bool(self.call("has collection", name, lambda c: c.has_collection(name)))

    def describe(self, name: str) -> dict[str, Any] | None:
        if not self.exists(name):
            return None
        return self.call("describe", name, lambda c: c.describe_collection(name))

    def resolve(self, name: str) -> str | None:
        """The physical collection behind ``name`` (an alias or a collection), or None."""
        description = self.describe(name)
        if description is None:
            return None
        if description["collection_name"] != name:  # described through an alias
            return description["collection_name"]
        if name in self.collections():
            return name
        # A server that describes an alias under the alias's own name: ask the alias itself.
        return self.call("describe alias", name, lambda c: c.describe_alias(name))["collection_name"]

    def collections(self) -> list[str]:
        """Every physical collection (aliases are not listed)."""
        return list(self.call("list collections", "*", lambda c: c.list_collections()))

    def create(self, name: str, schema: Any, index: Callable[[MilvusClient], Any]) -> None:
        """Create, index and load a collection.

        Indexes are created without pymilvus's wait (a fixed 0.5 s sleep per index): an empty
        collection's index is ready at once, and loading waits for it anyway.
        """
        def create(client: MilvusClient) -> None:
            client.create_collection(name, schema=schema, timeout=self.timeout)
            client.create_index(name, index(client), timeout=self.timeout, sync=False)
            client.load_collection(name, timeout=self.timeout)

        self.call("create collection", name, create)

    def drop(self, name: str) -> None:
        self.call("drop collection", name, lambda c: c.drop_collection(name, timeout=self.timeout))

    def upsert(self, target: str, entities: list[dict[str, Any]]) -> None:
        self.call("upsert", target, lambda c: c.upsert(target, entities, timeout=self.timeout))

    def delete(self, target: str, expr: str) -> None:
        self.call("delete", target, lambda c: c.delete(target, filter=expr, timeout=self.timeout))

    def query(self, target: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Matching rows, at most ``QUERY_LIMIT`` of them."""
        return list(self.call("query", target, lambda c: c.query(
            target, filter=expr, output_fields=fields, limit=QUERY_LIMIT,
            timeout=self.timeout, **STRONG,
        )))

    def count(self, target: str) -> int:
        result = self.call("count", target, lambda c: c.query(
            target, filter="", output_fields=["count(*)"], timeout=self.timeout, **STRONG
        ))
        return int(result[0]["count(*)"])

    def iterate(self, target: str, fields: list[str], expr: str = "", *,
                batch_size: int = ITERATOR_BATCH) -> Iterator[dict[str, Any]]:
        """Every matching row, in batches of ``batch_size`` (collections of any size)."""
        iterator = self.call("query", target, lambda c: c.query_iterator(
            target, batch_size=batch_size, filter=expr, output_fields=fields,
            timeout=self.timeout, **STRONG,
        ))
        try:
            while batch := self.call("query", target, lambda _: iterator.next()):
                yield from batch
        finally:
            iterator.close()

    def close(self) -> None:
        """Release the connection (it reconnects if used again)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _connected(self) -> MilvusClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = MilvusClient(
                        uri=self.uri, token=self._token, timeout=self._connect_timeout,
                        grpc_options=GRPC_OPTIONS,
                    )
                except Exception as exc:  # pymilvus raises several unrelated types here
                    raise StoreError(f"Cannot reach Milvus at {self.uri}: {_reason(exc)}") from exc
            return self._client


class _LiteIteratorNotice(logging.Filter):
    """Milvus Lite returns no MVCC timestamp, and pymilvus warns about it on every iterator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


def _quiet_iterator_notice() -> None:
    iterator_logger = logging.getLogger("pymilvus.orm.iterator")
    if not any(isinstance(f, _LiteIteratorNotice) for f in iterator_logger.filters):
        iterator_logger.addFilter(_LiteIteratorNotice())


def _not_loaded(exc: Exception) -> bool:
    """Milvus's "collection not loaded" refusal (error code 101)."""
    return getattr(exc, "code", None) == COLLECTION_NOT_LOADED or "call load()" in _reason(exc)


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__
