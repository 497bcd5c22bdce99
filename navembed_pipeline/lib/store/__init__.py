"""The vector store: the Milvus client, one collection per model (schema, rows, rebuilds), each model's write
generation (what readers compare to see a finished run's writes), the managed Milvus Lite server process,
the failure log, the checks of what is stored (vector health), the deletion guard (missing-file tombstones,
refused mass deletions) and damaged state files set aside.

May import: the shared leaves and ``library``; never ``engine``, ``duplicates`` or ``recommend``.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "VectorStore": "vector_store",
    "Hit": "schema", "StoredInfo": "schema", "VectorRow": "schema", "collection_name": "schema",
    "STANDALONE_MAX_DIM": "schema", "row_entity": "schema",
    "FailureLog": "failure_log", "read_failure_summary": "failure_log",
    "MilvusLiteServer": "server", "ensure_running": "server", "private_socket": "server", "running_uri": "server",
    "stop_running": "server",
    "AUDIT_FIELDS": "health:SCALAR_FIELDS", "BucketAccount": "health", "Problem": "health", "VectorAudit": "health",
    "account_bucket": "health", "sample": "health",
    "DEFAULT_GRACE_HOURS": "missing_tracks", "DEFAULT_MAX_SHARE": "missing_tracks", "DeletionGuard": "missing_tracks",
    "DeletionPolicy": "missing_tracks", "DeletionVerdict": "missing_tracks", "MissingLog": "missing_tracks",
    "read_refusals": "missing_tracks",
    "SET_ASIDE_MARK": "state_files", "SET_ASIDE_TIME": "state_files", "set_aside_files": "state_files", "set_aside_if_damaged": "state_files",
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
