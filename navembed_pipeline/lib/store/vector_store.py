"""The vector store: one collection per model in Milvus, reached by URI only.

Used by the pipeline (writes) and the API (reads). The same code talks to the managed Milvus Lite
server and to Milvus standalone. Every failure surfaces as a ``StoreError`` naming the URI and the
operation.

``VectorStore`` is assembled from one module per concern: ``collection`` (a collection per
model, rebuilds behind an alias), ``rows`` (writes, searches, reads) and ``failure_log`` (why
tracks failed, in SQLite beside the store); ``client`` is the connection, ``schema``
the records and the Milvus schema.
"""

from collections.abc import Iterable

from navembed_pipeline.lib.store.client import CONNECT_TIMEOUT_S, MilvusConnection
from navembed_pipeline.lib.store.failure_log import FailureLog, migrate_milvus_failures
from navembed_pipeline.lib.store.rows import StoreRows
from navembed_pipeline.lib.store.schema import FAILURES_COLLECTION, Hit, StoredInfo, VectorRow, collection_name

__all__ = ["Hit", "StoredInfo", "VectorRow", "VectorStore", "collection_name"]


class VectorStore(StoreRows):
    """navembed's collections in the Milvus server at ``uri`` (connects on first use).

    Reads and writes take the model name; ``collection=`` redirects them to a rebuild's staging
    collection. Reads of a model that has no collection yet answer "nothing stored".
    """

    def __init__(
        self, uri: str, *, token: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S,
        failure_log: FailureLog | None = None, max_dimension: int | None = None,
    ) -> None:
        """``failure_log``: where failed tracks are recorded — the data dir's log in every navembed
        process (``FailureLog.in_data_dir``); without one, a private in-memory log that ends with
        this object (for tools and tests that record nothing durable). ``max_dimension``: the
        longest vector the server accepts (``STANDALONE_MAX_DIM`` for Milvus standalone/distributed;
        None for Milvus Lite, which has no cap)."""
        self.uri = uri
        self.max_dimension = max_dimension
        self._milvus = MilvusConnection(uri, token=token, connect_timeout=connect_timeout)
        self._failure_log = failure_log if failure_log is not None else FailureLog(":memory:")
        self._failures_migrated = False

    # ── failures (a SQLite log beside the store; see failure_log.py) ────────

    @property
    def failure_log(self) -> FailureLog:
        """The failure log, with any records of the old Milvus failures collection moved into it."""
        if not self._failures_migrated:
            migrate_milvus_failures(self._milvus, self._failure_log, FAILURES_COLLECTION)
            self._failures_migrated = True
        return self._failure_log

    def record_failures(self, model: str, failures: Iterable[tuple[str, str]]) -> None:
        """Remember why tracks failed for ``model`` (the latest error per track wins)."""
        self.failure_log.record(model, failures)

    def failed_tracks(self, model: str) -> dict[str, str]:
        """The recorded error of every failed track of ``model``."""
        return self.failure_log.failed(model)

    def clear_failures(self, model: str, track_ids: Iterable[str]) -> None:
        """Forget the failures of these tracks (e.g. after they embedded fine)."""
        self.failure_log.clear(model, track_ids)

    def close(self) -> None:
        """Release the connection (the store reconnects if used again)."""
        self._milvus.close()
