"""``MusicnnModel``: the embedding-model contract around MusiCNN's front end (``mel``) and network
(``net``), and the two vectors a track stores (``similarity_vector`` → ``embedding``, ``tag_scores`` →
``tags``). See the package docstring."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from navembed_pipeline.lib.errors import ModelLoadError
from navembed_pipeline.lib.models.enrich import l2_normalise
from navembed_pipeline.lib.models.base import EMBEDDING_FIELD, EmbeddingModel, ModelOptions
from navembed_pipeline.lib.models.musicnn.mel import (
    HOP_SAMPLES,
    N_FFT,
    SAMPLE_RATE,
    LogMel,
    fill_patch,
    patch_windows,
)
from navembed_pipeline.lib.models.musicnn.net import LAYER_SIZES, MusicnnNet, build_network, state_dict_from_tf
from navembed_pipeline.lib.models.musicnn.tags import DEFAULT_VARIANT, check_variant
from navembed_pipeline.lib.models.musicnn.weights import WEIGHTS_ID, load_variant
from navembed_pipeline.lib.models.options import MUSICNN_VARIANT_OPTION

TAGS_FIELD = "tags"
MUSICNN_LICENCE = ("ISC (musicnn 0.1.0 by Jordi Pons, Music Technology Group, Universitat Pompeu Fabra; "
                   "weights and code free to use, copy and modify with the copyright notice)")
PORT_VERSION = "1"  # the port itself (front end, network); bump if its outputs change
# The similarity vector: which layer, pooled how over a track's patches. Chosen by measurement
# (issue 21: same-album precision@5 on held-out real recordings); bump SIMILARITY_VERSION on change.
SIMILARITY_LAYER = "max_pool"
SIMILARITY_VERSION = "1"
SIMILARITY_DIMENSION = LAYER_SIZES[SIMILARITY_LAYER]
# Patches per forward pass for each unit of ``ModelOptions.batch_size`` on a GPU (a unit is sized for
# 30-s windows of the other models; a 3-s patch is a tenth of one).
PATCHES_PER_BATCH_UNIT = 8
# Patches per forward pass on the CPU, whatever ``batch_size`` says: a patch's activations (the timbral
# convolutions' outputs are ~9 MB) outgrow the caches as batches grow: the network on one torch thread
# took 44 ms per patch at 1-2 patches a pass, 61 ms at 4 and 110 ms at 32 (the old default), on the
# shared 2-core development machine (issue 25; README, *MusiCNN's CPU cost*).
CPU_PATCHES_PER_PASS = 2


def split_layers(features: np.ndarray) -> dict[str, np.ndarray]:
    """``(patches, 1756)`` rows of ``_forward``'s output → each layer ``(patches, size)`` by name."""
    out, start = {}, 0
    for name, size in LAYER_SIZES.items():
        out[name] = features[:, start : start + size]
        start += size
    return out


def similarity_vector(layers_per_patch: dict[str, np.ndarray]) -> np.ndarray:
    """The ``embedding`` of one track from its patches' layers: mean over patches of ``max_pool``,
    L2-normalised."""
    return l2_normalise(layers_per_patch[SIMILARITY_LAYER].mean(axis=0))


def tag_scores(layers_per_patch: dict[str, np.ndarray]) -> np.ndarray:
    """The ``tags`` vector: the mean taggram over the patches (raw sigmoid scores, 0..1)."""
    return layers_per_patch["taggram"].mean(axis=0).astype(np.float32)


@dataclass(frozen=True)
class _LoadedMusicnn:
    frontend: LogMel
    network: MusicnnNet


class MusicnnModel(EmbeddingModel):
    """MusiCNN tagger (``MSD_musicnn`` or ``MTT_musicnn``): a similarity vector and 50 tag scores."""

    name = "musicnn"
    sample_rate = SAMPLE_RATE
    window_seconds = HOP_SAMPLES / SAMPLE_RATE  # 2.992 s: 187 frames of 256 samples
    hop_seconds = HOP_SAMPLES / SAMPLE_RATE
    licence = MUSICNN_LICENCE
    weights_repos = (WEIGHTS_ID,)
    min_window_samples = N_FFT  # one STFT frame
    # One torch thread on the CPU, the other cores decode. Measured on the shared 2-core development
    # machine (benchmarks/musicnn_speed.py, other work running): 2 threads cost 4x the CPU per audio
    # minute of 1 (OpenMP threads spin while a core is taken); an idle machine was not available.
    cpu_threads = 1
    # With worker processes each one embeds what it decoded on its own torch thread (one per core, as
    # dsp does), instead of every patch of the run queueing for the run's single model thread.
    embeds_in_workers = True

    def __init__(self, options: ModelOptions | None = None, **kwargs: Any) -> None:
        extra = (options or ModelOptions()).extra
        self.weights_variant = check_variant(extra.get(MUSICNN_VARIANT_OPTION, DEFAULT_VARIANT))
        super().__init__(options, **kwargs)

    @property
    def dimension(self) -> int:
        return SIMILARITY_DIMENSION

    @property
    def vector_fields(self) -> dict[str, int]:
        return {EMBEDDING_FIELD: self.dimension, TAGS_FIELD: LAYER_SIZES["taggram"]}

    @property
    def variant(self) -> str:
        return f"{self.weights_variant}-port{PORT_VERSION}-{SIMILARITY_LAYER}{SIMILARITY_VERSION}"

    @property
    def batch_size(self) -> int:
        if self.device.type == "cpu":
            return CPU_PATCHES_PER_PASS
        return self._gpu_batch or self.options.batch_size * PATCHES_PER_BATCH_UNIT

    def patch_layers(self, waves: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per 16 kHz waveform, every candidate layer of each of its patches (``(patches, size)``)."""
        return [split_layers(np.stack(features)) for features in self.window_features(waves)]

    def mel_layers(self, mel: np.ndarray) -> dict[str, np.ndarray]:
        """The layers of ready-made log-mel patches ``(patches, 187, 96)`` (the original's network input)."""
        with self.model_session() as model, torch.inference_mode():
            outputs = model.network(torch.from_numpy(np.asarray(mel, np.float32)).to(self.device, self.dtype))
        return {name: outputs[name].float().cpu().numpy() for name in LAYER_SIZES}

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        return patch_windows(wave)

    def _load(self) -> _LoadedMusicnn:
        tensors = load_variant(self.options.models_dir, self.weights_variant)
        try:
            network = build_network(state_dict_from_tf(tensors))
        except (KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"the {self.weights_variant} weights do not fit MusiCNN's network ({exc}); "
                                 "re-download them with: navembed models download musicnn") from exc
        return _LoadedMusicnn(LogMel().to(self.device), network.to(self.device, self.dtype))

    def _forward(self, model: _LoadedMusicnn, batch: torch.Tensor) -> list[np.ndarray]:
        mel = fill_patch(model.frontend(batch)).to(self.dtype)
        outputs = model.network(mel)
        rows = torch.cat([outputs[name].float() for name in LAYER_SIZES], dim=1)
        return list(rows.cpu().numpy())

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        layers = split_layers(np.stack(window_features))
        return {EMBEDDING_FIELD: similarity_vector(layers), TAGS_FIELD: tag_scores(layers)}
