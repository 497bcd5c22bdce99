"""Upgrading a model whose vectors change dimensions (dsp v1 → v2) rebuilds its collection by itself.

The old collection cannot take the new vectors, so a run over a few buckets would fail and the sensor
would ask for it again forever. Instead the sensor asks for one run over all buckets, and that run
rebuilds the collection (readers keep the old vectors until it is done).
"""

import dagster as dg

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from navembed_pipeline.sensors import build_library_change_sensor
from tests.pipeline.helpers import embed, pipeline_resources

V1_FIELDS = {"embedding": 327}  # what dsp v1 stored
V2_FIELDS = {"embedding": 273}


def requested(library, uri: str, instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    sensor = build_library_change_sensor(["dsp"], interval_seconds=60)
    with dg.build_sensor_context(instance=instance, resources=pipeline_resources(library, uri)) as context:
        result = sensor(context)
    return [(r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG]) for r in result.run_requests]


def test_a_changed_dimension_is_rebuilt_by_one_run_over_all_buckets(sample_library, vector_store, milvus_uri,
                                                                    instance) -> None:
    vector_store.ensure_collection("dsp", V1_FIELDS)  # an install that ran dsp v1
    assert vector_store.needs_rebuild("dsp", V2_FIELDS)
    assert requested(sample_library, milvus_uri, instance) == [("00", "ff")]

    partial = embed(sample_library, milvus_uri, instance, first="00", last="7f", raise_on_error=False)
    assert not partial.success  # refused with a clear message, nothing half-written
    assert "whole collection" in str(partial.all_events)

    assert embed(sample_library, milvus_uri, instance).success
    assert not vector_store.needs_rebuild("dsp", V2_FIELDS)  # the live collection now has v2's shape
    readable = [t for t in NavidromeLibrary(sample_library.db_path).tracks() if "Damaged" not in t.path.name]
    stored = vector_store.stored("dsp", [t.id for t in readable])
    assert set(stored) == {t.id for t in readable}
    assert {info.model_version for info in stored.values()} == {next(iter(stored.values())).model_version}
    assert next(iter(stored.values())).model_version.startswith("dsp:v2-")
    assert vector_store.pending_rebuilds("dsp") == []
    assert requested(sample_library, milvus_uri, instance) == []
