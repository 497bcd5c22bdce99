"""The pipeline tests' Dagster instance."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.pipeline.helpers import navembed_instance


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A temporary Dagster instance configured as navembed's own (``navembed_instance``)."""
    with navembed_instance() as instance:
        yield instance


@pytest.fixture(scope="session")
def musicnn_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with MusiCNN's weights converted from the real ``musicnn`` 0.1.0 wheel (what
    ``make setup`` installs); skipped, saying why, only where no package index can be reached."""
    from navembed_pipeline.lib.models.musicnn.weights import WheelError, fetch_wheel, install

    try:
        wheel = fetch_wheel(tmp_path_factory.mktemp("musicnn-wheel"))
    except WheelError as exc:
        pytest.skip(f"the musicnn 0.1.0 wheel cannot be fetched from the package index here: {exc}")
    models_dir = tmp_path_factory.mktemp("models")
    install(models_dir, wheel=wheel)
    return models_dir
