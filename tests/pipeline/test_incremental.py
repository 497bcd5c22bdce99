"""Only what changed is re-embedded: skips, touched files, deletions via the sensor, failed-only retries."""

from datetime import UTC, datetime

import dagster as dg
from dagster._core.utils import make_new_run_id

from navembed_pipeline.definitions import build_definitions
from navembed_pipeline.jobs import retry_failed_tracks_job
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.partitions import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, range_tags
from navembed_pipeline.sample_data.navidrome_fixture import delete_track, touch_track
from navembed_pipeline.sensors import build_library_change_sensor
from tests.lib.store.milvus_fixture import session_failures_db
from tests.pipeline.helpers import bucket_materializations, embed, pipeline_resources


def tracks_by_name(library) -> dict[str, object]:
    return {t.path.name: t for t in NavidromeLibrary(library.db_path).tracks()}


def evaluate_sensor(library, uri: str, instance: dg.DagsterInstance) -> dg.SensorResult:
    sensor = build_library_change_sensor(["dsp"], interval_seconds=60)
    with dg.build_sensor_context(instance=instance, resources=pipeline_resources(library, uri)) as context:
        return sensor(context)


def requested_buckets(result: dg.SensorResult) -> list[tuple[str, str]]:
    return [(r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG]) for r in result.run_requests]


def embedded_ids(result, store, model: str = "dsp") -> int:
    return sum(m["embedded"] for m in bucket_materializations(result, model).values())


def test_touching_one_file_re_embeds_only_that_track(sample_library, vector_store, milvus_uri, instance) -> None:
    embed(sample_library, milvus_uri, instance)
    track = tracks_by_name(sample_library)["02 Cold Pads.flac"]
    touch_track(sample_library.db_path, track.id, updated_at=datetime(2026, 6, 1, tzinfo=UTC))
    result = embed(sample_library, milvus_uri, instance)
    per_bucket = bucket_materializations(result)
    embedded = {b: m["embedded"] for b, m in per_bucket.items() if m["embedded"]}
    assert embedded == {bucket_of(track.id): 1}


def test_sensor_requests_only_the_dirty_buckets(sample_library, vector_store, milvus_uri, instance) -> None:
    embed(sample_library, milvus_uri, instance)
    assert not evaluate_sensor(sample_library, milvus_uri, instance).run_requests  # the corrupt file is not "dirty"
    names = tracks_by_name(sample_library)
    changed, gone = names["02 Cold Pads.flac"], names["01 Deep Bass.m4a"]
    touch_track(sample_library.db_path, changed.id, updated_at=datetime(2026, 6, 1, tzinfo=UTC))
    delete_track(sample_library.db_path, gone.id)
    result = evaluate_sensor(sample_library, milvus_uri, instance)
    buckets = {bucket_of(changed.id), bucket_of(gone.id)}
    assert sorted(requested_buckets(result)) == sorted((b, b) for b in buckets)
    request = result.run_requests[0]
    assert request.asset_selection == [dg.AssetKey("dsp_embeddings")]


def test_sensor_waits_while_an_embedding_run_is_queued_or_running(sample_library, vector_store, milvus_uri,
                                                                  instance) -> None:
    running = instance.add_run(dg.DagsterRun(job_name="reembed_job", run_id=make_new_run_id(),
                                            status=dg.DagsterRunStatus.STARTED))
    result = evaluate_sensor(sample_library, milvus_uri, instance)  # nothing is embedded yet: all dirty
    assert not result.run_requests and running.run_id in result.skip_reason.skip_message
    instance.report_run_canceled(running)
    # "Materialize" in the Dagster UI: an asset job run that embeds
    from_ui = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=make_new_run_id(),
                                             asset_selection=frozenset({dg.AssetKey("dsp_embeddings")}),
                                             status=dg.DagsterRunStatus.STARTED))
    assert from_ui.run_id in evaluate_sensor(sample_library, milvus_uri, instance).skip_reason.skip_message
    instance.report_run_canceled(from_ui)
    assert evaluate_sensor(sample_library, milvus_uri, instance).run_requests


def test_deleted_track_vectors_are_removed_by_the_sensor_run(sample_library, vector_store, milvus_uri,
                                                             instance) -> None:
    embed(sample_library, milvus_uri, instance)
    gone = tracks_by_name(sample_library)["01 Deep Bass.m4a"]
    assert gone.id in vector_store.stored("dsp", [gone.id])
    delete_track(sample_library.db_path, gone.id)
    for first, last in requested_buckets(evaluate_sensor(sample_library, milvus_uri, instance)):
        result = embed(sample_library, milvus_uri, instance, first=first, last=last)
        assert sum(m["deleted"] for m in bucket_materializations(result).values()) == 1
    assert vector_store.stored("dsp", [gone.id]) == {}
    assert not evaluate_sensor(sample_library, milvus_uri, instance).run_requests


def test_failed_only_job_retries_exactly_the_failed_tracks(sample_library, vector_store, milvus_uri,
                                                           instance) -> None:
    embed(sample_library, milvus_uri, instance)
    corrupt = tracks_by_name(sample_library)["01 Damaged.mp3"]
    assert set(vector_store.failed_tracks("dsp")) == {corrupt.id}
    # the file gets repaired: a readable copy of another track takes its place
    sample_library.corrupt_path.write_bytes(sample_library.duplicate_pair[1].read_bytes())
    # the data dir whose failure log the session's store reads (failures.sqlite in it)
    settings = Settings(navidrome_db=sample_library.db_path, milvus_uri=milvus_uri, models="dsp",
                        models_device="cpu", data_dir=session_failures_db().parent)
    job = build_definitions(settings).resolve_job_def(retry_failed_tracks_job.name)
    result = job.execute_in_process(instance=instance, tags=range_tags(),
                                    asset_selection=[dg.AssetKey("dsp_embeddings")])
    per_bucket = bucket_materializations(result)
    assert {b: m["embedded"] for b, m in per_bucket.items() if m["embedded"]} == {bucket_of(corrupt.id): 1}
    assert sum(m["skipped"] for m in per_bucket.values()) == 11
    assert vector_store.failed_tracks("dsp") == {}
    assert corrupt.id in vector_store.stored("dsp", [corrupt.id])
