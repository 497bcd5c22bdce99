"""MuQ-MuLan: loads offline from the downloaded layout, matches muq's own inference, embeds text.

Runs a tiny random MuQ-MuLan (tests/lib/models/tiny_muq.py) with 1 s clips; the windows are
shortened to 3 s every 1 s by a subclass so overlap, tails and caching show up in seconds of
audio. The production constants (120 s / 15 s, 10 s clips) are asserted separately.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from navembed_pipeline.lib.errors import ModelLoadError, WeightsMissingError
from navembed_pipeline.lib.library.audio import sliding_windows
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.enrich import enrich, l2_normalise
from navembed_pipeline.lib.models.muq import AUDIO_REPO, MULAN_REPO, TEXT_REPO, MuQModel
from navembed_pipeline.lib.models.weights import CC_BY_NC, local_dir_name
from tests.lib.models.tiny_muq import CHINESE_CHARACTERS, TEXT_MAX_TOKENS, build_tiny_muq
from tests.lib.models.helpers import cosine
from tests.lib.network_guard import network_blocked

SR = 24_000


class ShortWindowMuQ(MuQModel):
    window_seconds = 3.0
    hop_seconds = 1.0


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, int(seconds * SR)).astype(np.float32)


def sweep(seconds: float) -> np.ndarray:
    """A tone gliding 100 Hz -> 4 kHz over noise: every window and clip sounds different."""
    t = np.arange(int(seconds * SR)) / SR
    glide = 0.3 * np.sin(2 * np.pi * (100 * t + (3900 / (2 * seconds)) * t**2))
    return (glide + noise(seconds, seed=3)).astype(np.float32)


@contextmanager
def muq_at(models_dir: Path, **options: object) -> Iterator[ShortWindowMuQ]:
    """A fresh (unloaded) model reading ``models_dir``, shut down afterwards."""
    instance = ShortWindowMuQ(ModelOptions(device="cpu", models_dir=models_dir, **options))
    try:
        yield instance
    finally:
        instance.shutdown()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_muq(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def model(models_dir: Path) -> Iterator[ShortWindowMuQ]:
    with muq_at(models_dir) as instance:
        yield instance


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny weights, free to damage."""
    return Path(shutil.copytree(models_dir, tmp_path / "models"))


@pytest.fixture
def no_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide any real Hugging Face cache on this machine, so 'missing' means missing."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


def test_declares_the_original_systems_model() -> None:
    assert (MuQModel.name, MuQModel.sample_rate) == ("muq", 24_000)
    assert (MuQModel.window_seconds, MuQModel.hop_seconds) == (120.0, 15.0)
    assert MuQModel.weights_repos == ("OpenMuQ/MuQ-MuLan-large", "OpenMuQ/MuQ-large-msd-iter",
                                      "FacebookAI/xlm-roberta-base")
    assert MuQModel.licence == CC_BY_NC


def test_vector_fields_are_the_enriched_vector_and_the_joint_space_vector(model: ShortWindowMuQ) -> None:
    assert model.dimension == 1536
    assert model.vector_fields == {"embedding": 1536, "mulan": 512}
    assert model.supports_text


def test_runs_in_float32_whatever_dtype_is_asked(models_dir: Path) -> None:
    with muq_at(models_dir, dtype="bfloat16") as half:
        assert half.dtype == torch.float32


def test_loads_every_weight_from_the_mulan_checkpoint(model: ShortWindowMuQ, models_dir: Path) -> None:
    saved = torch.load(models_dir / local_dir_name(MULAN_REPO) / "pytorch_model.bin", weights_only=True)
    loaded = model.load().state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[key], saved[key]) for key in saved)


def test_embedding_equals_muqs_own_inference_on_the_same_windows(model: ShortWindowMuQ) -> None:
    wave = sweep(5.5)
    network = model.load()
    with torch.inference_mode():
        reference = np.stack([network(wavs=torch.from_numpy(np.ascontiguousarray(w))[None])[0].numpy()
                              for w in sliding_windows(wave, SR, window_seconds=3.0, hop_seconds=1.0)])

    (vectors,) = model.embed([wave])

    assert vectors.window_count == len(reference) == 4  # starts 0, 1, 2 s and a tail at 2.5 s
    assert cosine(vectors.embedding, enrich(reference)) >= 0.999
    assert cosine(vectors.vectors["mulan"], l2_normalise(reference.mean(axis=0))) >= 0.999
    assert np.allclose(vectors.embedding, enrich(reference), atol=1e-5)  # same maths, not just close


def test_vectors_are_unit_length_float32(model: ShortWindowMuQ) -> None:
    (vectors,) = model.embed([noise(4.0)])
    for name, dimension in model.vector_fields.items():
        vector = vectors.vectors[name]
        assert vector.shape == (dimension,) and vector.dtype == np.float32
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_a_track_shorter_than_one_window_is_one_window(model: ShortWindowMuQ) -> None:
    (vectors,) = model.embed([noise(2.0)])
    assert vectors.window_count == 1
    assert np.all(vectors.embedding[512:] == 0)  # one window: no spread, no change


def test_a_track_shorter_than_the_mel_frame_still_embeds(model: ShortWindowMuQ) -> None:
    (vectors,) = model.embed([noise(0.01)])  # 240 samples, padded up to the mel front end's minimum
    assert np.isfinite(vectors.embedding).all() and np.linalg.norm(vectors.embedding) > 0


def test_tracks_in_one_call_get_their_own_windows(model: ShortWindowMuQ) -> None:
    long, short = sweep(5.0), noise(2.0)
    together = model.embed([long, short])
    assert [v.window_count for v in together] == [3, 1]
    for wave, vectors in zip([long, short], together, strict=True):
        assert np.allclose(vectors.embedding, model.embed([wave])[0].embedding, atol=1e-5)


def test_overlapping_windows_run_each_distinct_clip_once(models_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with muq_at(models_dir) as fresh:
        mulan = fresh.load().mulan_module
        clips_run: list[int] = []
        original = mulan.get_audio_latents
        monkeypatch.setattr(mulan, "get_audio_latents",
                            lambda wavs: clips_run.append(len(wavs)) or original(wavs))
        wave = noise(5.0)  # windows at 0, 1, 2 s hold clips 0-1 .. 4-5 s: 9 clips, 5 distinct
        fresh.embed([wave])
        fresh.embed([wave])
    assert sum(clips_run) == 5


def test_text_vectors_are_unit_length_in_the_joint_space(model: ShortWindowMuQ) -> None:
    vectors = model.embed_text(["happy piano music", "欢快的钢琴曲"])
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.embed_text([]).shape == (0, 512)


def test_a_chinese_prompt_is_tokenised_not_unknown(model: ShortWindowMuQ) -> None:
    tokenizer = model.load().mulan_module.text.tokenizer
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("欢快的钢琴曲")["input_ids"])
    assert tokens == ["<s>", "▁", *"欢快的钢琴曲", "</s>"]  # one piece per character, none unknown
    english, chinese = model.embed_text(["happy piano", "欢快的钢琴曲"])
    assert cosine(english, chinese) < 0.999


def test_text_vectors_do_not_depend_on_the_other_prompts(model: ShortWindowMuQ) -> None:
    prompts = ["calm", f"happy dance music with rock guitar {CHINESE_CHARACTERS}"]
    batch = model.embed_text(prompts)
    for prompt, row in zip(prompts, batch, strict=True):
        assert np.allclose(row, model.embed_text([prompt])[0], atol=1e-6)


def test_muqs_batched_text_pooling_depends_on_padding(model: ShortWindowMuQ) -> None:
    """Why ``embed_text`` goes one prompt at a time: muq's mean pooling ignores the mask."""
    network = model.load()
    with torch.inference_mode():
        alone = network(texts=["calm"])[0]
        padded = network(texts=["calm", "happy dance music with rock guitar"])[0]
    assert not torch.allclose(alone, padded, atol=1e-4)


def test_a_prompt_longer_than_the_text_tower_is_truncated(model: ShortWindowMuQ) -> None:
    words = " ".join(["happy piano"] * TEXT_MAX_TOKENS)
    (vector,) = model.embed_text([words])
    assert np.isfinite(vector).all()
    assert np.allclose(vector, model.embed_text([words + " and more"])[0], atol=1e-6)


def test_loading_and_embedding_never_touch_the_network(models_dir: Path) -> None:
    # Blocked by an audit hook raising a BaseException, and every attempt recorded: a library that
    # catches the refusal (``except Exception`` around a download) cannot hide it.
    with network_blocked() as attempts, muq_at(models_dir) as fresh:
        fresh.embed([noise(1.0)])
        fresh.embed_text(["calm piano"])
    assert attempts == []


@pytest.mark.usefixtures("no_hub_cache")
def test_missing_weights_name_the_download_command(tmp_path: Path) -> None:
    with muq_at(tmp_path) as absent, pytest.raises(WeightsMissingError, match="navembed models download muq"):
        absent.embed([noise(1.0)])


@pytest.mark.usefixtures("no_hub_cache")
@pytest.mark.parametrize("removed", [AUDIO_REPO, TEXT_REPO])
def test_a_missing_sub_model_is_missing_weights_too(models_copy: Path, removed: str) -> None:
    shutil.rmtree(models_copy / local_dir_name(removed))
    with muq_at(models_copy) as incomplete, pytest.raises(WeightsMissingError, match=removed):
        incomplete.load()


def test_a_checkpoint_missing_weights_is_a_load_error(models_copy: Path) -> None:
    checkpoint = models_copy / local_dir_name(MULAN_REPO) / "pytorch_model.bin"
    state = torch.load(checkpoint, weights_only=True)
    del state[next(key for key in state if key.startswith("mulan.audio_to_latents"))]
    torch.save(state, checkpoint)
    with muq_at(models_copy) as damaged, pytest.raises(ModelLoadError, match="lacks 1 weights"):
        damaged.load()


def test_variant_follows_the_weights_not_their_location(models_dir: Path, models_copy: Path) -> None:
    with muq_at(models_dir) as original, muq_at(models_copy) as moved:
        assert moved.variant == original.variant
        config = models_copy / local_dir_name(AUDIO_REPO) / "config.json"
        config.write_text(config.read_text().replace("18.42", "18.5"))
        with muq_at(models_copy) as changed:
            assert changed.variant != original.variant
