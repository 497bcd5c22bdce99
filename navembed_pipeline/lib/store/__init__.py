"""The vector store: the Milvus client, one collection per model (schema, rows, rebuilds), each model's write
generation (what readers compare to see a finished run's writes), the managed Milvus Lite server process,
the failure log, and the checks of what is stored (vector health).

May import: the shared leaves and ``library``; never ``engine``, ``duplicates`` or ``recommend``.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "VectorStore": "vector_store",
    "Hit": "schema", "StoredInfo": "schema", "VectorRow": "schema", "collection_name": "schema",
    "STANDALONE_MAX_DIM": "schema", "row_entity": "schema",
    "FailureLog": "failure_log",
    "MilvusLiteServer": "server", "ensure_running": "server", "private_socket": "server", "running_uri": "server",
    "stop_running": "server",
    "AUDIT_FIELDS": "health:SCALAR_FIELDS", "BucketAccount": "health", "Problem": "health", "VectorAudit": "health",
    "account_bucket": "health", "sample": "health",
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
