"""The bucket partitions shared by every embedding asset."""

import dagster as dg

from navembed_pipeline.lib.buckets import BUCKETS

bucket_partitions = dg.StaticPartitionsDefinition(list(BUCKETS))

PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: str = BUCKETS[0], last: str = BUCKETS[-1]) -> dict[str, str]:
    """Run tags that make one run cover buckets ``first``..``last`` (default: all of them)."""
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
