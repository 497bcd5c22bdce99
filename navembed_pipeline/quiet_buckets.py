"""Buckets a materializing run leaves out of its events: empty, untouched, and already recorded as empty.

A run covers every bucket of its range, yet on a small library most buckets hold nothing. Recording a
materialization and a ``tracks_embedded_or_failed`` result for each of them again on every run cost
about 2.7 s of CPU per run (two events per bucket, 256 buckets) and said nothing new. A bucket is left
out of a run's events only when all of this holds, so what Dagster shows for it stays true:

- it holds no Navidrome track and no stored row of the model (before the run, and the run changed
  nothing in it: nothing embedded, failed or deleted);
- its latest materialization already says so: ``tracks`` 0 and ``dagster/row_count`` 0, written by
  the same model version (older materializations, without ``tracks``, are never taken as empty);
- Dagster does not show the partition as failed (a failed run marks every partition it planned and
  did not materialize as failed, until a materialization of it clears that).

Its latest materialization (and the check result tied to it, "0 of 0 tracks embedded") therefore
still describes it, and the partition stays materialized in the UI: a run that succeeds without
materializing a planned partition leaves its status as it was. A bucket that gains a track, holds
rows, changes version or shows failed is materialized as before. The run logs how many it left out.
"""

from collections.abc import Iterable, Sequence

import dagster as dg
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from navembed_pipeline.lib.engine import BucketReport
from navembed_pipeline.partitions import bucket_partitions


def recorded_empty(instance: dg.DagsterInstance, key: dg.AssetKey, buckets: Iterable[str], *,
                   model_version: str) -> frozenset[str]:
    """Those of ``buckets`` whose latest materialization of ``key`` recorded no tracks and no rows, by
    ``model_version``, and that Dagster does not show as failed: a few event-log queries for all of them."""
    wanted = set(buckets)
    if wanted:  # a library in every bucket: nothing to look up
        wanted -= failed_buckets(instance, key)
    if not wanted:
        return frozenset()
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=wanted)
    if not ids:
        return frozenset()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())), limit=len(ids)).records
    return frozenset(r.partition_key for r in records
                     if r.partition_key in wanted and says_empty(r.asset_materialization.metadata, model_version))


def failed_buckets(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[str]:
    """The partitions of ``key`` Dagster shows as failed (its status cache, as the UI reads it)."""
    cached = get_and_update_asset_status_cache_value(instance, key, bucket_partitions)
    if cached is None:
        return set()
    return set(cached.deserialize_failed_partition_subsets(bucket_partitions).get_partition_keys())


def says_empty(metadata: dict, model_version: str) -> bool:
    """Whether a materialization's metadata records an empty bucket (no tracks, no rows) of ``model_version``."""
    def value(name: str) -> object:
        return getattr(metadata.get(name), "value", None)

    return value("tracks") == 0 and value("dagster/row_count") == 0 and value("model_version") == model_version


def untouched(report: BucketReport) -> bool:
    """The run embedded, failed and deleted nothing in the bucket."""
    return not (report.embedded or report.failed or report.deleted)


def left_out_line(model_name: str, buckets: Sequence[str], scope: int) -> str:
    """The run's log line for the buckets it left out of its events."""
    return (f"{model_name}: {len(buckets)} of {scope} bucket(s) hold no tracks and no vectors, as their latest "
            "materializations already record: not materialized again (their checks stand)")
