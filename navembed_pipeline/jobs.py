"""Jobs: re-embed (chosen models, force, clear_existing) and retry-failed-tracks.

Both run in-process so each model loads once per run, and carry a lane tag that the queued run
coordinator limits to one embedding run per lane at a time (a fanned-out job's workers use lanes 0..N-1).
"""

import dagster as dg

from navembed_pipeline.lib.models import MODEL_NAMES
from navembed_pipeline.lib.runs import (  # noqa: F401 (re-exported: the contract lives in lib/runs.py)
    ASSET_SUFFIX,
    EMBEDDING_JOBS,
    EMBEDDING_RUN_TAGS,
    EMBEDDINGS_GROUP,
    REEMBED_JOB,
    RETRY_FAILED_JOB,
    asset_name,
    embed_run_config,
    embedded_models,
    is_embedding_run,
)
from navembed_pipeline.partitions import bucket_partitions
from navembed_pipeline.lib.workers import DEFAULT_LANE, LANE_TAG

# Lane 0 unless a fanned-out job's worker run says otherwise (lib/workers.py, dagster.yaml's limit).
EMBEDDING_RUN_TAG = {**EMBEDDING_RUN_TAGS, LANE_TAG: DEFAULT_LANE}
EMBEDDINGS = dg.AssetSelection.groups(EMBEDDINGS_GROUP)

reembed_job = dg.define_asset_job(
    REEMBED_JOB, selection=EMBEDDINGS, partitions_def=bucket_partitions,
    executor_def=dg.in_process_executor, tags=EMBEDDING_RUN_TAG,
    description="Embed the library with the selected model assets. Config per asset: force "
                "(re-embed unchanged tracks), clear_existing (rebuild into a fresh collection, switched "
                "in only when the run completes), only_failed.",
)

retry_failed_tracks_job = dg.define_asset_job(
    RETRY_FAILED_JOB, selection=EMBEDDINGS, partitions_def=bucket_partitions,
    executor_def=dg.in_process_executor, tags=EMBEDDING_RUN_TAG,
    config=embed_run_config(MODEL_NAMES, only_failed=True),
    description="Retry exactly the tracks recorded as failed, nothing else.",
)
