"""Session fixtures for the MusiCNN tests: the real ``musicnn`` 0.1.0 wheel from the package index
(downloaded once per session by our own ``fetch_wheel``; the tests that need it are skipped, saying
why, only when no package index can be reached) and the weights converted from it."""

from pathlib import Path

import pytest

from navembed_pipeline.lib.models.musicnn.weights import WheelError, fetch_wheel, install

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"


@pytest.fixture(scope="session")
def musicnn_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The verified-by-download wheel (its sha256 is checked when it is converted)."""
    try:
        return fetch_wheel(tmp_path_factory.mktemp("musicnn-wheel"))
    except WheelError as exc:
        pytest.skip(f"the musicnn 0.1.0 wheel cannot be fetched from the package index here: {exc}")


@pytest.fixture(scope="session")
def musicnn_models_dir(tmp_path_factory: pytest.TempPathFactory, musicnn_wheel: Path) -> Path:
    """A models folder holding MSD_musicnn and MTT_musicnn converted from the real wheel."""
    models_dir = tmp_path_factory.mktemp("musicnn-models")
    install(models_dir, wheel=musicnn_wheel)
    return models_dir
