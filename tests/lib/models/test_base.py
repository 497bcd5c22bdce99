"""The shared model lifecycle: lazy load, idle unload, manual unload, shutdown, threads, batching."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from navembed_pipeline.lib.errors import ConfigError, DeviceError, TextNotSupportedError
from navembed_pipeline.lib.models.base import EmbeddingModel, ModelOptions, resolve_device
from navembed_pipeline.lib.models.enrich import enrich


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FrameModel(EmbeddingModel):
    """A real (tiny) torch network: 1-second windows → 4 frame features each."""

    name = "frames"
    sample_rate = 100
    window_seconds = 1.0
    hop_seconds = 1.0
    licence = "test"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loads = 0
        self.batch_sizes: list[int] = []

    @property
    def dimension(self) -> int:
        return 12

    def _load(self) -> torch.nn.Module:
        self.loads += 1
        torch.manual_seed(0)
        return torch.nn.Linear(25, 4).to(self.device, self.dtype).eval()

    def _forward(self, model: Any, batch: torch.Tensor) -> list[np.ndarray]:
        self.batch_sizes.append(batch.shape[0])
        frames = batch[:, : (batch.shape[1] // 25) * 25].reshape(batch.shape[0], -1, 25)
        return [f.numpy() for f in model(frames)]

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"embedding": enrich(np.concatenate(window_features))}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model(clock: FakeClock):
    instance = FrameModel(ModelOptions(device="cpu", idle_unload_seconds=30, batch_size=3),
                          unload_check_seconds=0.01, clock=clock)
    yield instance
    instance.shutdown()


def wait_until(condition, timeout: float = 5.0) -> bool:
    event = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        event.wait(0.01)
    return condition()


def test_nothing_is_loaded_until_first_use(model: FrameModel) -> None:
    assert not model.is_loaded and model.loads == 0
    model.embed([np.ones(100, np.float32)])
    assert model.is_loaded and model.loads == 1
    model.embed([np.ones(100, np.float32)])
    assert model.loads == 1


def test_idle_model_is_unloaded_after_the_timeout(model: FrameModel, clock: FakeClock) -> None:
    model.embed([np.ones(100, np.float32)])
    clock.now += 29
    assert not wait_until(lambda: not model.is_loaded, timeout=0.2)
    clock.now += 2
    assert wait_until(lambda: not model.is_loaded)
    model.embed([np.ones(100, np.float32)])
    assert model.loads == 2


def test_model_in_use_is_never_unloaded(model: FrameModel, clock: FakeClock) -> None:
    with model.model_session():
        clock.now += 1000
        assert not wait_until(lambda: not model.is_loaded, timeout=0.2)
    clock.now += 31  # idle time counts from the end of the session
    assert wait_until(lambda: not model.is_loaded)


def test_manual_unload_and_shutdown(model: FrameModel) -> None:
    model.load()
    model.unload()
    assert not model.is_loaded
    model.load()
    model.shutdown()
    assert not model.is_loaded and not model._unloader.is_alive()


def test_idle_timeout_below_30_seconds_is_refused() -> None:
    with pytest.raises(ConfigError, match=">= 30"):
        FrameModel(ModelOptions(idle_unload_seconds=5))


def test_bad_device_dtype_and_batch_size_are_refused() -> None:
    for kwargs in ({"device": "tpu"}, {"dtype": "int8"}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            ModelOptions(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_cuda_requested_without_gpu_fails_loudly_and_auto_falls_back() -> None:
    with pytest.raises(DeviceError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_half_precision_is_not_used_on_cpu(model: FrameModel) -> None:
    half = FrameModel(ModelOptions(device="cpu", dtype="float16"))
    assert half.dtype == torch.float32
    half.shutdown()


def test_windows_of_all_tracks_are_batched_with_a_bounded_size(model: FrameModel) -> None:
    waves = [np.ones(450, np.float32), np.ones(250, np.float32), np.ones(50, np.float32)]
    results = model.embed(waves)
    assert [r.window_count for r in results] == [5, 3, 1]
    assert max(model.batch_sizes) <= 3 and sum(model.batch_sizes) == 9


def test_batched_result_equals_one_track_at_a_time(model: FrameModel) -> None:
    rng = np.random.default_rng(1)
    waves = [rng.normal(size=n).astype(np.float32) for n in (430, 120, 777)]
    together = model.embed(waves)
    for wave, result in zip(waves, together):
        np.testing.assert_allclose(model.embed([wave])[0].embedding, result.embedding, rtol=1e-5)


def test_concurrent_embeds_are_safe_and_load_once(model: FrameModel) -> None:
    rng = np.random.default_rng(2)
    waves = [rng.normal(size=300).astype(np.float32) for _ in range(16)]
    expected = [model.embed([w])[0].embedding for w in waves]
    model.unload()
    loads_before = model.loads
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda w: model.embed([w])[0].embedding, waves))
    assert model.loads == loads_before + 1
    for e, g in zip(expected, got):
        np.testing.assert_allclose(e, g, rtol=1e-5)


def test_models_without_text_tower_say_so(model: FrameModel) -> None:
    with pytest.raises(TextNotSupportedError, match="no text tower"):
        model.embed_text(["piano"])
