"""Jobs: re-embed (chosen models, force, clear_existing) and retry-failed-tracks.

Both run in-process so each model loads once per run, and carry a tag that the queued run
coordinator limits to one embedding run at a time.
"""

from collections.abc import Iterable

import dagster as dg

from navembed_pipeline.lib.models import MODEL_NAMES
from navembed_pipeline.partitions import bucket_partitions

EMBEDDING_RUN_TAG = {"navembed/kind": "embedding"}
EMBEDDINGS = dg.AssetSelection.groups("embeddings")

reembed_job = dg.define_asset_job(
    "reembed_job", selection=EMBEDDINGS, partitions_def=bucket_partitions,
    executor_def=dg.in_process_executor, tags=EMBEDDING_RUN_TAG,
    description="Embed the library with the selected model assets. Config per asset: force "
                "(re-embed unchanged tracks), clear_existing (rebuild into a fresh collection, switched "
                "in only when the run completes), only_failed.",
)

retry_failed_tracks_job = dg.define_asset_job(
    "retry_failed_tracks_job", selection=EMBEDDINGS, partitions_def=bucket_partitions,
    executor_def=dg.in_process_executor, tags=EMBEDDING_RUN_TAG,
    config={"ops": {f"{m}_embeddings": {"config": {"only_failed": True}} for m in MODEL_NAMES}},
    description="Retry exactly the tracks recorded as failed, nothing else.",
)


def embed_run_config(models: list[str], *, force: bool = False, clear_existing: bool = False,
                     only_failed: bool = False) -> dict:
    """Run config for ``reembed_job`` restricted to ``models``."""
    config = {"force": force, "clear_existing": clear_existing, "only_failed": only_failed}
    return {"ops": {f"{m}_embeddings": {"config": config} for m in models}}


EMBEDDING_JOBS = (reembed_job.name, retry_failed_tracks_job.name)
ASSET_SUFFIX = "_embeddings"


def embedded_models(asset_names: Iterable[str]) -> list[str]:
    """The models whose embedding assets are among ``asset_names`` (in the pipeline's model order)."""
    selected = {name[: -len(ASSET_SUFFIX)] for name in asset_names if name.endswith(ASSET_SUFFIX)}
    return [m for m in MODEL_NAMES if m in selected]


def is_embedding_run(job_name: str, asset_names: Iterable[str]) -> bool:
    """Runs of the embedding jobs, and asset runs (Dagster UI, sensors) that embed any model."""
    return job_name in EMBEDDING_JOBS or bool(embedded_models(asset_names))
