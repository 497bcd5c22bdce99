"""The embedding assets' checks, evaluated by real Dagster runs against a real Milvus Lite server.

They run with each materialization (bucket by bucket) and on their own (a check-only run of the
subsettable asset); what they find is read back from the store, so damage done behind the pipeline's
back shows up the next time they run.
"""

from datetime import timedelta

import dagster as dg
from pymilvus import MilvusClient

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.checks import TRACKS_CHECK, VECTORS_CHECK, VERSION_CHECK
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.store import collection_name
from navembed_pipeline.partitions import range_tags
from tests.pipeline.helpers import bucket_materializations, embed, pipeline_resources

DSP = dg.AssetKey("dsp_embeddings")


def evaluations(result: dg.ExecuteInProcessResult, check: str) -> dict[str | None, dg.AssetCheckEvaluation]:
    """The run's evaluations of ``check`` on the dsp asset, by bucket (None for the run-wide checks)."""
    return {e.partition: e for e in result.get_asset_check_evaluations()
            if e.asset_key == DSP and e.check_name == check}


def check_alone(library, uri: str, instance: dg.DagsterInstance, *checks: str) -> dg.ExecuteInProcessResult:
    """Run only ``checks`` of the dsp asset over every bucket: nothing is embedded."""
    keys = [dg.AssetCheckKey(DSP, name) for name in checks]
    return dg.materialize([library_tracks, *embedding_assets], instance=instance,
                          selection=dg.AssetSelection.checks(*keys),
                          tags=range_tags() if TRACKS_CHECK in checks else {},  # the per-run checks: no buckets
                          resources=pipeline_resources(library, uri))


def track_ids(library, name_part: str) -> list[str]:
    return [t.id for t in NavidromeLibrary(library.db_path).tracks() if name_part in t.path.name]


def test_a_corrupt_file_yields_a_warn_check_naming_it_in_its_bucket(sample_library, vector_store, milvus_uri,
                                                                    instance) -> None:
    result = embed(sample_library, milvus_uri, instance)
    per_bucket = evaluations(result, TRACKS_CHECK)
    assert set(per_bucket) == {f"{i:02x}" for i in range(256)}  # one result per materialized bucket
    corrupt = per_bucket.pop(bucket_of(track_ids(sample_library, "Damaged")[0]))
    assert not corrupt.passed and corrupt.severity == dg.AssetCheckSeverity.WARN
    assert corrupt.metadata["failed"].value == 1 and corrupt.metadata["unaccounted"].value == 0
    assert "Broken - Damaged" in corrupt.metadata["failed_tracks"].value
    assert "not a readable audio file" in corrupt.metadata["failed_tracks"].value
    assert "Broken - Damaged" in corrupt.description
    assert all(e.passed for e in per_bucket.values())
    # each result is tied to its bucket's materialization of this run (the UI's "latest" for the bucket)
    assert corrupt.target_materialization_data is not None
    assert corrupt.target_materialization_data.run_id == result.run_id
    assert evaluations(result, VECTORS_CHECK)[None].passed
    assert evaluations(result, VERSION_CHECK)[None].passed


def test_row_counts_model_version_and_location_ride_on_each_bucket(sample_library, vector_store, milvus_uri,
                                                                   instance) -> None:
    result = embed(sample_library, milvus_uri, instance)
    per_bucket = bucket_materializations(result)
    total = vector_store.count("dsp")
    assert total == 13  # 10 readable single-file tracks + the CUE album's 3 segments
    assert sum(m["dagster/row_count"] for m in per_bucket.values()) == total
    album = track_ids(sample_library, "Live Set.flac")[0]
    assert per_bucket[bucket_of(album)]["dagster/row_count"] >= 3
    # the whole collection as each bucket was written: the run's last materialization sees every row
    last = {k: v.value for k, v in result.get_asset_materialization_events()[-1].materialization.metadata.items()}
    assert last["collection_rows"] == total
    assert last["model_version"].startswith("dsp:") and last["dimensions"]["embedding"] > 0
    assert last["dagster/table_name"] == collection_name("dsp") and last["dagster/uri"] == milvus_uri


def test_rows_deleted_behind_the_pipelines_back_fail_the_checks_run_on_their_own(sample_library, vector_store,
                                                                                 milvus_uri, instance) -> None:
    embed(sample_library, milvus_uri, instance)
    plain = track_ids(sample_library, "02 Cold Pads")[0]
    album = track_ids(sample_library, "Live Set.flac")[0]
    client = MilvusClient(uri=milvus_uri)
    try:  # a whole track, and the middle segment of the CUE album
        client.delete(collection_name("dsp"), filter=f'track_id == "{plain}" or (track_id == "{album}" and segment == 2)')
    finally:
        client.close()

    result = check_alone(sample_library, milvus_uri, instance, TRACKS_CHECK, VECTORS_CHECK, VERSION_CHECK)
    assert result.success and not result.get_asset_materialization_events()  # nothing was embedded
    missing = evaluations(result, TRACKS_CHECK)[bucket_of(plain)]
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    assert plain in missing.metadata["unaccounted_tracks"].value
    vectors = evaluations(result, VECTORS_CHECK)[None]
    assert not vectors.passed and vectors.severity == dg.AssetCheckSeverity.ERROR
    assert vectors.metadata["segments_violations"].value == 1 and album in vectors.metadata["violations"].value
    assert vectors.metadata["vectors_checked"].value == 11  # every remaining row's vectors were read (13 - 2)


def test_vectors_of_another_model_version_are_counted_stale(sample_library, vector_store, milvus_uri,
                                                            instance) -> None:
    embed(sample_library, milvus_uri, instance)
    plain = track_ids(sample_library, "02 Cold Pads")[0]
    client = MilvusClient(uri=milvus_uri)
    try:
        row = client.query(collection_name("dsp"), filter=f'track_id == "{plain}"', output_fields=["*"])[0]
        client.upsert(collection_name("dsp"), [{**row, "model_version": "dsp:older"}])
    finally:
        client.close()

    result = check_alone(sample_library, milvus_uri, instance, VERSION_CHECK)
    stale = evaluations(result, VERSION_CHECK)[None]
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["stale_tracks"].value == 1 and "dsp:older" in stale.metadata["stale"].value
    assert set(evaluations(result, VECTORS_CHECK)) == set()  # only the selected check ran


def test_a_non_unit_vector_fails_the_vectors_check(sample_library, vector_store, milvus_uri, instance) -> None:
    embed(sample_library, milvus_uri, instance)
    plain = track_ids(sample_library, "02 Cold Pads")[0]
    client = MilvusClient(uri=milvus_uri)
    try:
        row = client.query(collection_name("dsp"), filter=f'track_id == "{plain}"', output_fields=["*"])[0]
        client.upsert(collection_name("dsp"), [{**row, "embedding": [2 * v for v in row["embedding"]]}])
    finally:
        client.close()

    vectors = evaluations(check_alone(sample_library, milvus_uri, instance, VECTORS_CHECK), VECTORS_CHECK)[None]
    assert not vectors.passed and vectors.metadata["not_unit_norm_violations"].value == 1


def test_the_embedding_assets_carry_a_freshness_policy_matching_the_reconcile_schedule(tmp_path) -> None:
    from navembed_pipeline.definitions import build_definitions
    from navembed_pipeline.lib.settings import Settings

    for cron, window in (("0 3 * * *", timedelta(hours=26)), ("0 3 * * 0", timedelta(days=7, hours=2))):
        graph = build_definitions(Settings(reconcile_cron=cron, data_dir=tmp_path)).resolve_asset_graph()
        for model in ("dsp", "muq", "mert", "latent"):
            policy = graph.get(dg.AssetKey(f"{model}_embeddings")).freshness_policy
            assert isinstance(policy, dg.FreshnessPolicy)
            assert policy.fail_window.to_timedelta() == window


def test_a_run_tags_itself_and_says_what_it_will_embed_before_working(sample_library, vector_store, milvus_uri,
                                                                      instance) -> None:
    embed(sample_library, milvus_uri, instance)
    again = embed(sample_library, milvus_uri, instance)
    tags = instance.get_run_by_id(again.run_id).tags
    assert tags["navembed/models"] == "dsp" and tags["navembed/trigger"] == "dagster_ui"  # no launcher tag: the UI
    assert tags["navembed/force"] == tags["navembed/clear_existing"] == tags["navembed/only_failed"] == "false"
    messages = [r.user_message for r in instance.all_logs(again.run_id) if r.user_message and not r.dagster_event]
    first_plan = next(i for i, m in enumerate(messages) if m.startswith("dsp: 12 tracks in 256 bucket(s)"))
    assert messages[first_plan].startswith("dsp: 12 tracks in 256 bucket(s) — 0 new, 0 changed, 1 failed before, "
                                           "11 unchanged → 1 to embed"), messages[first_plan]
    assert messages[0].startswith("embedding run started by dagster_ui for dsp")
    assert not any("navembed.progress" in m for m in messages[:first_plan])  # said before any progress
