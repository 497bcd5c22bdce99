"""MERT through transformers' HubertModel: loading the real checkpoint format, vectors, failures.

All tests use a tiny random-initialised checkpoint written in MERT-v1-330M's format
(``tiny_mert.py``); the real weights are never needed.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from navembed_pipeline.lib.errors import ConfigError, ModelLoadError, WeightsMissingError
from navembed_pipeline.lib.library.audio import sliding_windows
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.enrich import enrich
from navembed_pipeline.lib.models.mert import MILVUS_STANDALONE_MAX_DIM, MertModel, check_backend_dimension
from tests.lib.models import tiny_mert
from tests.lib.models.helpers import cosine

SR = 24_000


class TinyMert(MertModel):
    hidden_size = tiny_mert.HIDDEN_SIZE
    num_hidden_states = tiny_mert.NUM_LAYERS + 1


class ShortWindowMert(TinyMert):
    window_seconds = 0.1
    hop_seconds = 0.05


@pytest.fixture
def make_model(tmp_path: Path) -> Iterator[Any]:
    models: list[MertModel] = []

    def make(cls: type[MertModel] = TinyMert, *, models_dir: Path = tmp_path, **extra: Any) -> MertModel:
        model = cls(ModelOptions(device="cpu", models_dir=models_dir, extra=extra))
        models.append(model)
        return model

    yield make
    for model in models:
        model.shutdown()


def tone(seconds: float, *, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).normal(0.0, 0.05, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def reference_window_states(directory: Path, window: np.ndarray) -> np.ndarray:
    """transformers' own inference, as MERT's model card runs it: processor → model(**inputs)."""
    config = HubertConfig(**{k: v for k, v in tiny_mert.TINY_MERT_CONFIG.items()
                             if k not in tiny_mert.MERT_ONLY_KEYS})
    network = HubertModel(config).eval()
    state = torch.load(directory / "pytorch_model.bin")
    network.load_state_dict({_modern(k): v for k, v in state.items()}, strict=True)
    processor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
    inputs = processor(window, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        states = network(**inputs, output_hidden_states=True).hidden_states
    return torch.stack(states).squeeze(1).mean(dim=1).numpy()  # (layers, hidden)


def _modern(key: str) -> str:
    for modern, legacy in tiny_mert.LEGACY_WEIGHT_NORM.items():
        if key.endswith(legacy):
            return key[: -len(legacy)] + modern
    return key


# ----- loading ---------------------------------------------------------------------------------
def test_real_format_checkpoint_loads_every_weight_into_hubert(tmp_path, make_model):
    directory = tiny_mert.write_tiny_mert(tmp_path)
    loaded = make_model().load()

    assert type(loaded.network) is HubertModel
    network_state = loaded.network.state_dict()
    for key, value in torch.load(directory / "pytorch_model.bin").items():
        assert torch.equal(network_state[_modern(key)], value), key


@pytest.mark.parametrize("do_normalize", [True, False])
def test_embedding_equals_transformers_own_inference(tmp_path, make_model, do_normalize):
    directory = tiny_mert.write_tiny_mert(tmp_path, do_normalize=do_normalize)
    # Quiet on purpose: the group-normed, bias-free conv encoder ignores loudness and DC offset
    # except near its epsilon, so only quiet audio shows whether do_normalize was applied right.
    wave = 0.01 * tone(0.25)
    windows = sliding_windows(wave, SR, window_seconds=0.1, hop_seconds=0.05)
    per_window = [reference_window_states(directory, w).mean(axis=0) for w in windows]
    expected = enrich(np.stack(per_window))

    [result] = make_model(ShortWindowMert).embed([wave])

    assert result.window_count == len(windows) == 4
    assert cosine(result.embedding, expected) >= 0.999


def test_missing_weights_name_the_download_command(make_model):
    with pytest.raises(WeightsMissingError, match="navembed models download mert"):
        make_model().load()


@pytest.mark.parametrize("corruption", [
    {"drop_keys": ("encoder.layers.0.attention.q_proj.weight",)},
    {"drop_keys": ("encoder.pos_conv_embed.conv.weight_g",)},
    {"extra_keys": ("encoder.layers.9.layer_norm.weight",)},
])
def test_checkpoint_with_missing_or_extra_weights_is_refused(tmp_path, make_model, corruption):
    tiny_mert.write_tiny_mert(tmp_path, **corruption)
    key = (corruption.get("drop_keys") or corruption["extra_keys"])[0]
    with pytest.raises(ModelLoadError, match="does not match MERT-v1-330M") as caught:
        make_model().load()
    assert key.rsplit(".", 1)[0] in str(caught.value)  # weight_g is reported under its modern name


def test_missing_training_only_mask_embedding_is_harmless(tmp_path, make_model):
    tiny_mert.write_tiny_mert(tmp_path, drop_keys=("masked_spec_embed",))
    assert make_model().load() is not None


def test_truncated_weights_file_is_a_load_error(tmp_path, make_model):
    directory = tiny_mert.write_tiny_mert(tmp_path)
    weights = directory / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="cannot load MERT weights"):
        make_model().load()


def test_corrupt_config_is_a_load_error(tmp_path, make_model):
    directory = tiny_mert.write_tiny_mert(tmp_path)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json"):
        make_model().load()


def test_mert_features_hubert_cannot_run_are_refused(tmp_path, make_model):
    tiny_mert.write_tiny_mert(tmp_path, config_overrides={"deepnorm": True})
    with pytest.raises(ModelLoadError, match="deepnorm"):
        make_model().load()


def test_weights_of_another_size_are_refused(tmp_path, make_model):
    tiny_mert.write_tiny_mert(tmp_path)  # 3 × 32, but the real MertModel expects 25 × 1024
    with pytest.raises(ModelLoadError, match="25 × 1024"):
        make_model(MertModel).load()


# ----- representation ------------------------------------------------------------------------
@pytest.mark.parametrize(("layers", "dimension", "variant_tail"), [
    (None, 3_072, "mean"),
    ("mean", 3_072, "mean"),
    ([12, 6, 6], 3_072, "layers-6-12"),
    ("6, 12", 3_072, "layers-6-12"),
    (list(range(25)), 3_072, "mean"),
    ("all", 76_800, "all"),
])
def test_dimension_and_variant_follow_the_layer_choice(make_model, layers, dimension, variant_tail):
    model = make_model(MertModel) if layers is None else make_model(MertModel, mert_layers=layers)
    assert model.dimension == dimension
    assert model.variant.endswith(f"v1-330M-{variant_tail}")
    assert not model.is_loaded


@pytest.mark.parametrize("layers", [[], [25], [-1], "x", [True], "first", 3.5])
def test_invalid_layer_choices_are_config_errors(make_model, layers):
    with pytest.raises(ConfigError, match="mert_layers"):
        make_model(MertModel, mert_layers=layers)


def test_layer_list_averages_only_those_states(tmp_path, make_model):
    tiny_mert.write_tiny_mert(tmp_path)
    wave = tone(0.3)
    every = make_model(mert_layers=[0, 1, 2]).embed([wave])[0].embedding
    default = make_model().embed([wave])[0].embedding
    first = make_model(mert_layers=[0]).embed([wave])[0].embedding
    last = make_model(mert_layers=[2]).embed([wave])[0].embedding

    np.testing.assert_allclose(every, default, atol=1e-6)
    assert cosine(first, last) < 0.99


def test_all_concatenates_one_enriched_block_per_state(tmp_path, make_model):
    tiny_mert.write_tiny_mert(tmp_path)
    vector = make_model(ShortWindowMert, mert_layers="all").embed([tone(0.3)])[0].embedding
    blocks = vector.reshape(tiny_mert.NUM_LAYERS + 1, 3 * tiny_mert.HIDDEN_SIZE)

    assert vector.shape == (3 * 3 * tiny_mert.HIDDEN_SIZE,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(np.linalg.norm(blocks, axis=1), 1 / np.sqrt(3), atol=1e-5)


def test_standalone_milvus_refuses_the_full_vector_with_a_fix():
    check_backend_dimension(3_072, MILVUS_STANDALONE_MAX_DIM)
    with pytest.raises(ConfigError, match="mert_layers"):
        check_backend_dimension(76_800, MILVUS_STANDALONE_MAX_DIM)


# ----- windows ---------------------------------------------------------------------------------
def test_min_window_is_the_conv_encoders_receptive_field():
    kernels, strides = tiny_mert.CONV_KERNELS, tiny_mert.CONV_STRIDES
    field = kernels[0] + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(kernels) if i)
    assert MertModel.min_window_samples == field == 400


@pytest.mark.parametrize("samples", [1, 240, 400])
def test_very_short_tracks_still_embed(tmp_path, make_model, samples):
    tiny_mert.write_tiny_mert(tmp_path, do_normalize=True)
    [result] = make_model().embed([tone(1.0)[:samples]])

    assert result.window_count == 1
    assert np.isfinite(result.embedding).all()
    assert np.linalg.norm(result.embedding) == pytest.approx(1.0, abs=1e-5)


def test_long_tracks_are_embedded_in_overlapping_windows(tmp_path, make_model):
    tiny_mert.write_tiny_mert(tmp_path)
    model = make_model(ShortWindowMert)
    short, long = model.embed([tone(0.1), tone(0.32)])

    assert short.window_count == 1
    assert long.window_count == 6  # starts 0, .05, .10, .15, .20 and one window ending at .32
    assert long.embedding.shape == short.embedding.shape == (model.dimension,)
