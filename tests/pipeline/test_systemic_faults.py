"""Systemic faults fail the run at once with a message that says what to do."""

import dagster as dg

from tests.pipeline.helpers import embed


def step_failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a failed step"
    return failures[0].step_failure_data.error.message


def test_missing_weights_fail_fast_naming_the_download_command(sample_library, vector_store, milvus_uri,
                                                               instance, tmp_path) -> None:
    result = embed(sample_library, milvus_uri, instance, models=("mert",), raise_on_error=False,
                   job_config={"models_dir": str(tmp_path / "empty")})
    assert not result.success
    assert "navembed models download mert" in step_failure_message(result)
    assert vector_store.count("mert") == 0


def test_unreachable_store_fails_fast_naming_the_uri(sample_library, instance) -> None:
    result = embed(sample_library, "http://127.0.0.1:9", instance, raise_on_error=False)
    assert not result.success
    assert "127.0.0.1:9" in step_failure_message(result)


def test_clear_existing_over_a_partial_range_is_refused(sample_library, vector_store, milvus_uri, instance) -> None:
    result = embed(sample_library, milvus_uri, instance, first="00", last="7f", clear_existing=True,
                   raise_on_error=False)
    assert not result.success
    assert "all 256 buckets" in step_failure_message(result)
