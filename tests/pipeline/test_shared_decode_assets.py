"""dsp and musicnn through real Dagster: one step decodes each file once for both, while each model keeps
its own asset (per-bucket materializations, failures, skips) — issue 21 item 7, issue 25 item 3."""

from collections import Counter

import dagster as dg

from navembed_pipeline.lib.buckets import BUCKETS, bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.runs import SHARED_DECODE_OP
from tests.pipeline.helpers import bucket_materializations, embed


def run(library, uri, instance, models_dir, models, **config):
    return embed(library, uri, instance, models=models, job_config={"models_dir": str(models_dir),
                                                                     "decode_processes": False}, **config)


def test_dsp_and_musicnn_share_one_step_and_one_decode_per_file(sample_library, vector_store, milvus_uri, instance,
                                                                musicnn_models_dir, decodes) -> None:
    run(sample_library, milvus_uri, instance, musicnn_models_dir, ("dsp",), force=True)
    dsp_alone = Counter(decodes)
    decodes.clear()

    result = run(sample_library, milvus_uri, instance, musicnn_models_dir, ("dsp", "musicnn"), force=True)

    assert result.success
    assert decodes == dsp_alone  # the second model costs no second decode: the same files, at dsp's rate
    assert {e.step_key for e in result.get_step_success_events()} == {SHARED_DECODE_OP}
    tracks = list(NavidromeLibrary(sample_library.db_path).tracks())
    corrupt = next(t.id for t in tracks if "Damaged" in t.path.name)
    occupied = {bucket_of(t.id) for t in tracks}
    # each model's asset: musicnn's first run records every bucket; dsp's run before it recorded the
    # empty buckets already, so this one records those holding tracks (quiet_buckets.py)
    for model, buckets in (("dsp", occupied), ("musicnn", set(BUCKETS))):
        per_bucket = bucket_materializations(result, model)
        assert set(per_bucket) == buckets
        assert sum(m["embedded"] for m in per_bucket.values()) == 11
        assert set(vector_store.failed_tracks(model)) == {corrupt}
    assert vector_store.stored_vector_fields("musicnn") == {"embedding": 753, "tags": 50}
    assert set(vector_store.stored("musicnn", [t.id for t in tracks])) == {t.id for t in tracks if t.id != corrupt}


def test_a_file_current_for_dsp_is_decoded_once_for_musicnn_alone_at_its_rate(
        sample_library, vector_store, milvus_uri, instance, musicnn_models_dir, decodes) -> None:
    run(sample_library, milvus_uri, instance, musicnn_models_dir, ("dsp",))
    decodes.clear()

    result = run(sample_library, milvus_uri, instance, musicnn_models_dir, ("dsp", "musicnn"))

    # dsp is current: decoded at musicnn's rate only (the corrupt file, failed before, is retried for both)
    assert {rate for name, rate in decodes if name != "01 Damaged.mp3"} == {16_000}
    assert decodes[("01 Damaged.mp3", 22_050)] == 1 and sum(decodes.values()) == 11 + 3  # the CUE album: 3 reads
    assert sum(m["skipped"] for m in bucket_materializations(result, "dsp").values()) == 11
    assert sum(m["embedded"] for m in bucket_materializations(result, "musicnn").values()) == 11
    decodes.clear()
    again = run(sample_library, milvus_uri, instance, musicnn_models_dir, ("dsp", "musicnn"))
    # only the corrupt file, failed before in both models, is tried again: once, for both
    assert again.success and decodes == Counter({("01 Damaged.mp3", 22_050): 1})
    for model in ("dsp", "musicnn"):
        assert sum(m["embedded"] for m in bucket_materializations(again, model).values()) == 0


def test_each_model_of_the_shared_step_materializes_alone_too(sample_library, vector_store, milvus_uri, instance,
                                                              musicnn_models_dir) -> None:
    result = run(sample_library, milvus_uri, instance, musicnn_models_dir, ("musicnn",))
    assert result.success
    assert bucket_materializations(result, "dsp") == {}
    assert sum(m["embedded"] for m in bucket_materializations(result, "musicnn").values()) == 11
