"""Shared fixtures: one real Milvus Lite server per session, generated sample libraries."""

from pathlib import Path

import pytest

from navembed_pipeline.lib.sample_library import SampleLibrary, write_sample_library
from tests.lib.milvus_fixture import milvus_server, milvus_uri, vector_store  # noqa: F401 - fixtures

SAMPLE_SECONDS = 4.0


@pytest.fixture
def sample_library(tmp_path: Path) -> SampleLibrary:
    """A fresh, mutable sample library (12 tracks, CUE album, one corrupt file) with its navidrome.db."""
    return write_sample_library(tmp_path / "library", seconds=SAMPLE_SECONDS)
