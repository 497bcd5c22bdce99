"""Progress moves while a real Dagster run embeds: the log lines it writes mid-run, read back through the
same parser the API and the CLI use, show tracks strictly between 0 and the total, before the first write."""

from navembed_api.batch_progress import RunProgress, progress_response
from navembed_api.dagster_client import RunEvent, RunInfo
from navembed_pipeline.lib.runs import Progress, asset_name
from tests.pipeline.helpers import embed, write_bulk_library

TRACKS = 24


def test_progress_lines_move_track_by_track_during_the_run(tmp_path, vector_store, milvus_uri, instance) -> None:
    library = write_bulk_library(tmp_path / "bulk", tracks=TRACKS, seconds=4)
    result = embed(library, milvus_uri, instance, job_config={"progress_interval": 0.02, "write_batch_tracks": 32})
    assert result.success
    records = [r for r in instance.all_logs(result.run_id) if Progress.from_log_line(r.user_message or "")]
    lines = [Progress.from_log_line(r.user_message) for r in records]
    mid = [p for p in lines if 0 < p.processed < TRACKS]
    assert mid, "no progress line between 0 and the total was logged while the run worked"
    assert any(p.written == 0 for p in mid)  # counted before the write (one write of 24 < 32 at the end)
    assert any(p.eta_seconds is not None and p.eta_seconds > 0 for p in mid)
    assert (lines[-1].processed, lines[-1].written, lines[-1].eta_seconds) == (TRACKS, TRACKS, 0.0)
    assert all(" · dsp " in r.user_message for r in records)  # the same words the CLI bar shows

    # The API's /batch/progress, fed the events up to a mid-run line, reports that line's figures.
    cut = next(i for i, p in enumerate(lines) if 0 < p.processed < TRACKS)
    events = [RunEvent("LogMessageEvent", r.user_message, r.timestamp, asset_name("dsp"), None) for r in records]
    run = RunInfo(result.run_id, "STARTED", "__ASSET_JOB", (asset_name("dsp"),), {}, records[0].timestamp,
                  records[0].timestamp, None)
    progress = RunProgress(result.run_id)
    progress.feed(events[: cut + 1])
    body = progress_response(run, progress, now=records[cut].timestamp, run_url="")
    assert 0 < body["processed_tracks"] < TRACKS and body["processed_tracks"] == lines[cut].processed
    assert 0 < body["progress_percent"] < 100 and body["status"] == "running"
