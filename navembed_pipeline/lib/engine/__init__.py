"""The embedding run, Dagster-free: plan (what to embed), decode ahead in worker threads or processes,
embed, write in batches, report progress; the change sensor's diff, one-file embedding, and the
fingerprints the run keeps current.

May import: the shared leaves, the run contract (``runs``), ``library``, ``models``, ``store`` and ``duplicates``;
never ``recommend``.
"""

from navembed_pipeline.lib.public import lazy_names

_PUBLIC = {
    "EmbeddingRun": "run", "RunOptions": "run", "BucketReport": "run", "Utilisation": "run",
    "group_by_bucket": "run",
    "run_ahead": "ahead", "run_ahead_batches": "ahead",
    "dirty_buckets": "diff", "model_versions": "diff",
    "embed_file": "file", "file_segments": "file",
    "BACKFILL_RATE": "fingerprinter", "FINGERPRINT_FAILURES": "fingerprinter", "TrackFingerprinter": "fingerprinter",
    "WorkerDied": "pool", "WorkerPool": "pool", "start_zygote": "zygote", "warm_workers": "zygote",
}
__getattr__ = lazy_names(__name__, _PUBLIC)
__all__ = sorted(_PUBLIC)
