"""A run leaves out of its events the buckets that hold nothing and are already recorded as empty
(``quiet_buckets.py``), with real Dagster and the session's Milvus Lite server; every bucket it changed,
or that Dagster does not already show as a true empty, is materialized and checked as before."""

import shutil

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from navembed_pipeline.checks import TRACKS_CHECK
from navembed_pipeline.lib.buckets import BUCKETS, bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.partitions import bucket_partitions
from navembed_pipeline.sample_data.navidrome_fixture import FixtureTrack, add_tracks, delete_track
from navembed_pipeline.sample_data.sample_library import MUSIC_DIR
from tests.pipeline.helpers import bucket_materializations, embed

DSP = dg.AssetKey("dsp_embeddings")


def occupied(library) -> set[str]:
    """Buckets holding a Navidrome track."""
    return {bucket_of(t.id) for t in NavidromeLibrary(library.db_path).tracks()}


def checked(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """The run's ``tracks_embedded_or_failed`` results on the dsp asset, by bucket."""
    return {e.partition: e for e in result.get_asset_check_evaluations()
            if e.asset_key == DSP and e.check_name == TRACKS_CHECK}


def messages(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    return [r.user_message for r in instance.all_logs(result.run_id) if r.user_message and not r.dagster_event]


def statuses(instance: dg.DagsterInstance) -> dict[str, AssetPartitionStatus | None]:
    """What the Dagster UI shows for each bucket of the dsp asset."""
    return dict(instance.get_status_by_partition(DSP, list(BUCKETS), bucket_partitions))


def check_subsets(instance: dg.DagsterInstance) -> dict[AssetCheckExecutionResolvedStatus, set[str]]:
    """What the check's Partitions tab shows: the buckets by the status of their latest check execution."""
    key = dg.AssetCheckKey(DSP, TRACKS_CHECK)
    state = instance.event_log_storage.get_asset_check_state([(key, bucket_partitions)])[key]
    return {status: set(subset.subset_value.get_partition_keys()) for status, subset in state.subsets.items()}


def latest(instance: dg.DagsterInstance, bucket: str) -> dg.EventLogRecord:
    """The bucket's latest materialization of the dsp asset."""
    return instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=DSP, asset_partitions=[bucket]),
                                           limit=1).records[0]


def dsp_version() -> str:
    model = create_model("dsp")
    try:
        return model.version
    finally:
        model.shutdown()


def test_the_first_run_records_every_bucket_with_its_track_count(sample_library, vector_store, milvus_uri,
                                                                 instance) -> None:
    per_bucket = bucket_materializations(embed(sample_library, milvus_uri, instance))
    full = occupied(sample_library)
    assert set(per_bucket) == set(BUCKETS)
    assert {b for b, m in per_bucket.items() if m["tracks"]} == full
    assert sum(m["tracks"] for m in per_bucket.values()) == len(list(NavidromeLibrary(sample_library.db_path).tracks()))
    assert all(m["tracks"] == 0 and m["dagster/row_count"] == 0 for b, m in per_bucket.items() if b not in full)


def test_a_second_run_records_only_the_buckets_that_hold_tracks(sample_library, vector_store, milvus_uri,
                                                                instance) -> None:
    first = embed(sample_library, milvus_uri, instance)
    again = embed(sample_library, milvus_uri, instance)
    full = occupied(sample_library)
    per_bucket = bucket_materializations(again)
    assert set(per_bucket) == full  # every bucket with tracks, with its counts, as before
    assert sum(m["skipped"] for m in per_bucket.values()) == 11 and sum(m["failed"] for m in per_bucket.values()) == 1
    assert set(checked(again)) == full
    assert f"dsp: {256 - len(full)} of 256 bucket(s) hold no tracks and no vectors" in "\n".join(
        messages(instance, again))
    # The check's Partitions tab: the empty buckets' latest run planned the check and did not execute it
    # (skipped); every bucket with tracks has this run's result (the corrupt file's bucket fails).
    subsets = check_subsets(instance)
    assert subsets[AssetCheckExecutionResolvedStatus.SKIPPED] == set(BUCKETS) - full
    assert subsets[AssetCheckExecutionResolvedStatus.SUCCEEDED] | subsets[AssetCheckExecutionResolvedStatus.FAILED] == full
    assert len(subsets[AssetCheckExecutionResolvedStatus.FAILED]) == 1
    # The UI still shows every bucket materialized; an empty one's latest materialization is the first
    # run's, which says it is empty, as it still is.
    assert set(statuses(instance).values()) == {AssetPartitionStatus.MATERIALIZED}
    empty = next(b for b in BUCKETS if b not in full)
    record = latest(instance, empty)
    assert record.run_id == first.run_id
    assert record.asset_materialization.metadata["tracks"].value == 0
    assert record.asset_materialization.metadata["dagster/row_count"].value == 0


def test_a_bucket_that_gains_or_loses_its_tracks_is_materialized(sample_library, vector_store, milvus_uri,
                                                                 instance) -> None:
    embed(sample_library, milvus_uri, instance)
    before = occupied(sample_library)
    tracks = list(NavidromeLibrary(sample_library.db_path).tracks())
    alone = next(t for t in tracks if "Damaged" not in t.path.name and "Live Set" not in t.path.name
                 and sum(bucket_of(o.id) == bucket_of(t.id) for o in tracks) == 1)
    delete_track(sample_library.db_path, alone.id)
    music = sample_library.root / MUSIC_DIR
    copy = music / "Added" / "new track.flac"
    copy.parent.mkdir()
    shutil.copy(sample_library.duplicate_pair[0], copy)
    new_id = next(f"added-{i}" for i in range(1000) if bucket_of(f"added-{i}") not in before)
    add_tracks(sample_library.db_path, [FixtureTrack(path="Added/new track.flac", title="New", artist="Added",
                                                     album="Added", duration=20.0, id=new_id)])

    result = embed(sample_library, milvus_uri, instance)
    per_bucket = bucket_materializations(result)
    emptied, gained = bucket_of(alone.id), bucket_of(new_id)
    assert set(per_bucket) == (before - {emptied}) | {emptied, gained}
    assert per_bucket[emptied]["deleted"] == 1
    assert per_bucket[emptied]["tracks"] == per_bucket[emptied]["dagster/row_count"] == 0
    assert per_bucket[gained]["embedded"] == per_bucket[gained]["tracks"] == per_bucket[gained]["dagster/row_count"] == 1
    results = checked(result)
    assert results[emptied].passed and results[emptied].metadata["tracks"].value == 0
    assert results[gained].passed and results[gained].metadata["embedded"].value == 1
    # Recorded empty now: the next run leaves the emptied bucket out.
    assert emptied not in bucket_materializations(embed(sample_library, milvus_uri, instance))


def test_empty_buckets_recorded_otherwise_are_materialized_again(sample_library, vector_store, milvus_uri,
                                                                instance) -> None:
    embed(sample_library, milvus_uri, instance)
    full = occupied(sample_library)
    other_version, untold = [b for b in BUCKETS if b not in full][:2]
    # Another model version's record, and one written before materializations carried ``tracks``.
    instance.report_runless_asset_event(dg.AssetMaterialization(
        DSP, partition=other_version, metadata={"tracks": 0, "dagster/row_count": 0, "model_version": "dsp:older"}))
    instance.report_runless_asset_event(dg.AssetMaterialization(
        DSP, partition=untold, metadata={"dagster/row_count": 0, "model_version": dsp_version()}))
    again = embed(sample_library, milvus_uri, instance)
    per_bucket = bucket_materializations(again)
    assert set(per_bucket) == full | {other_version, untold}
    assert per_bucket[other_version]["model_version"] == per_bucket[untold]["model_version"] == dsp_version()
    assert set(checked(again)) == full | {other_version, untold}


def test_buckets_a_failed_run_left_failed_are_materialized_again(sample_library, vector_store, milvus_uri,
                                                                 instance) -> None:
    embed(sample_library, milvus_uri, instance)
    full = occupied(sample_library)
    # clear_existing over part of the buckets fails the run before it records anything
    failed = embed(sample_library, milvus_uri, instance, first="00", last="0f", clear_existing=True,
                   raise_on_error=False)
    assert not failed.success
    shown = statuses(instance)
    assert {b for b, s in shown.items() if s == AssetPartitionStatus.FAILED} == set(BUCKETS[:16])
    again = embed(sample_library, milvus_uri, instance)
    assert set(bucket_materializations(again)) == full | set(BUCKETS[:16])
    assert set(statuses(instance).values()) == {AssetPartitionStatus.MATERIALIZED}
