"""The embedding-model contract and the lifecycle every model shares.

A model turns decoded mono waveforms (at its own ``sample_rate``) into track vectors.
Decoding lives in ``lib/library/audio.py`` so the pipeline can decode on CPU threads while the
model runs. The lifecycle is the original system's: lazy load on first use under a lock,
idle auto-unload (default 360 s, minimum 30 s, checked every 5 s), manual ``unload()``,
``shutdown()``, and GPU cache release after every unload.

Windows of all tracks in one ``embed`` call are batched together, at most ``batch_size``
windows per forward pass, so memory stays flat however long the tracks are.
"""

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from navembed_pipeline.lib.errors import ConfigError, DeviceError, TextNotSupportedError
from navembed_pipeline.lib.library.audio import sliding_windows
from navembed_pipeline.lib.library.excerpts import ExcerptPlan, ExcerptWave, excerpt_parts
from navembed_pipeline.lib.models.options import DEFAULT_IDLE_UNLOAD_SECONDS, DEVICES, ModelOptions  # noqa: F401 (re-exported)

LOGGER = logging.getLogger("navembed.models")

MIN_IDLE_UNLOAD_SECONDS = 30.0
UNLOAD_CHECK_SECONDS = 5.0
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EMBEDDING_FIELD = "embedding"
GPU_MEMORY_SHARE = 0.6  # of the free GPU memory that one forward pass's activations may take
MAX_GPU_BATCH = 64  # windows per GPU pass at most (beyond this, throughput no longer grows)


@dataclass(frozen=True)
class TrackVectors:
    """The vectors of one track or segment: ``embedding`` always, plus model-specific extras."""

    vectors: dict[str, np.ndarray]
    window_count: int

    @property
    def embedding(self) -> np.ndarray:
        return self.vectors[EMBEDDING_FIELD]


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU fails loudly."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise DeviceError("device 'cuda' was requested but torch sees no CUDA GPU "
                          "(is a CUDA build of torch installed? see README 'GPU install')")
    return torch.device("cpu")


def release_accelerator_memory() -> None:
    """Hand cached GPU memory back to the driver (a no-op on CPU-only machines)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class EmbeddingModel(ABC):
    """One embedding model: its constants, its vectors, and the shared lifecycle."""

    name: ClassVar[str]
    sample_rate: ClassVar[int]
    window_seconds: ClassVar[float]
    hop_seconds: ClassVar[float]
    licence: ClassVar[str]
    weights_repos: ClassVar[tuple[str, ...]] = ()
    min_window_samples: ClassVar[int] = 1
    # A long track analysed from excerpts spread over it (``lib/library/excerpts.py``), not whole: the
    # decoder then decodes only those seconds when nothing else needs the whole track.
    excerpts: ClassVar[ExcerptPlan | None] = None
    # torch CPU threads while the engine runs it (None: torch's default, every core); see EmbeddingRun
    cpu_threads: ClassVar[int | None] = None
    # Cheap to build and CPU-bound (dsp): with worker processes, each worker embeds what it decoded.
    embeds_in_workers: ClassVar[bool] = False

    def __init__(self, options: ModelOptions | None = None, *,
                 unload_check_seconds: float = UNLOAD_CHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options or ModelOptions()
        if self.options.idle_unload_seconds < MIN_IDLE_UNLOAD_SECONDS:
            raise ConfigError(f"idle_unload_seconds must be >= {MIN_IDLE_UNLOAD_SECONDS:g}, "
                              f"got {self.options.idle_unload_seconds:g}")
        self._clock = clock
        self._model: Any = None
        self._gpu_batch: int | None = None  # windows per GPU pass, sized from free memory (see _forward_batch)
        self._gpu_sized = False
        self._device: torch.device | None = None
        self._lock = threading.RLock()
        self._active = 0
        self._last_used = clock()
        self._idle_seconds = self.options.idle_unload_seconds
        self._stop = threading.Event()
        self._unloader = threading.Thread(target=self._auto_unload_loop, args=(unload_check_seconds,),
                                          name=f"{self.name}-unloader", daemon=True)
        self._unloader.start()

    # ----- what a model declares -------------------------------------------------------------
    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of the ``embedding`` vector."""

    @property
    def vector_fields(self) -> dict[str, int]:
        """Every vector this model produces, by field name, with its dimension."""
        return {EMBEDDING_FIELD: self.dimension}

    @property
    def version(self) -> str:
        """Changes whenever stored vectors would differ: weights, pooling or code revision."""
        return f"{self.name}:{self.variant}"

    @property
    def variant(self) -> str:
        """Model-specific part of ``version`` (weights revision, layer selection, ...)."""
        return "1"

    @property
    def supports_text(self) -> bool:
        return False

    # ----- public API ------------------------------------------------------------------------
    def embed(self, waves: Sequence[np.ndarray | ExcerptWave], *,
              timings: dict[str, float] | None = None) -> list[TrackVectors]:
        """Embed mono float32 waveforms at ``sample_rate``; one ``TrackVectors`` per input.

        A model with an ``excerpts`` plan analyses a long wave's excerpts only; an ``ExcerptWave`` (the
        excerpts decoded on their own) gives the same vector as the whole wave it was taken from.

        ``timings``, when given, accumulates seconds under ``"model"`` (windowing, loading when
        needed, forward passes up to features on the CPU) and ``"enrich"`` (pooling windows into vectors).
        """
        started = time.perf_counter()
        per_track = self.window_features(waves)
        pooling = time.perf_counter()
        vectors = [TrackVectors(self._pool(feats), len(feats)) for feats in per_track]
        if timings is not None:
            timings["model"] = timings.get("model", 0.0) + pooling - started
            timings["enrich"] = timings.get("enrich", 0.0) + time.perf_counter() - pooling
        return vectors

    def window_features(self, waves: Sequence[np.ndarray | ExcerptWave]) -> list[list[np.ndarray]]:
        """Per input, the features of each of its windows (``_forward``'s output), in order; windows of
        all inputs are batched together."""
        windows: list[tuple[int, np.ndarray]] = []
        for index, wave in enumerate(waves):
            for part in excerpt_parts(wave, self.excerpts, self.sample_rate):
                for window in self._windows(part):
                    windows.append((index, self._pad(window)))
        per_track: list[list[np.ndarray]] = [[] for _ in waves]
        with self.model_session() as model:
            for batch in self._batches(windows):
                for (track, _), feature in zip(batch, self._forward_batch(model, batch), strict=True):
                    per_track[track].append(feature)
        return per_track

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed text prompts into the model's joint audio-text space, ``(N, D)``."""
        raise TextNotSupportedError(f"model {self.name!r} has no text tower; "
                                    "text search needs the 'muq' model")

    # ----- lifecycle ------------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            self._device = resolve_device(self.options.device)
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        if self.device.type == "cpu" and self.options.dtype != "float32":
            return torch.float32  # half precision is a GPU optimisation; CPU kernels want fp32
        return DTYPES[self.options.dtype]

    def load(self) -> Any:
        """Load the weights now (normally done lazily by the first ``embed``)."""
        with self._lock:
            if self._model is None:
                LOGGER.info("loading model %s on %s (%s)", self.name, self.device, self.dtype)
                started = time.monotonic()
                self._model = self._load()
                LOGGER.info("loaded model %s in %.1fs", self.name, time.monotonic() - started)
            self._last_used = self._clock()
            return self._model

    @contextmanager
    def model_session(self) -> Iterator[Any]:
        """Use the loaded model; it cannot be unloaded while a session is open."""
        with self._lock:
            model = self.load()
            self._active += 1
        try:
            yield model
        finally:
            with self._lock:
                self._active -= 1
                self._last_used = self._clock()

    def unload(self) -> None:
        """Release the model now (waits for running sessions on this thread's lock)."""
        with self._lock:
            if self._model is None:
                return
            LOGGER.info("unloading model %s", self.name)
            self._model = None
            self._gpu_batch, self._gpu_sized = None, False
        release_accelerator_memory()

    def shutdown(self) -> None:
        """Stop the idle-unload thread and release the model."""
        self._stop.set()
        self._unloader.join(timeout=UNLOAD_CHECK_SECONDS + 1)
        self.unload()

    def _auto_unload_loop(self, check_seconds: float) -> None:
        while not self._stop.wait(check_seconds):
            with self._lock:
                idle = self._clock() - self._last_used
                if self._model is None or self._active or idle < self._idle_seconds:
                    continue
                LOGGER.info("model %s idle for %ds, unloading", self.name, int(idle))
                self._model = None
                self._gpu_batch, self._gpu_sized = None, False
            release_accelerator_memory()

    # ----- helpers and hooks -----------------------------------------------------------------
    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        """Cut one track into model windows (default: the original system's sliding windows)."""
        return sliding_windows(wave, self.sample_rate, window_seconds=self.window_seconds,
                               hop_seconds=self.hop_seconds)

    def _pad(self, window: np.ndarray) -> np.ndarray:
        if len(window) >= self.min_window_samples:
            return window
        return np.pad(window, (0, self.min_window_samples - len(window)))

    @property
    def batch_size(self) -> int:
        """Windows per forward pass: ``options.batch_size``; on a GPU, what its free memory allows."""
        return self._gpu_batch or self.options.batch_size

    def _batches(self, windows: list[tuple[int, np.ndarray]]) -> Iterator[list[tuple[int, np.ndarray]]]:
        """Group windows of equal length (no padding inside a batch), ``batch_size`` at most."""
        by_length: dict[int, list[tuple[int, np.ndarray]]] = {}
        for item in windows:
            by_length.setdefault(len(item[1]), []).append(item)
        for group in by_length.values():
            start = 0
            while start < len(group):  # the size is read per batch: the first GPU batch sets it
                size = self.batch_size
                yield group[start : start + size]
                start += size

    def _forward_batch(self, model: Any, batch: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """One forward pass; on a GPU from pinned host memory (asynchronous copy), sizing the batch.

        A GPU running out of memory halves the batch size and retries (down to one window).
        """
        stacked = torch.from_numpy(np.stack([w for _, w in batch]))
        if self.device.type != "cuda":
            with torch.inference_mode():
                return self._forward(model, stacked.to(self.device, self.dtype))
        torch.cuda.reset_peak_memory_stats(self.device)
        baseline = torch.cuda.memory_allocated(self.device)
        try:
            with torch.inference_mode():
                features = self._forward(model, stacked.pin_memory().to(self.device, self.dtype, non_blocking=True))
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
            self._gpu_batch, self._gpu_sized = max(1, len(batch) // 2), True
            LOGGER.warning("%s: GPU out of memory at %d windows per pass; retrying with %d",
                           self.name, len(batch), self._gpu_batch)
            release_accelerator_memory()
            half = len(batch) // 2
            return self._forward_batch(model, batch[:half]) + self._forward_batch(model, batch[half:])
        if not self._gpu_sized:
            self._size_gpu_batch(len(batch), torch.cuda.max_memory_allocated(self.device) - baseline)
        return features

    def _size_gpu_batch(self, windows: int, peak_bytes: int) -> None:
        """Windows per pass from the memory one pass of ``windows`` took and what is free now."""
        free, _ = torch.cuda.mem_get_info(self.device)
        reusable = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        per_window = max(peak_bytes / windows, 1.0)
        fitting = int(GPU_MEMORY_SHARE * (free + reusable) / per_window)
        self._gpu_batch = max(self.options.batch_size, min(MAX_GPU_BATCH, fitting))
        self._gpu_sized = True
        LOGGER.info("%s: %.0f MiB per window on the GPU, %.1f GiB free: %d windows per pass",
                    self.name, per_window / 2**20, (free + reusable) / 2**30, self._gpu_batch)

    @abstractmethod
    def _load(self) -> Any:
        """Build the network with its weights on ``self.device`` / ``self.dtype``, in eval mode."""

    @abstractmethod
    def _forward(self, model: Any, batch: torch.Tensor) -> list[np.ndarray]:
        """Run one batch ``(B, samples)``; return one float32 feature array per window."""

    @abstractmethod
    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Pool one track's window features into its named vectors (``embedding`` at least)."""
