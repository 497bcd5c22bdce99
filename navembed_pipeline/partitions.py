"""The bucket partitions shared by every embedding asset."""

import dagster as dg

from navembed_pipeline.lib.buckets import BUCKETS

# The range tags are part of the run contract (lib/runs.py); re-exported for the Dagster layer.
from navembed_pipeline.lib.runs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, range_tags  # noqa: F401

bucket_partitions = dg.StaticPartitionsDefinition(list(BUCKETS))
