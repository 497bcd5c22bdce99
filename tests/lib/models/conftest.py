"""Fixtures shared by the model tests."""

from tests.lib.models.musicnn_fixtures import musicnn_models_dir, musicnn_wheel  # noqa: F401 - fixtures
