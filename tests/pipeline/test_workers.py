"""Parallel workers over disjoint bucket ranges (`navembed reembed --workers N`), on one box with dsp.

Real worker processes, each a real Dagster run on the instance under the data dir, against the
session's Milvus Lite server: every bucket is materialized exactly once across the job's runs, every
track is stored, and a worker killed mid-range is resumed over exactly the buckets it had not done.
"""

import os
import signal
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from navembed_pipeline.cli.fanout import Fanout
from navembed_pipeline.lib.buckets import BUCKETS
from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.workers import JOB_TAG, LANE_TAG, RESUMES_TAG, unfinished_ranges, worker_ranges
from tests.pipeline.helpers import write_bulk_library

pytestmark = pytest.mark.slow


def test_worker_ranges_cover_every_bucket_exactly_once() -> None:
    for workers in (1, 2, 3, 7, 16):
        ranges = worker_ranges(workers)
        covered = [b for first, last in ranges for b in BUCKETS[BUCKETS.index(first): BUCKETS.index(last) + 1]]
        assert covered == list(BUCKETS) and len(ranges) == workers
        sizes = [BUCKETS.index(last) - BUCKETS.index(first) + 1 for first, last in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_worker_counts_outside_the_range_are_refused() -> None:
    for bad in (0, 17):
        with pytest.raises(ConfigError, match="workers"):
            worker_ranges(bad)


def test_a_resume_covers_exactly_the_unfinished_buckets() -> None:
    assert unfinished_ranges("00", "7f", [f"{i:02x}" for i in range(0x30)]) == [("30", "7f")]
    assert unfinished_ranges("00", "0f", ["00", "01", "05"]) == [("02", "04"), ("06", "0f")]
    assert unfinished_ranges("00", "01", ["00", "01"]) == []


def _settings(root: Path, library_db: Path, milvus_uri: str) -> Settings:
    return Settings(data_dir=root / "data", navidrome_db=library_db, milvus_uri=milvus_uri, models="dsp",
                    decode_workers=1)


def _materialized(fanout: Fanout) -> Counter:
    """How often each bucket of dsp_embeddings was materialized across the job's runs."""
    seen: Counter = Counter()
    for run in fanout.runs:
        records = fanout.instance.get_records_for_run(run.spec.run_id,
                                                      of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        seen.update(r.event_log_entry.asset_materialization.partition for r in records.records)
    return seen


def test_two_workers_embed_every_bucket_exactly_once(tmp_path: Path, milvus_uri: str, vector_store) -> None:
    library = write_bulk_library(tmp_path / "lib", tracks=60, seconds=3.0)
    fanout = Fanout(_settings(tmp_path, library.db_path, milvus_uri), ["dsp"], workers=2)
    fanout.start()
    summary = fanout.wait()
    assert summary.success and len(summary.runs) == 2 and summary.resumed == ()
    runs = [fanout.instance.get_run_by_id(r) for r in summary.runs]
    assert {r.tags[JOB_TAG] for r in runs} == {summary.job} and {r.tags[LANE_TAG] for r in runs} == {"0", "1"}
    assert _materialized(fanout) == Counter({bucket: 1 for bucket in BUCKETS})
    ids = [t.id for t in NavidromeLibrary(library.db_path).tracks()]
    assert summary.embedded == len(ids) and summary.failed == 0
    assert set(vector_store.get_vectors("dsp", ids)) == set(ids)
    started = sorted(r.start_time for r in fanout.instance.get_run_records(
        dg.RunsFilter(run_ids=list(summary.runs))) if r.start_time)
    ended = sorted(r.end_time for r in fanout.instance.get_run_records(dg.RunsFilter(run_ids=list(summary.runs))))
    assert started[-1] < ended[0], "the two workers did not run side by side"


def test_a_killed_worker_is_resumed_over_the_buckets_it_had_not_finished(tmp_path: Path, milvus_uri: str,
                                                                         vector_store) -> None:
    library = write_bulk_library(tmp_path / "lib", tracks=240, seconds=4.0)
    fanout = Fanout(_settings(tmp_path, library.db_path, milvus_uri), ["dsp"], workers=2)
    fanout.start()
    victim = fanout.runs[1]
    deadline = time.monotonic() + 240
    while not fanout.finished_buckets(victim.spec.run_id):
        assert time.monotonic() < deadline and victim.process.poll() is None, "worker 2 never finished a bucket"
        fanout.poll()
        time.sleep(0.2)
    os.killpg(victim.process.pid, signal.SIGKILL)
    done_before_kill = fanout.finished_buckets(victim.spec.run_id)
    summary = fanout.wait()
    assert summary.success and summary.resumed == (victim.spec.run_id,)
    assert fanout.instance.get_run_by_id(victim.spec.run_id).status == dg.DagsterRunStatus.FAILURE
    resumes = [r for r in fanout.runs if r.spec.tags.get(RESUMES_TAG) == victim.spec.run_id]
    assert resumes and all(r.outcome == "success" for r in resumes)
    assert not done_before_kill & set().union(*(fanout.finished_buckets(r.spec.run_id) for r in resumes))
    assert _materialized(fanout) == Counter({bucket: 1 for bucket in BUCKETS})
    ids = [t.id for t in NavidromeLibrary(library.db_path).tracks()]
    assert set(vector_store.get_vectors("dsp", ids)) == set(ids)
    # Every track was embedded once, except at most one write batch the killed worker had not stored.
    assert summary.embedded <= len(ids) + 32
