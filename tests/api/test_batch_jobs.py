"""A job of N worker runs is reported as one run: status, totals, a dead worker and its resume."""

from navembed_api.batch_jobs import as_one_progress, as_one_run, job_runs, workers_entry
from navembed_api.batch_progress import RunProgress, progress_response
from navembed_api.dagster_client import RunInfo
from navembed_pipeline.lib.runs import Progress
from navembed_pipeline.lib.workers import RESUMES_TAG, worker_ranges, worker_tags

JOB = "0123456789ab"


def run(run_id: str, status: str, index: int, *, first: str, last: str, resumes: str | None = None,
        start: float = 10.0, end: float | None = None, created: float = 1.0) -> RunInfo:
    tags = worker_tags("api", job=JOB, index=index, count=2, first=first, last=last, resumes=resumes)
    return RunInfo(run_id=run_id, status=status, job_name="reembed_job", asset_keys=("dsp_embeddings",), tags=tags,
                   creation_time=created, start_time=start, end_time=end)


def reading(info: RunInfo, *, total: int, processed: int, rate: float = 2.0, eta: float | None = 5.0,
            failed: int = 0) -> tuple[RunInfo, RunProgress]:
    progress = RunProgress(info.run_id)
    progress.latest["dsp"] = Progress(model="dsp", total=total, processed=processed, embedded=processed - failed,
                                      written=processed - failed, skipped=0, failed=failed,
                                      current_track=f"track of {info.run_id}", tracks_per_second=rate,
                                      eta_seconds=eta)
    progress.seen_at["dsp"] = 100.0
    return info, progress


def test_two_running_workers_add_up_to_the_library() -> None:
    a, b = worker_ranges(2)
    runs = job_runs(JOB, [run("r2", "STARTED", 1, first=b[0], last=b[1]), run("r1", "STARTED", 0, first=a[0],
                                                                              last=a[1])])
    assert [r.run_id for r in runs] == ["r1", "r2"]
    whole = as_one_run(runs)
    progress = as_one_progress(whole, [reading(runs[0], total=50, processed=10, eta=20.0),
                                       reading(runs[1], total=46, processed=30, eta=8.0)])
    answer = progress_response(whole, progress, now=200.0, run_url=lambda r: r)
    assert answer["run_id"] == "r1" and answer["status"] == "running"
    assert answer["total_tracks"] == 96 and answer["processed_tracks"] == 40
    assert answer["tracks_per_second"] == 4.0  # both workers' rates
    assert answer["estimated_completion"] is not None


def test_the_job_is_running_until_its_last_worker_ends() -> None:
    runs = [run("r1", "SUCCESS", 0, first="00", last="7f", end=50.0), run("r2", "STARTED", 1, first="80", last="ff")]
    assert as_one_run(runs).status == "STARTED" and as_one_run(runs).end_time is None
    done = [runs[0], run("r2", "SUCCESS", 1, first="80", last="ff", end=60.0)]
    assert as_one_run(done).status == "SUCCESS" and as_one_run(done).end_time == 60.0
    cancelled = [runs[0], run("r2", "CANCELED", 1, first="80", last="ff", end=55.0)]
    assert as_one_run(cancelled).status == "CANCELED"


def test_a_dead_worker_resumed_to_success_does_not_fail_the_job() -> None:
    dead = run("r2", "FAILURE", 1, first="80", last="ff", end=30.0)
    resume = run("r3", "SUCCESS", 1, first="a0", last="ff", resumes="r2", end=70.0, created=31.0)
    runs = job_runs(JOB, [resume, dead, run("r1", "SUCCESS", 0, first="00", last="7f", end=60.0)])
    assert [r.run_id for r in runs] == ["r1", "r2", "r3"]
    whole = as_one_run(runs)
    assert whole.status == "SUCCESS"
    progress = as_one_progress(whole, [reading(runs[0], total=50, processed=50),
                                       reading(runs[1], total=46, processed=12),
                                       reading(runs[2], total=34, processed=34)])
    line = progress.latest["dsp"]
    assert line.total == line.processed == 96  # the dead run counts what it did, its resume the rest
    entries = workers_entry(runs, lambda r: f"url/{r}")
    assert [e["resumed"] for e in entries] == [False, True, False] and entries[2][RESUMES_TAG.split("/")[1]] == "r2"


def test_a_worker_that_failed_without_resume_fails_the_job_with_its_error() -> None:
    runs = [run("r1", "SUCCESS", 0, first="00", last="7f", end=50.0),
            run("r2", "FAILURE", 1, first="80", last="ff", end=40.0)]
    whole = as_one_run(runs)
    failed_reading = reading(runs[1], total=46, processed=3)
    failed_reading[1].error = "milvus went away"
    progress = as_one_progress(whole, [reading(runs[0], total=50, processed=50), failed_reading])
    answer = progress_response(whole, progress, now=100.0, run_url=lambda r: r)
    assert answer["status"] == "failed" and answer["error"] == "milvus went away"
