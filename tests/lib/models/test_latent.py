"""`latent`: Music2Latent frames → [real, imaginary, magnitude] → 576-d, offline, in bounded windows."""

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import music2latent.hparams
import music2latent.inference
import music2latent.utils
import numpy as np
import pytest
import torch

from navembed_pipeline.lib.errors import ModelLoadError, WeightsMissingError
from navembed_pipeline.lib.models import weights
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.enrich import enrich
from navembed_pipeline.lib.models.latent import (CHECKPOINT_FILE, FRAME_OVERHANG, HOP_SAMPLES, LATENT_CHANNELS,
                                                 SAMPLE_RATE, SAMPLES_PER_FRAME, WEIGHTS_REPO, WINDOW_SAMPLES,
                                                 LatentModel, frame_aligned_windows, frame_features)
from tests.lib.models.tiny_latent import tiny_architecture, write_tiny_checkpoint

# music2latent wraps its encoder in CUDA autocast, which warns once on CPU-only machines.
pytestmark = pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")


@pytest.fixture(scope="module", autouse=True)
def _tiny_music2latent() -> Iterator[None]:
    with tiny_architecture():
        yield


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(directory)
    return directory


@pytest.fixture(scope="module")
def model(models_dir: Path) -> Iterator[LatentModel]:
    latent = LatentModel(ModelOptions(device="cpu", models_dir=models_dir))
    yield latent
    latent.shutdown()


@pytest.fixture(scope="module")
def package_codec(models_dir: Path) -> music2latent.inference.EncoderDecoder:
    """The package's own EncoderDecoder and loader on the same file (its download stubbed out)."""
    checkpoint = models_dir / weights.local_dir_name(WEIGHTS_REPO) / CHECKPOINT_FILE
    with mock.patch.object(music2latent.inference, "download_model"):
        return music2latent.inference.EncoderDecoder(load_path_inference=str(checkpoint),
                                                     device=torch.device("cpu"))


def music(seconds: float, *, pitch_hz: float = 220.0, seed: int = 0) -> np.ndarray:
    """A vibrato tone pulsing twice a second over a little noise, at 44.1 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * pitch_hz * t * (1 + 0.2 * np.sin(2 * np.pi * 0.3 * t)))
    noise = 0.05 * np.random.default_rng(seed).normal(size=t.size)
    return ((tone + noise) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32)


def package_embedding(codec: music2latent.inference.EncoderDecoder, wave: np.ndarray) -> np.ndarray:
    latents = codec.encode(wave)[0].T.numpy()  # (64, frames) of the one channel → (frames, 64)
    return enrich(frame_features(latents))


ModelFactory = Callable[..., LatentModel]


@pytest.fixture
def make_model() -> Iterator[ModelFactory]:
    """Fresh (unloaded) models on CPU, shut down after the test."""
    made: list[LatentModel] = []

    def make(models_dir: Path, **options: Any) -> LatentModel:
        made.append(LatentModel(ModelOptions(device="cpu", models_dir=models_dir, **options)))
        return made[-1]

    yield make
    for latent in made:
        latent.shutdown()


# ----- what the model declares -------------------------------------------------------------------
def test_frame_grid_constants_are_the_packages() -> None:
    downsampling = 2 ** music2latent.hparams.freq_downsample_list.count(0)
    assert music2latent.hparams.sample_rate == SAMPLE_RATE
    assert music2latent.hparams.hop * downsampling == SAMPLES_PER_FRAME
    assert 3 * music2latent.hparams.hop == FRAME_OVERHANG  # STFT window 4 × hop, minus one hop
    assert music2latent.hparams.bottleneck_channels == LATENT_CHANNELS


def test_weights_come_from_the_repo_and_file_the_package_downloads() -> None:
    source = inspect.getsource(music2latent.utils.download_model)
    assert f'repo_id="{WEIGHTS_REPO}"' in source and f'filename="{CHECKPOINT_FILE}"' in source
    assert LatentModel.weights_repos == (WEIGHTS_REPO,)
    assert LatentModel.licence == weights.CC_BY_NC


# ----- loading -----------------------------------------------------------------------------------
def test_tiny_checkpoint_loads_through_the_production_loader_without_network(
        models_dir: Path, make_model: ModelFactory) -> None:
    latent = make_model(models_dir)
    no_network = AssertionError("the loader must not download")
    with (mock.patch.object(music2latent.inference, "download_model", side_effect=no_network),
          mock.patch.object(music2latent.utils, "hf_hub_download", side_effect=no_network)):
        codec = latent.load()
    saved = torch.load(models_dir / weights.local_dir_name(WEIGHTS_REPO) / CHECKPOINT_FILE)
    torch.testing.assert_close(codec.gen.encoder.conv_inp.weight,
                               saved["gen_state_dict"]["encoder.conv_inp.weight"])


def test_missing_weights_name_the_download_command(tmp_path: Path, make_model: ModelFactory) -> None:
    latent = make_model(tmp_path)
    with pytest.raises(WeightsMissingError, match="navembed models download latent"):
        latent.load()


def test_weights_folder_without_the_checkpoint_file_is_missing_weights(
        tmp_path: Path, make_model: ModelFactory) -> None:
    folder = tmp_path / weights.local_dir_name(WEIGHTS_REPO)
    folder.mkdir()
    (folder / "README.md").write_text("no checkpoint here")
    latent = make_model(tmp_path)
    with pytest.raises(WeightsMissingError, match="navembed models download latent"):
        latent.load()


StateEdit = Callable[[dict[str, torch.Tensor]], object]


def write_edited_checkpoint(source_dir: Path, target_dir: Path, edit: StateEdit) -> None:
    name = weights.local_dir_name(WEIGHTS_REPO)
    checkpoint = torch.load(source_dir / name / CHECKPOINT_FILE)
    edit(checkpoint["gen_state_dict"])
    (target_dir / name).mkdir()
    torch.save(checkpoint, target_dir / name / CHECKPOINT_FILE)


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda state: state.pop("encoder.conv_out.weight"), "missing keys"),
    (lambda state: state.pop("decoder.conv_inp.bias"), "missing keys"),
    (lambda state: state.update({"encoder.extra.weight": torch.zeros(1)}), "unexpected keys"),
    (lambda state: state.update({"encoder.conv_out.bias": torch.zeros(3)}), "wrong shape"),
], ids=["encoder-key-missing", "decoder-key-missing", "unexpected-key", "wrong-shape"])
def test_checkpoint_not_matching_the_architecture_is_a_load_error(
        models_dir: Path, tmp_path: Path, edit: StateEdit, problem: str,
        make_model: ModelFactory) -> None:
    write_edited_checkpoint(models_dir, tmp_path, edit)
    latent = make_model(tmp_path)
    with pytest.raises(ModelLoadError, match=problem):
        latent.load()


def test_unreadable_checkpoint_is_a_load_error(tmp_path: Path, make_model: ModelFactory) -> None:
    folder = tmp_path / weights.local_dir_name(WEIGHTS_REPO)
    folder.mkdir()
    (folder / CHECKPOINT_FILE).write_bytes(b"not a torch checkpoint")
    latent = make_model(tmp_path)
    with pytest.raises(ModelLoadError, match="cannot read"):
        latent.load()


# ----- vectors -----------------------------------------------------------------------------------
def test_embedding_equals_the_packages_own_encode_with_the_same_pooling(
        model: LatentModel, package_codec: music2latent.inference.EncoderDecoder) -> None:
    wave = music(3.0)
    ours = model.embed([wave])[0].embedding
    assert float(ours @ package_embedding(package_codec, wave)) >= 0.999


def test_frames_have_192_features_and_tracks_576_unit_length(
        model: LatentModel, package_codec: music2latent.inference.EncoderDecoder) -> None:
    wave = music(3.0)
    latents = package_codec.encode(wave)[0].T.numpy()
    assert latents.shape == ((len(wave) - FRAME_OVERHANG) // SAMPLES_PER_FRAME, 64)
    assert frame_features(latents).shape == (latents.shape[0], 192)
    vector = model.embed([wave])[0].embedding
    assert model.dimension == 576
    assert vector.shape == (576,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_frame_features_are_latent_quadrature_and_envelope() -> None:
    frames = np.arange(64)
    phase = 2 * np.pi * 4 * frames / len(frames)  # whole periods: an exact Hilbert pair
    amplitude = np.linspace(1.0, 2.0, LATENT_CHANNELS)
    latents = 3.0 + amplitude * np.cos(phase)[:, None]
    features = frame_features(latents)
    np.testing.assert_allclose(features[:, :64], latents, atol=1e-5)
    np.testing.assert_allclose(features[:, 64:128], amplitude * np.sin(phase)[:, None], atol=1e-5)
    np.testing.assert_allclose(features[:, 128:], np.broadcast_to(amplitude, (64, 64)), atol=1e-5)


def test_different_music_gives_different_vectors(model: LatentModel) -> None:
    low, high = model.embed([music(3.0, pitch_hz=110.0, seed=1), music(3.0, pitch_hz=880.0, seed=2)])
    assert float(low.embedding @ high.embedding) < 0.99  # so the equalities above are not vacuous


def test_track_shorter_than_one_frame_is_padded_to_one_frame(model: LatentModel) -> None:
    vectors = model.embed([music(0.05)])[0]
    assert vectors.window_count == 1
    assert np.isfinite(vectors.embedding).all()
    assert np.linalg.norm(vectors.embedding) == pytest.approx(1.0, abs=1e-5)


def test_windows_of_several_tracks_in_one_batch_match_one_by_one(model: LatentModel) -> None:
    first, second = music(2.0, seed=3), music(2.0, pitch_hz=330.0, seed=4)
    together = model.embed([first, second])
    alone = [model.embed([first])[0], model.embed([second])[0]]
    for batched, single in zip(together, alone, strict=True):
        np.testing.assert_allclose(batched.embedding, single.embedding, atol=1e-5)


# ----- long tracks -------------------------------------------------------------------------------
def test_windows_tile_the_frame_grid_of_a_whole_file_encode() -> None:
    def frames(samples: int) -> int:  # what the package's encode yields for this many samples
        return (samples - FRAME_OVERHANG) // SAMPLES_PER_FRAME

    for length in (WINDOW_SAMPLES + 1, 2 * HOP_SAMPLES + 5631, 2 * HOP_SAMPLES + 5632 + FRAME_OVERHANG,
                   int(100.5 * SAMPLE_RATE)):
        wave = np.arange(length, dtype=np.float32)
        windows = frame_aligned_windows(wave)
        assert [w[0] for w in windows] == [j * HOP_SAMPLES for j in range(len(windows))]
        assert max(len(w) for w in windows) == WINDOW_SAMPLES
        assert sum(frames(len(w)) for w in windows) == frames(length)


def test_long_track_is_encoded_in_bounded_windows(models_dir: Path, make_model: ModelFactory) -> None:
    latent = make_model(models_dir, batch_size=2)
    seen: list[tuple[int, ...]] = []
    forward = latent._forward

    def spy(codec: Any, batch: torch.Tensor) -> list[np.ndarray]:
        seen.append(tuple(batch.shape))
        return forward(codec, batch)

    with mock.patch.object(latent, "_forward", side_effect=spy):
        vectors = latent.embed([music(21.0)])[0]
    assert vectors.window_count == 3  # 0-10 s, 10-20 s, the 1 s tail
    assert seen == [(2, WINDOW_SAMPLES), (1, 21 * SAMPLE_RATE - 2 * HOP_SAMPLES)]


def test_window_boundaries_barely_change_the_vector(
        model: LatentModel, package_codec: music2latent.inference.EncoderDecoder) -> None:
    wave = music(21.0)  # the package encodes up to 60 s in one pass: its vector has no boundaries
    windowed = model.embed([wave])[0].embedding
    assert float(windowed @ package_embedding(package_codec, wave)) >= 0.999
