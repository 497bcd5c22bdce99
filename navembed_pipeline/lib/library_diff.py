"""Which buckets disagree between Navidrome and the vector store (for the change sensor)."""

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.lib.navidrome import NavidromeLibrary
from navembed_pipeline.lib.segments import track_fingerprint
from navembed_pipeline.lib.store import VectorStore


def dirty_buckets(library: NavidromeLibrary, store: VectorStore, models: list[str]) -> set[str]:
    """Buckets with a new, changed or deleted track, or vectors of an older model version."""
    current = {t.id: track_fingerprint(t) for t in library.tracks()}
    dirty: set[str] = set()
    for name in models:
        model = create_model(name)
        try:
            version = model.version
        finally:
            model.shutdown()
        stored = store.stored_summary(name)  # track_id -> (fingerprint, model_version)
        failed = store.failed_tracks(name)  # retried by retry_failed_tracks_job and nightly, not every tick
        for track_id, fingerprint in current.items():
            if track_id not in failed and stored.get(track_id) != (fingerprint, version):
                dirty.add(bucket_of(track_id))
        dirty.update(bucket_of(t) for t in stored.keys() - current.keys())
    return dirty
