"""A damaged weights cache is reported as exactly that, with the way out — never as "not present"."""

from pathlib import Path

import pytest

from navembed_pipeline.lib.errors import WeightsMissingError, WeightsUnreadableError
from navembed_pipeline.lib.models.weights import find_weights, weights_present
from navembed_pipeline.lib.settings import Settings

REPO = "OpenMuQ/MuQ-MuLan-large"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of the test's own (the machine's real one is hidden)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def repo_folder(cache: Path) -> Path:
    return cache / f"models--{REPO.replace('/', '--')}"


def test_weights_never_downloaded_are_missing(hub_cache: Path) -> None:
    with pytest.raises(WeightsMissingError, match="navembed models download muq"):
        find_weights(REPO, None, model_name="muq")
    assert weights_present((REPO,), None) is False


@pytest.mark.parametrize("damage", ["ref without snapshot", "ref is a folder", "ref not text"])
def test_a_damaged_hub_cache_is_reported_as_damaged(hub_cache: Path, damage: str) -> None:
    refs = repo_folder(hub_cache) / "refs"
    refs.mkdir(parents=True)
    if damage == "ref without snapshot":  # an interrupted download, or a snapshot folder deleted by hand
        (refs / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    elif damage == "ref is a folder":
        (refs / "main").mkdir()
    else:
        (refs / "main").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WeightsUnreadableError) as raised:
        find_weights(REPO, None, model_name="muq")
    message = str(raised.value)
    assert str(repo_folder(hub_cache)) in message and "download again" in message and "not on this machine" not in message
    with pytest.raises(WeightsUnreadableError):
        weights_present((REPO,), None)


def test_auto_keeps_a_model_with_damaged_weights_enabled(hub_cache: Path, tmp_path: Path) -> None:
    """So its runs fail with the real reason instead of the model silently dropping out."""
    for repo in ("OpenMuQ/MuQ-MuLan-large", "OpenMuQ/MuQ-large-msd-iter", "FacebookAI/xlm-roberta-base"):
        (hub_cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir(parents=True)
        (hub_cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").mkdir()
    assert "muq" in Settings(models="auto", models_dir=tmp_path / "none").enabled_models()

