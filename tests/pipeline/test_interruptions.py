"""A run killed mid-way loses nothing and resumes without re-work; clear_existing never empties search."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.sample_data.navidrome_fixture import delete_track
from tests.pipeline.helpers import bucket_materializations, embed, write_bulk_library
from tests.pipeline.run_embed import WRITE_BATCH

TRACKS = 36


@pytest.fixture
def bulk_library(tmp_path):
    return write_bulk_library(tmp_path / "bulk", tracks=TRACKS, seconds=20)


def start_run(library, uri: str, home: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.pipeline.run_embed", str(library.db_path), uri,
                             str(home), *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition`` until true; fail if the run process ends first."""
    stop = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        assert process.poll() is None, "the run finished before the test could interrupt it"
        stop.wait(0.05)
    pytest.fail("condition not reached")


def kill_hard(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_kill_9_mid_run_then_rerun_completes_without_duplicates_or_rework(bulk_library, vector_store, milvus_uri,
                                                                          instance, tmp_path) -> None:
    process = start_run(bulk_library, milvus_uri, tmp_path / "home")
    wait_for(lambda: vector_store.count("dsp") >= WRITE_BATCH, process)
    kill_hard(process)
    before = set(vector_store.stored("dsp", all_ids(bulk_library)))
    assert 0 < len(before) <= TRACKS // 2, f"the kill must land with many tracks left ({len(before)} done)"
    result = embed(bulk_library, milvus_uri, instance)
    per_bucket = bucket_materializations(result)
    stored = vector_store.stored("dsp", all_ids(bulk_library))
    assert set(stored) == set(all_ids(bulk_library))  # all done ...
    assert all(info.segments == 1 for info in stored.values()) and vector_store.count("dsp") == TRACKS  # ... once
    assert sum(m["embedded"] for m in per_bucket.values()) == TRACKS - len(before)  # only the rest embedded
    assert sum(m["skipped"] for m in per_bucket.values()) == len(before)


def all_ids(library) -> list[str]:
    return [t.id for t in NavidromeLibrary(library.db_path).tracks()]


def search_ids(store, vector: np.ndarray) -> set[str]:
    return {hit.track_id for hit in store.search("dsp", vector, limit=100)}


def test_clear_existing_keeps_old_vectors_searchable_until_the_rebuild_completes(
        bulk_library, vector_store, milvus_uri, instance, tmp_path) -> None:
    embed(bulk_library, milvus_uri, instance)
    tracks = list(NavidromeLibrary(bulk_library.db_path).tracks())
    probe = next(iter(vector_store.get_vectors("dsp", [tracks[0].id]).values()))[0]
    all_ids = {t.id for t in tracks}
    assert search_ids(vector_store, probe) == all_ids
    gone = tracks[-1]
    delete_track(bulk_library.db_path, gone.id)

    process = start_run(bulk_library, milvus_uri, tmp_path / "home", "--clear-existing")
    wait_for(lambda: any(vector_store.count("dsp", collection=c) >= 3 for c in vector_store.pending_rebuilds("dsp")),
             process)
    assert search_ids(vector_store, probe) == all_ids  # during the rebuild: the old vectors answer
    kill_hard(process)  # a cancelled/crashed rebuild ...
    assert search_ids(vector_store, probe) == all_ids  # ... leaves the old vectors in place
    staged = vector_store.count("dsp", collection=vector_store.pending_rebuilds("dsp")[-1])

    result = embed(bulk_library, milvus_uri, instance, clear_existing=True)  # resumes, then switches
    assert sum(m["embedded"] for m in bucket_materializations(result).values()) == TRACKS - 1 - staged
    assert vector_store.pending_rebuilds("dsp") == []
    assert search_ids(vector_store, probe) == all_ids - {gone.id}  # only the new vectors remain
    assert vector_store.count("dsp") == TRACKS - 1
