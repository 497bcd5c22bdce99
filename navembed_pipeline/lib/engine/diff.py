"""Which buckets disagree between Navidrome and the vector store (for the change sensor)."""

from collections.abc import Mapping, Sequence

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.library.upload_ids import is_upload_id
from navembed_pipeline.lib.store.missing_tracks import DeletionGuard
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.lib.store import VectorStore


def model_versions(models: Sequence[str], options: ModelOptions) -> dict[str, str]:
    """The version each model would write with ``options`` — the options the runs use (weights
    under ``models_dir``, layer choices…), or a model's version can differ from what it stores."""
    versions = {}
    for name in models:
        model = create_model(name, options)
        try:
            versions[name] = model.version
        finally:
            model.shutdown()
    return versions


def dirty_buckets(library: NavidromeLibrary, store: VectorStore, versions: Mapping[str, str],
                  guard: DeletionGuard | None = None) -> set[str]:
    """Buckets with a new, changed or deleted track, or vectors of an older model version.

    ``versions`` maps each enabled model to its current version (``model_versions``). With ``guard``
    a vanished track makes its bucket dirty only when a run would delete it (not while its file is
    missing within the grace period, nor while a mass deletion is refused).
    """
    current = {t.id: track_fingerprint(t) for t in library.tracks()}
    dirty: set[str] = set()
    for name, version in versions.items():
        stored = store.stored_summary(name)  # track_id -> (fingerprint, model_version)
        failed = store.failed_tracks(name)  # retried by retry_failed_tracks_job and nightly, not every tick
        for track_id, fingerprint in current.items():
            if track_id not in failed and stored.get(track_id) != (fingerprint, version):
                dirty.add(bucket_of(track_id))
        # Upload rows (an older version kept them here) are not library tracks: never a reason to run.
        vanished = stored.keys() - current.keys()
        if guard is not None:
            vanished &= guard.judge(name, stored, record=False).deletable
        dirty.update(bucket_of(t) for t in vanished if not is_upload_id(t))
    return dirty
