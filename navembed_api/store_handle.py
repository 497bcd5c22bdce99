"""The vector store, connected on first use so the API starts (and reports) even while Milvus is down."""

import threading
from pathlib import Path

from navembed_pipeline.lib.store import STANDALONE_MAX_DIM, FailureLog, VectorStore, ensure_running


class StoreHandle:
    """``uri`` when given, else the managed Milvus Lite server of ``data_dir`` (started if needed)."""

    def __init__(self, *, uri: str, token: str, data_dir: Path, failures_db: Path | None = None) -> None:
        self._uri = uri
        self._failures_db = failures_db
        self._token = token
        self._data_dir = data_dir
        self._store: VectorStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                uri = self._uri or ensure_running(self._data_dir)
                failures = FailureLog(self._failures_db) if self._failures_db is not None else None
                cap = STANDALONE_MAX_DIM if self._uri else None  # a configured URI: Milvus standalone
                self._store = VectorStore(uri, token=self._token or None, failure_log=failures, max_dimension=cap)
            return self._store

    @property
    def uri(self) -> str:
        return self._store.uri if self._store else (self._uri or f"(managed Milvus Lite in {self._data_dir})")

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
