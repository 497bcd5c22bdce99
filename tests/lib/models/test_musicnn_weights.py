"""MusiCNN's weights: downloaded from PyPI, checked, converted; present, missing or corrupt."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.cli.commands import main
from navembed_pipeline.lib.errors import ModelLoadError, WeightsMissingError
from navembed_pipeline.lib.models import ModelOptions, create_model, weights_repos
from navembed_pipeline.lib.models.musicnn import weights as mw
from navembed_pipeline.lib.models.musicnn.tags import tag_names
from navembed_pipeline.lib.models.weights import weights_present
from navembed_pipeline.lib.settings import Settings


def test_conversion_writes_safetensors_a_manifest_and_the_licence(musicnn_models_dir: Path) -> None:
    folder = mw.weights_dir(musicnn_models_dir)
    manifest = json.loads((folder / "MTT_musicnn.json").read_text())
    assert manifest["tags"] == list(tag_names("MTT_musicnn")) and manifest["licence"] == "ISC"
    assert manifest["source_wheel_sha256"] == mw.WHEEL_SHA256
    assert manifest["safetensors_sha256"] == mw.sha256_of(folder / "MTT_musicnn.safetensors")
    assert "Universitat Pompeu Fabra" in (folder / mw.LICENCE_FILE).read_text()
    tensors = mw.load_variant(musicnn_models_dir, "MSD_musicnn")
    assert not [name for name in tensors if "Adam" in name or "power" in name]  # optimiser state left out
    assert tensors["dense_1/kernel"].shape == (200, 50)


def test_a_wheel_with_another_sha256_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / mw.WHEEL_FILE
    fake.write_bytes(b"PK not the musicnn wheel")
    with pytest.raises(mw.WheelError, match="not the pinned f38a4890"):
        mw.install(tmp_path / "models", wheel=fake)
    assert not mw.weights_dir(tmp_path / "models").exists()  # nothing half-written


def test_download_command_installs_musicnn_where_the_settings_look(musicnn_wheel: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # The network part (pip download) is exercised by the session fixture; here the same real wheel.
    monkeypatch.setattr(mw, "fetch_wheel", lambda directory: Path(shutil.copy(musicnn_wheel, tmp_path)))
    monkeypatch.setenv("NAVEMBED_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("NAVEMBED_MODELS_DIR", raising=False)
    assert main(["models", "download", "musicnn", "--yes"]) == 0
    assert "ISC" in capsys.readouterr().out
    settings = Settings(data_dir=tmp_path / "data")
    assert weights_present(weights_repos("musicnn"), settings.weights_dir)
    assert settings.enabled_models() == ["dsp", "musicnn"]  # NAVEMBED_MODELS=auto sees it


def test_auto_leaves_musicnn_out_when_its_weights_are_absent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.weights_dir == tmp_path / "data" / "models"
    assert settings.enabled_models() == ["dsp"]


def test_missing_weights_name_the_download_command(tmp_path: Path) -> None:
    model = create_model("musicnn", ModelOptions(device="cpu", models_dir=tmp_path))
    try:
        with pytest.raises(WeightsMissingError, match="navembed models download musicnn"):
            model.embed([np.zeros(16000, np.float32)])
    finally:
        model.shutdown()


def test_corrupt_weights_are_one_clear_error_and_other_models_still_work(musicnn_models_dir: Path,
                                                                         tmp_path: Path) -> None:
    shutil.copytree(mw.weights_dir(musicnn_models_dir), mw.weights_dir(tmp_path))
    weights = mw.weights_dir(tmp_path) / "MSD_musicnn.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    options = ModelOptions(device="cpu", models_dir=tmp_path)
    musicnn, dsp = create_model("musicnn", options), create_model("dsp", options)
    try:
        with pytest.raises(ModelLoadError, match="corrupt.*re-download them with: navembed models download musicnn"):
            musicnn.embed([np.zeros(16000, np.float32)])
        assert dsp.embed([np.zeros(22050, np.float32)])[0].embedding.shape == (dsp.dimension,)
    finally:
        musicnn.shutdown()
        dsp.shutdown()
