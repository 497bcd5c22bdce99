"""Shared fixtures: one real Milvus Lite server per session, generated sample libraries, counted decodes."""

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from navembed_pipeline.sample_data.sample_library import SampleLibrary, write_sample_library
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri, vector_store  # noqa: F401 - fixtures

SAMPLE_SECONDS = 4.0
# `make test-fast` (the inner loop) leaves out tests by these markers; `make test` runs everything.
# Modules that start servers as processes, drive a browser or run benchmarks are marked here in one place.
LANE_MARKERS = {
    "tests/ui/": "ui",
    "tests/test_benchmarks.py": "bench",
    "tests/pipeline/test_webserver.py": "webserver",
    "tests/pipeline/test_demo.py": "webserver",
    "tests/pipeline/test_postgres_stack.py": "webserver",
    "tests/api/test_stack.py": "webserver",
    "tests/api/test_e2e.py": "webserver",
    "tests/api/test_plugin_e2e.py": "webserver",
    "tests/api/test_supervision.py": "webserver",
    "tests/pipeline/test_interruptions.py": "slow",  # kill -9 of a run in a child process, then a re-run
    "tests/sample_data/test_recommend_sample_library.py": "slow",  # embeds a sample library first (~60 s here)
}


# The session's files go to memory when the machine has room there: Milvus Lite, the failure log, Dagster's
# run storage and checkpoints sync to disk (~3 ms a sync on this machine's disk), and nothing here needs to
# survive a power cut.
RAM_DIR = Path("/dev/shm")
RAM_NEEDED_BYTES = 2 * 1024**3


def pytest_configure(config: pytest.Config) -> None:
    """Point the temp dir (pytest's tmp_path, Dagster's test instances, child processes) at tmpfs,
    unless TMPDIR or --basetemp chooses a place; xdist workers inherit the TMPDIR set here."""
    if "TMPDIR" in os.environ or config.option.basetemp or not os.access(RAM_DIR, os.W_OK):
        return
    if shutil.disk_usage(RAM_DIR).free < RAM_NEEDED_BYTES:
        return
    os.environ["TMPDIR"] = str(RAM_DIR)
    tempfile.tempdir = str(RAM_DIR)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(config.rootpath)
    for item in items:
        path = Path(item.path)
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        for prefix, marker in LANE_MARKERS.items():
            if relative.startswith(prefix):
                item.add_marker(marker)


@pytest.fixture
def sample_library(tmp_path: Path) -> SampleLibrary:
    """A fresh, mutable sample library (12 tracks, CUE album, one corrupt file) with its navidrome.db."""
    return write_sample_library(tmp_path / "library", seconds=SAMPLE_SECONDS)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Every decode of a file in this process, by (file name, sample rate): the engine's decode threads (thread
    mode; in-process Dagster too) call the worker module's ``load_audio``, counted here."""
    from navembed_pipeline.lib.engine import worker as decode_worker

    calls: Counter = Counter()
    real = decode_worker.load_audio

    def counting(path, sample_rate, **kwargs):
        calls[(Path(path).name, sample_rate)] += 1
        return real(path, sample_rate, **kwargs)

    monkeypatch.setattr(decode_worker, "load_audio", counting)
    return calls
