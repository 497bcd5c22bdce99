"""/batch/progress mapping: a Dagster run + its progress lines → the original system's answer (pure logic)."""

import pytest

from navembed_api.batch_progress import (
    PROGRESS_PREFIX,
    RunProgress,
    embedding_models,
    is_embedding_run,
    job_number,
    progress_response,
)
from navembed_api.dagster_client import RunEvent, RunInfo
from navembed_pipeline.lib.runs import Progress

ORIGINAL_FIELDS = ["total_tracks", "processed_tracks", "failed_tracks", "current_track", "status",
                   "progress_percent", "estimated_completion"]
RUN_ID = "d53aea60-3b5c-4f30-a89d-7177fba1f5a5"
NOW = 1_731_000_000.0


def run(status: str = "STARTED", *, models: tuple[str, ...] = ("dsp",), job: str = "reembed_job",
        tags: dict[str, str] | None = None, end: float | None = None) -> RunInfo:
    return RunInfo(run_id=RUN_ID, status=status, job_name=job, asset_keys=tuple(f"{m}_embeddings" for m in models),
                   tags=tags or {}, creation_time=NOW - 100, start_time=NOW - 90, end_time=end)


def line(model: str, *, total: int, processed: int, failed: int = 0, skipped: int = 0, at: float = NOW,
         current: str | None = "Artist - Song Title", rate: float = 2.0, eta: float | None = 10.0) -> RunEvent:
    embedded = processed - failed - skipped
    record = Progress(model, total, processed, embedded, embedded, skipped, failed, current, rate, eta)
    return RunEvent("LogMessageEvent", record.to_log_line(), at, f"{model}_embeddings", None)


def respond(info: RunInfo, *events: RunEvent, now: float = NOW) -> dict:
    progress = RunProgress(info.run_id)
    progress.feed(list(events))
    return progress_response(info, progress, now=now, run_url=f"http://ui/runs/{info.run_id}")


def test_a_running_run_answers_the_original_fields_first_with_their_types() -> None:
    body = respond(run(), line("dsp", total=5000, processed=1250, failed=2, eta=1900.0))
    assert list(body)[:7] == ORIGINAL_FIELDS
    assert body["total_tracks"] == 5000 and body["processed_tracks"] == 1250 and body["failed_tracks"] == 2
    assert body["current_track"] == "Artist - Song Title"
    assert body["status"] == "running"
    assert body["progress_percent"] == 25.0
    assert body["estimated_completion"] == pytest.approx(NOW + 1900.0)


def test_the_eta_counts_down_from_the_time_of_the_line() -> None:
    body = respond(run(), line("dsp", total=10, processed=5, eta=20.0, at=NOW - 5), now=NOW)
    assert body["estimated_completion"] == pytest.approx(NOW + 15.0)


@pytest.mark.parametrize(("dagster", "failed", "expected"), [
    ("QUEUED", 0, "initialized"), ("NOT_STARTED", 0, "initialized"), ("STARTING", 0, "initialized"),
    ("STARTED", 0, "running"), ("CANCELING", 0, "running"),
    ("SUCCESS", 0, "completed"), ("SUCCESS", 1, "completed_with_errors"),
    ("FAILURE", 0, "failed"), ("FAILURE", 3, "failed"), ("CANCELED", 0, "cancelled"),
])
def test_status_mapping(dagster: str, failed: int, expected: str) -> None:
    body = respond(run(dagster, end=NOW if dagster in ("SUCCESS", "FAILURE", "CANCELED") else None),
                   line("dsp", total=10, processed=10 if dagster == "SUCCESS" else 4, failed=failed))
    assert body["status"] == expected


def test_a_finished_run_completes_at_its_end_time() -> None:
    body = respond(run("SUCCESS", end=NOW - 3), line("dsp", total=10, processed=10, eta=0.0))
    assert body["estimated_completion"] == NOW - 3 and body["progress_percent"] == 100.0


def test_a_queued_run_has_no_figures_yet() -> None:
    body = respond(run("QUEUED"))
    assert {k: body[k] for k in ORIGINAL_FIELDS} == {
        "total_tracks": 0, "processed_tracks": 0, "failed_tracks": 0, "current_track": None,
        "status": "initialized", "progress_percent": 0.0, "estimated_completion": None}
    assert body["models"]["dsp"]["status"] == "pending"


def test_two_models_count_tracks_every_model_has_passed() -> None:
    body = respond(run(models=("dsp", "muq")),
                   line("dsp", total=100, processed=100, failed=1, eta=0.0, at=NOW - 10, rate=10.0),
                   line("muq", total=100, processed=50, failed=1, eta=25.0, rate=2.0))
    assert body["total_tracks"] == 100
    assert body["processed_tracks"] == 75 and body["progress_percent"] == 75.0
    assert body["failed_tracks"] == 1  # the same broken file, once
    assert body["models"]["dsp"]["status"] == "done" and body["models"]["muq"]["status"] == "running"
    assert body["estimated_completion"] == pytest.approx(NOW + 25.0)


def test_a_model_not_started_yet_is_estimated_at_the_latest_rate() -> None:
    body = respond(run(models=("dsp", "muq")), line("dsp", total=100, processed=50, eta=5.0, rate=10.0))
    assert body["progress_percent"] == 25.0
    assert body["estimated_completion"] == pytest.approx(NOW + 5.0 + 100 / 10.0)


def test_later_lines_replace_earlier_ones_and_feeding_goes_on_from_the_cursor() -> None:
    progress = RunProgress(RUN_ID)
    progress.feed([line("dsp", total=10, processed=2, at=NOW - 2)])
    progress.feed([line("dsp", total=10, processed=7, current="B - Later", at=NOW - 1)])
    body = progress_response(run(), progress, now=NOW, run_url="u")
    assert body["processed_tracks"] == 7 and body["current_track"] == "B - Later"


def test_garbage_after_the_prefix_is_reported_not_read_as_zeros() -> None:
    junk = RunEvent("LogMessageEvent", PROGRESS_PREFIX + "{not json", NOW, None, None)
    body = respond(run(), junk)
    assert body["total_tracks"] == 0 and "not JSON" in body["progress_format_error"]


def test_a_line_with_a_renamed_field_is_refused_and_named() -> None:
    good = line("dsp", total=10, processed=4, at=NOW - 1)
    renamed = RunEvent("LogMessageEvent", good.message.replace('"processed"', '"done"'), NOW, None, None)
    body = respond(run(), good, renamed)
    assert body["processed_tracks"] == 4  # the last good record stands; the bad one is not read as 0
    assert "missing ['processed']" in body["progress_format_error"] and "'done'" in body["progress_format_error"]


def test_written_tracks_trail_processed_ones_until_the_write() -> None:
    record = Progress("dsp", 40, 20, 18, 8, 0, 2, None, 2.0, 10.0)
    body = respond(run(), RunEvent("LogMessageEvent", record.to_log_line(), NOW, None, None))
    assert body["processed_tracks"] == 20 and body["written_tracks"] == 8
    assert body["models"]["dsp"]["written"] == 8 and body["models"]["dsp"]["percent"] == 50.0


def test_a_failed_run_reports_the_step_failure() -> None:
    failure = RunEvent("ExecutionStepFailureEvent", "step failed", NOW, "muq_embeddings",
                       "muq: weights for model 'muq' are not on this machine")
    body = respond(run("FAILURE", models=("muq",), end=NOW), failure)
    assert body["status"] == "failed" and "weights" in body["error"]


def test_extras_name_the_run_and_who_started_it() -> None:
    body = respond(run(tags={"navembed/trigger": "api"}))
    assert body["run_id"] == RUN_ID and body["job_id"] == 0xD53AEA60
    assert body["dagster_run_url"].endswith(RUN_ID) and body["trigger"] == "api"
    assert respond(run(tags={"dagster/sensor_name": "library_change_sensor"}))["trigger"] == \
        "sensor:library_change_sensor"
    assert respond(run(job="__ASSET_JOB"))["trigger"] == "dagster_ui"


def test_embedding_runs_are_recognised_by_job_or_by_asset() -> None:
    assert is_embedding_run(run(job="__ASSET_JOB", models=("muq",)))
    assert is_embedding_run(run(job="retry_failed_tracks_job", models=()))
    assert not is_embedding_run(RunInfo("x", "SUCCESS", "__ASSET_JOB", ("library_tracks",), {}, NOW, None, None))
    assert embedding_models(run(models=("muq", "dsp"))) == ["muq", "dsp"]


def test_job_id_is_a_number_like_the_originals() -> None:
    assert isinstance(job_number(RUN_ID), int) and job_number("not-hex") == 0
