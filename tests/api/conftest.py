"""Fixtures shared by the upload tests (test_uploads.py, test_upload_duplicates.py)."""

from collections.abc import Iterator

import pytest

from navembed_api.model_pool import ModelPool
from navembed_api.uploads import UploadService
from tests.api.upload_fixtures import EmbeddedLibrary, dsp_pool, upload_service


@pytest.fixture(scope="module")
def models() -> Iterator[ModelPool]:
    """The dsp model pool, loaded once per test module."""
    pool = dsp_pool()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def service(library: EmbeddedLibrary, models: ModelPool) -> UploadService:
    """The upload service over the test module's own ``library`` fixture."""
    return upload_service(library, models)
