"""The run contract: the Dagster layer, the API and the CLI agree on names, tags and run config."""

import dagster as dg

from navembed_pipeline.assets import embedding_assets
from navembed_pipeline.jobs import reembed_job, retry_failed_tracks_job
from navembed_pipeline.lib import runs
from navembed_pipeline.lib.models import MODEL_NAMES


def test_the_dagster_definitions_carry_the_contracts_names_and_tags() -> None:
    assert (reembed_job.name, retry_failed_tracks_job.name) == runs.EMBEDDING_JOBS
    assert {k for a in embedding_assets for k in a.keys} == {dg.AssetKey(runs.asset_name(m)) for m in MODEL_NAMES}
    shared = [a for a in embedding_assets if a.op.name == runs.SHARED_DECODE_OP]  # one step, one asset per model
    assert [sorted(k.path[0] for k in a.keys) for a in shared] == [
        sorted(runs.asset_name(m) for m in runs.SHARED_DECODE_MODELS if m in MODEL_NAMES)]
    assert all(job.tags[runs.KIND_TAG] == runs.EMBEDDING_KIND for job in (reembed_job, retry_failed_tracks_job))


def test_run_config_names_one_op_per_step() -> None:
    config = runs.embed_run_config(["dsp", "musicnn", "muq"], force=True)
    assert config == {"ops": {  # dsp and musicnn are embedded by one step (one decode per file)
        "shared_decode_embeddings": {"config": {"force": True, "clear_existing": False, "only_failed": False}},
        "muq_embeddings": {"config": {"force": True, "clear_existing": False, "only_failed": False}}}}


def test_run_tags_cover_the_bucket_range_and_name_the_trigger() -> None:
    assert runs.run_tags("api") == {"dagster/asset_partition_range_start": "00",
                                    "dagster/asset_partition_range_end": "ff", "navembed/trigger": "api"}
    assert runs.run_tags("library_change_sensor", first="10", last="1f")[runs.PARTITION_RANGE_END_TAG] == "1f"


def test_runs_are_classified_by_job_or_by_embedding_asset() -> None:
    assert runs.is_embedding_run("reembed_job", [])
    assert runs.is_embedding_run("__ASSET_JOB", ["library_tracks", "mert_embeddings"])
    assert not runs.is_embedding_run("__ASSET_JOB", ["library_tracks"])
    assert runs.embedded_models(["dsp_embeddings", "muq_embeddings", "x"]) == ["muq", "dsp"]  # pipeline order


def test_the_trigger_is_navembeds_tag_else_dagsters_else_the_ui() -> None:
    assert runs.trigger_of({runs.TRIGGER_TAG: "cli", "dagster/sensor_name": "s"}) == "cli"
    assert runs.trigger_of({"dagster/schedule_name": "nightly"}) == "schedule:nightly"
    assert runs.trigger_of({}) == "dagster_ui"
