"""The pipeline tests' Dagster instance."""

from collections.abc import Iterator

import dagster as dg
import pytest

from tests.lib.models.musicnn_fixtures import musicnn_models_dir, musicnn_wheel  # noqa: F401 - fixtures
from tests.pipeline.helpers import navembed_instance


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A temporary Dagster instance configured as navembed's own (``navembed_instance``)."""
    with navembed_instance() as instance:
        yield instance
