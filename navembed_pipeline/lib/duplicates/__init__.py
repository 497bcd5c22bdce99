"""Duplicates and uploads: Chromaprint fingerprints and their matching, the durable fingerprint store
(candidates, verified duplicate edges, recording groups kept up to date as prints are written), the
groups as a per-track number array for requests (``RecordingGroupIndex``), and uploads in their own store.

May import: the shared leaves, ``library`` and ``store``; never ``engine``, ``models`` or ``recommend``.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "DUPLICATE_SCORE": "chromaprint", "MIN_OVERLAP_FRACTION": "chromaprint", "FingerprintError": "chromaprint",
    "Match": "chromaprint", "decidable": "chromaprint", "fingerprint_pcm": "chromaprint",
    "capped_print": "chromaprint", "PRINT_SECONDS": "chromaprint",
    "is_duplicate": "chromaprint", "match": "chromaprint",
    "Duplicate": "fingerprint_store", "FingerprintStore": "fingerprint_store",
    "FingerprintStoreError": "fingerprint_store", "Print": "fingerprint_store",
    "NO_GROUP": "groups", "RecordingGroupIndex": "groups",
    "UploadRecord": "uploads", "UploadStore": "uploads", "migrate_library_uploads": "uploads",
    "upload_collection": "uploads",
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
