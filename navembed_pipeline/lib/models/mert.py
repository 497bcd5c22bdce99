"""`mert`: MERT-v1-330M hidden states, loaded as transformers' own ``HubertModel``.

MERT-v1-330M's published config (stable layer norm, no CQT branch, no deepnorm) describes
exactly transformers' ``HubertModel``, and its checkpoint keys are HubertModel's. So we drop
the keys that point at MERT's remote code (``auto_map``, ``architectures``, ``model_type``),
build a ``HubertConfig`` and load the same weights without ``trust_remote_code`` — that code
breaks across transformers releases; HubertModel does not. Every checkpoint weight must land
in the network, or loading fails with ``ModelLoadError``.

Audio runs in 30 s windows every 5 s (a 120 s single pass took 5.7 GB). Each window yields
25 hidden states × 1024 at 75 frames/s; only their per-state time means ``(25, 1024)`` are
kept, so memory stays flat however long the track is. Hidden state 0 is the input to the
first transformer layer, 1..23 the outputs of layers 1..23, 24 the final layer-normed output.

The track vector, chosen by ``ModelOptions.extra["mert_layers"]``:
- ``"mean"`` (default): average the selected states (all 25) per window, then enrich over
  windows (``[mean, robust sigma, delta-mean]``) → 3,072-d; fits Milvus standalone.
- a list of state indices (``[6, 12]`` or ``"6,12"``): the same, averaging only those → 3,072-d.
- ``"all"``: the original system's 76,800-d vector: enrich each state separately, concatenate
  the 25 × 3,072 and L2-normalise. Milvus standalone caps vectors at 32,768 dimensions; use
  ``check_backend_dimension`` to refuse it there with a clear message.
The choice and the weights are part of ``variant``, so changing either triggers re-embedding.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from navembed_pipeline.lib.errors import ConfigError, ModelLoadError
from navembed_pipeline.lib.models.base import EMBEDDING_FIELD, EmbeddingModel, ModelOptions
from navembed_pipeline.lib.models.enrich import enrich, l2_normalise
from navembed_pipeline.lib.models.weights import CC_BY_NC, find_weights

REPO_ID = "m-a-p/MERT-v1-330M"
WEIGHTS_REVISION = "v1-330M"  # the weights as published in 2023; bump if m-a-p ever retrains them
POOLING_VERSION = "1"
LAYERS_OPTION = "mert_layers"
MILVUS_STANDALONE_MAX_DIM = 32_768
# Keys that only select MERT's remote code; everything else in config.json is a HubertConfig field
# or an inert MERT extra (attention_relax only acts in MERT's post-norm deepnorm encoder).
REMOTE_CODE_KEYS = ("auto_map", "architectures", "model_type")
# MERT features that HubertModel cannot represent: a checkpoint using them is not MERT-v1-330M.
UNSUPPORTED_FEATURES = ("feature_extractor_cqt", "deepnorm")
# Used only for masked pre-training, never at inference.
HARMLESS_MISSING_KEYS = frozenset({"masked_spec_embed"})
# Receptive field of the conv feature encoder (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2):
# the fewest samples that still give one frame.
MIN_WINDOW_SAMPLES = 400
_NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's epsilon


@dataclass(frozen=True)
class LayerSelection:
    """Which hidden states form the vector: averaged into one (default) or concatenated."""

    indices: tuple[int, ...]
    concatenate: bool = False

    def dimension(self, hidden_size: int) -> int:
        return 3 * hidden_size * (len(self.indices) if self.concatenate else 1)

    def label(self, num_states: int) -> str:
        if self.concatenate:
            return "all"
        if self.indices == tuple(range(num_states)):
            return "mean"
        return "layers-" + "-".join(str(i) for i in self.indices)


def parse_layer_selection(value: Any, num_states: int) -> LayerSelection:
    """Read ``mert_layers``: ``"mean"`` (or None), ``"all"``, or hidden-state indices (list or "6,12")."""
    every = tuple(range(num_states))
    if value is None or value == "mean":
        return LayerSelection(every)
    if value == "all":
        return LayerSelection(every, concatenate=True)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{LAYERS_OPTION} must be 'mean', 'all' or a non-empty list of hidden-state "
                          f"indices 0..{num_states - 1}, got {value!r}")
    indices = {_layer_index(item, num_states) for item in value}
    return LayerSelection(tuple(sorted(indices)))


def check_backend_dimension(dimension: int, max_dimension: int, *, model_name: str = "mert") -> None:
    """Refuse a vector longer than the store accepts, saying how to make it fit."""
    if dimension > max_dimension:
        raise ConfigError(
            f"model {model_name!r} produces {dimension:,}-d vectors but this vector store accepts at "
            f"most {max_dimension:,} dimensions (Milvus standalone/distributed: "
            f"{MILVUS_STANDALONE_MAX_DIM:,}). For MERT set {LAYERS_OPTION} to 'mean' (3,072-d) or a "
            "list of layers, or use the embedded Milvus Lite store, which has no cap.")


@dataclass(frozen=True)
class _LoadedMert:
    network: torch.nn.Module
    do_normalize: bool


class MertModel(EmbeddingModel):
    """MERT-v1-330M (CC BY-NC 4.0 weights) through transformers' HubertModel."""

    name = "mert"
    sample_rate = 24_000
    window_seconds = 30.0
    hop_seconds = 5.0
    licence = CC_BY_NC
    weights_repos = (REPO_ID,)
    min_window_samples = MIN_WINDOW_SAMPLES
    hidden_size = 1024
    num_hidden_states = 25  # the conv/positional embedding output + 24 transformer layers

    def __init__(self, options: ModelOptions | None = None, **kwargs: Any) -> None:
        # Validate before the base class starts its idle-unload thread.
        extra = (options or ModelOptions()).extra
        self.layers = parse_layer_selection(extra.get(LAYERS_OPTION), self.num_hidden_states)
        super().__init__(options, **kwargs)

    @property
    def dimension(self) -> int:
        return self.layers.dimension(self.hidden_size)

    @property
    def variant(self) -> str:
        return f"v{POOLING_VERSION}-{WEIGHTS_REVISION}-{self.layers.label(self.num_hidden_states)}"

    def _load(self) -> _LoadedMert:
        from transformers import HubertModel

        directory = find_weights(REPO_ID, self.options.models_dir, model_name=self.name)
        config = self._hubert_config(directory)
        do_normalize = self._do_normalize(directory)
        try:
            network, info = HubertModel.from_pretrained(
                str(directory), config=config, dtype=self.dtype, local_files_only=True,
                output_loading_info=True)
        except Exception as exc:  # noqa: BLE001 - any failure here means unusable weights
            raise ModelLoadError(f"cannot load MERT weights from {directory}: {exc}") from exc
        _check_all_weights_loaded(info, directory)
        return _LoadedMert(network.to(self.device).eval(), do_normalize)

    def _forward(self, model: _LoadedMert, batch: torch.Tensor) -> list[np.ndarray]:
        inputs = _zero_mean_unit_var(batch) if model.do_normalize else batch
        states = model.network(inputs, output_hidden_states=True).hidden_states
        means = torch.stack([state.float().mean(dim=1) for state in states], dim=1)  # (B, L, H)
        return list(means.cpu().numpy())

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        per_window = np.stack(window_features)[:, list(self.layers.indices), :]  # (W, L, H)
        if self.layers.concatenate:
            per_state = [enrich(per_window[:, i, :]) for i in range(per_window.shape[1])]
            return {EMBEDDING_FIELD: l2_normalise(np.concatenate(per_state))}
        return {EMBEDDING_FIELD: enrich(per_window.mean(axis=1))}

    # ----- loading helpers ---------------------------------------------------------------------
    def _hubert_config(self, directory: Path) -> Any:
        from transformers import HubertConfig

        raw = _read_json(directory / "config.json")
        enabled = [key for key in UNSUPPORTED_FEATURES if raw.get(key)]
        if enabled:
            raise ModelLoadError(f"{directory}/config.json enables {', '.join(enabled)}, which "
                                 f"transformers' HubertModel cannot run; expected {REPO_ID}")
        try:
            config = HubertConfig.from_dict({k: v for k, v in raw.items() if k not in REMOTE_CODE_KEYS})
        except Exception as exc:  # noqa: BLE001 - transformers validates fields with assorted errors
            raise ModelLoadError(f"{directory}/config.json is not a valid MERT config: {exc}") from exc
        found = (config.hidden_size, config.num_hidden_layers + 1)
        if found != (self.hidden_size, self.num_hidden_states):
            raise ModelLoadError(
                f"{directory} holds a model with {found[1]} hidden states × {found[0]}, but {REPO_ID} "
                f"has {self.num_hidden_states} × {self.hidden_size}; download the right weights with: "
                f"navembed models download {self.name}")
        return config

    def _do_normalize(self, directory: Path) -> bool:
        from transformers import Wav2Vec2FeatureExtractor

        extractor = Wav2Vec2FeatureExtractor.from_dict(_read_json(directory / "preprocessor_config.json"))
        if extractor.sampling_rate != self.sample_rate:
            raise ModelLoadError(f"{directory}/preprocessor_config.json expects {extractor.sampling_rate} Hz "
                                 f"audio, but {REPO_ID} runs at {self.sample_rate} Hz")
        return bool(extractor.do_normalize)


def _zero_mean_unit_var(batch: torch.Tensor) -> torch.Tensor:
    """Per window, exactly ``Wav2Vec2FeatureExtractor``'s ``do_normalize`` (population variance)."""
    wide = batch.float()
    mean = wide.mean(dim=1, keepdim=True)
    var = wide.var(dim=1, unbiased=False, keepdim=True)
    return ((wide - mean) / torch.sqrt(var + _NORM_EPS)).to(batch.dtype)


def _check_all_weights_loaded(info: dict[str, Any], directory: Path) -> None:
    problems = {
        "missing": sorted(set(info.get("missing_keys", ())) - HARMLESS_MISSING_KEYS),
        "unexpected": sorted(info.get("unexpected_keys", ())),
        "mismatched": sorted(str(key) for key in info.get("mismatched_keys", ())),
    }
    found = {kind: keys for kind, keys in problems.items() if keys}
    if found:
        listed = "; ".join(f"{kind}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
                           for kind, keys in found.items())
        raise ModelLoadError(f"the MERT checkpoint in {directory} does not match MERT-v1-330M "
                             f"({listed}); re-download it with: navembed models download mert")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}; re-download the weights with: "
                             "navembed models download mert") from exc


def _layer_index(item: Any, num_states: int) -> int:
    try:
        index = int(item)
    except (TypeError, ValueError):
        index = -1
    if isinstance(item, bool) or not 0 <= index < num_states or str(item).strip() != str(index):
        raise ConfigError(f"{LAYERS_OPTION} entries must be hidden-state indices 0..{num_states - 1}, "
                          f"got {item!r}")
    return index
