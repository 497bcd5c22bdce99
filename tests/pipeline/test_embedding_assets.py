"""Materializing the bucket-partitioned embedding assets with real Dagster and a real Milvus Lite server."""

import dagster as dg
import numpy as np

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from tests.pipeline.helpers import bucket_materializations, embed


def test_all_buckets_fill_the_collection_with_normalised_vectors(sample_library, vector_store, milvus_uri,
                                                                 instance) -> None:
    result = embed(sample_library, milvus_uri, instance)
    assert result.success
    tracks = list(NavidromeLibrary(sample_library.db_path).tracks())
    readable = [t for t in tracks if "Damaged" not in t.path.name]
    # the CUE album is 3 rows (one per CUE track), every other readable track 1 row
    assert vector_store.count("dsp") == len(readable) - 1 + 3
    stored = vector_store.stored("dsp", [t.id for t in readable])
    assert set(stored) == {t.id for t in readable}
    album = next(t for t in tracks if t.path.name == "Live Set.flac")
    assert stored[album.id].segments == 3
    vectors = vector_store.get_vectors("dsp", [t.id for t in readable], "embedding")
    norms = np.concatenate([np.linalg.norm(np.atleast_2d(v), axis=1) for v in vectors.values()])
    assert len(norms) == len(readable) - 1 + 3
    assert np.allclose(norms, 1.0, atol=1e-4)


def test_each_bucket_reports_its_counts_and_the_corrupt_file_fails_alone(sample_library, vector_store,
                                                                         milvus_uri, instance) -> None:
    result = embed(sample_library, milvus_uri, instance)
    per_bucket = bucket_materializations(result)
    assert len(per_bucket) == 256
    corrupt_id = next(t.id for t in NavidromeLibrary(sample_library.db_path).tracks() if "Damaged" in t.path.name)
    corrupt_bucket = per_bucket[bucket_of(corrupt_id)]
    assert corrupt_bucket["failed"] == 1 and "Damaged" in corrupt_bucket["failures"]
    assert sum(m["embedded"] for m in per_bucket.values()) == 11
    assert sum(m["failed"] for m in per_bucket.values()) == 1
    assert set(vector_store.failed_tracks("dsp")) == {corrupt_id}


def test_a_second_run_embeds_nothing(sample_library, vector_store, milvus_uri, instance) -> None:
    embed(sample_library, milvus_uri, instance)
    again = bucket_materializations(embed(sample_library, milvus_uri, instance))
    assert sum(m["embedded"] for m in again.values()) == 0
    assert sum(m["skipped"] for m in again.values()) == 11
    assert sum(m["failed"] for m in again.values()) == 1  # the corrupt file is retried and fails again


def test_library_snapshot_counts_new_changed_and_missing_tracks(sample_library, vector_store, milvus_uri,
                                                                 instance) -> None:
    from navembed_pipeline.assets import library_tracks
    from navembed_pipeline.sample_data.navidrome_fixture import mark_missing
    from tests.pipeline.helpers import pipeline_resources

    def snapshot():
        result = dg.materialize([library_tracks], instance=instance,
                                resources=pipeline_resources(sample_library, milvus_uri))
        event = result.get_asset_materialization_events()[0]
        return result.output_for_node("library_tracks"), {k: v.value for k, v in
                                                          event.materialization.metadata.items()}

    frame, meta = snapshot()
    assert len(frame) == 12 and meta["track_count"] == 12 and meta["new_tracks"] == 12
    assert set(frame["bucket"]) <= {f"{i:02x}" for i in range(256)}
    embed(sample_library, milvus_uri, instance)
    gone = frame.loc[frame["path"].str.endswith("02 Cold Pads.flac"), "id"].item()
    mark_missing(sample_library.db_path, gone)
    frame, meta = snapshot()
    assert meta["track_count"] == 11 and meta["missing_in_navidrome"] == 1
    assert meta["new_tracks"] == 1  # the corrupt file: it never got vectors
    assert meta["changed_tracks"] == 0
    assert meta["vanished_since_embedding"] == 1  # the missing track still has vectors until its bucket runs


def test_the_run_logs_where_its_time_went_and_a_skipping_run_spends_none_on_the_model(
        sample_library, vector_store, milvus_uri, instance) -> None:
    from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
    from navembed_pipeline.lib.models import create_model
    from navembed_pipeline.lib.models.base import ModelOptions

    result = embed(sample_library, milvus_uri, instance)
    line = [r.user_message for r in instance.all_logs(result.run_id) if "stage seconds" in r.user_message]
    assert len(line) == 1 and line[0].startswith("dsp stage seconds: plan ") and "write " in line[0]
    assert "utilisation over" in line[0] and "cores busy" in line[0]

    tracks = group_by_bucket(list(NavidromeLibrary(sample_library.db_path).tracks()))
    model = create_model("dsp", ModelOptions(device="cpu"))
    try:
        forced = EmbeddingRun(model=model, store=vector_store, options=RunOptions(force=True, decode_workers=1))
        list(forced.run(tracks))
        seconds = forced.stage_seconds
        assert all(seconds[stage] > 0 for stage in ("plan", "decode", "model", "enrich", "write")), seconds
        skipping = EmbeddingRun(model=model, store=vector_store, options=RunOptions(decode_workers=1))
        list(skipping.run(tracks))
        idle = skipping.stage_seconds
        # only the corrupt file is tried again: decoded (and failed), never given to the model
        assert idle["plan"] > 0 and idle["model"] == idle["enrich"] == 0.0 and idle["decode"] > 0, idle
    finally:
        model.shutdown()
