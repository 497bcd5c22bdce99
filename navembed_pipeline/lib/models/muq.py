"""`muq`: MuQ-MuLan, a music-text joint embedding (CC BY-NC 4.0 weights), via the ``muq`` package.

Loading. ``MuQMuLan.from_pretrained`` would fetch its MuQ backbone and ``xlm-roberta-base`` from
the hub by name, and from a local directory it reads only ``model.safetensors`` with
``strict=False`` (MuQ-MuLan-large ships ``pytorch_model.bin``). So we build the network from the
MuLan ``config.json`` with the two sub-model names pointed at their local directories (muq picks
its sub-loaders by substring: those paths contain "MuQ" and "xlm-roberta", as ``org--name`` and
hub-cache directory names always do), then load the MuLan checkpoint and require every weight of
the network to come from it (a missing key is a ``ModelLoadError``, never a silent random weight).
Nothing touches the network: every path handed to muq and transformers is a local directory.

Audio. The original system's windows (120 s every 15 s) go through MuQ-MuLan's own inference:
each window is cut into 10 s clips (the last one wrapped around to the start), each clip gives
an L2-normalised 512-d latent, and the window vector is their mean. Overlapping windows share
most clips, so clip latents are remembered by content digest and each distinct clip runs once
(a 4-minute track: 45 clip passes instead of 108) — the result is the same as muq's.

Vectors: ``embedding`` (1,536-d) enriches the window vectors ``[mean, robust sigma, delta-mean]``
like the original system; ``mulan`` (512-d) is the window mean, L2-normalised — the joint
audio-text space that ``embed_text`` queries (English and Chinese prompts).
"""

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from navembed_pipeline.lib.errors import ModelLoadError, WeightsMissingError
from navembed_pipeline.lib.models.base import EMBEDDING_FIELD, UNLOAD_CHECK_SECONDS, EmbeddingModel, ModelOptions
from navembed_pipeline.lib.models.enrich import enrich, l2_normalise
from navembed_pipeline.lib.models.weights import CC_BY_NC, find_weights

LOGGER = logging.getLogger("navembed.models.muq")

MULAN_REPO = "OpenMuQ/MuQ-MuLan-large"
AUDIO_REPO = "OpenMuQ/MuQ-large-msd-iter"
TEXT_REPO = "FacebookAI/xlm-roberta-base"
# muq itself asks the hub for "xlm-roberta-base" (now an alias of TEXT_REPO), so a hub cache
# filled by plain muq use holds it under that name.
TEXT_REPO_ALIASES = (TEXT_REPO, "xlm-roberta-base")
CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # preferred first
# Bump when the pooling or the inference path changes what stored vectors contain.
CODE_REVISION = "1"
MULAN_FIELD = "mulan"
LATENT_DIM = 512
# The mel front end reflect-pads by n_fft / 2 = 1,024 samples, so a clip needs more than that.
MIN_WINDOW_SAMPLES = 2048
# Uncached clips per forward pass = this × batch_size: 12 clips (one 120 s window, the
# footprint of muq's own parallel mode) at the default batch_size of 4.
CLIPS_PER_BATCH_UNIT = 3
CLIP_CACHE_SIZE = 4096  # 512 floats each: 8 MiB; a 10-minute track needs ~120
# Keys some transformers releases saved as buffers and later stopped registering.
HARMLESS_UNEXPECTED_SUFFIXES = (".position_ids",)


@dataclass(frozen=True)
class MuQWeights:
    """The local directories of the three repos MuQ-MuLan needs."""

    mulan: Path
    audio: Path
    text: Path


def find_muq_weights(models_dir: Path | None, *, model_name: str = "muq") -> MuQWeights:
    """Locate all three repos, or raise ``WeightsMissingError`` for the first one missing."""
    return MuQWeights(mulan=find_weights(MULAN_REPO, models_dir, model_name=model_name),
                      audio=find_weights(AUDIO_REPO, models_dir, model_name=model_name),
                      text=_find_any(TEXT_REPO_ALIASES, models_dir, model_name=model_name))


class MuQModel(EmbeddingModel):
    """MuQ-MuLan-large: 1,536-d enriched audio vectors plus the 512-d joint audio-text vector."""

    name = "muq"
    sample_rate = 24_000
    window_seconds = 120.0
    hop_seconds = 15.0
    licence = CC_BY_NC
    weights_repos = (MULAN_REPO, AUDIO_REPO, TEXT_REPO)
    min_window_samples = MIN_WINDOW_SAMPLES

    def __init__(self, options: ModelOptions | None = None, *,
                 unload_check_seconds: float = UNLOAD_CHECK_SECONDS) -> None:
        super().__init__(options, unload_check_seconds=unload_check_seconds)
        self._clips = _ClipLatentCache(CLIP_CACHE_SIZE)
        self._variant: str | None = None

    @property
    def dimension(self) -> int:
        return 3 * LATENT_DIM

    @property
    def vector_fields(self) -> dict[str, int]:
        return {EMBEDDING_FIELD: self.dimension, MULAN_FIELD: LATENT_DIM}

    @property
    def supports_text(self) -> bool:
        return True

    @property
    def variant(self) -> str:
        """``CODE_REVISION`` plus a fingerprint of the configs and the checkpoint's size."""
        if self._variant is None:
            try:
                weights = find_muq_weights(self.options.models_dir, model_name=self.name)
            except WeightsMissingError:
                return f"{CODE_REVISION}.no-weights"  # nothing can be embedded until they exist
            self._variant = f"{CODE_REVISION}.{_fingerprint(weights)}"
        return self._variant

    @property
    def dtype(self) -> torch.dtype:
        # Always float32: muq casts its mel features to float16 for any half type (bfloat16
        # then fails on a dtype mismatch) and MuQ is not trained for half precision.
        return torch.float32

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed prompts into the joint space: ``(N, 512)`` float32, L2-normalised.

        One prompt per forward pass: MuLan's text pooling ignores the padding mask, so a
        prompt's vector would otherwise depend on the longest prompt beside it.
        """
        if not texts:
            return np.zeros((0, LATENT_DIM), dtype=np.float32)
        with self.model_session() as model, torch.inference_mode():
            limit = _max_text_tokens(model)
            rows = [model(texts=[_fit_prompt(model, text, limit)])[0].float().cpu().numpy()
                    for text in texts]
        return np.stack([l2_normalise(row) for row in rows])

    def _load(self) -> Any:
        from muq import MuQMuLan

        weights = find_muq_weights(self.options.models_dir, model_name=self.name)
        if self.options.dtype != "float32":
            LOGGER.warning("model muq always runs in float32 (dtype %r ignored)", self.options.dtype)
        try:
            network = MuQMuLan(_network_config(weights))
            _load_checkpoint(network, weights.mulan)
            _ = network.mulan_module.text.tokenizer  # load it now, not at the first text query
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here means unusable weights
            raise ModelLoadError(f"cannot load MuQ-MuLan weights from {weights.mulan}: {exc}") from exc
        self._clips.clear()
        return network.to(self.device, torch.float32).eval()

    def _forward(self, model: Any, batch: torch.Tensor) -> list[np.ndarray]:
        clips = [model._get_all_clips(window) for window in batch.cpu()]  # muq's own 10 s cut
        keys = [[_digest(clip) for clip in window_clips] for window_clips in clips]
        latents = self._clip_latents(model, {key: clip for window_clips, window_keys in zip(clips, keys, strict=True)
                                             for key, clip in zip(window_keys, window_clips, strict=True)})
        # muq's window latent: the plain mean of its clips' unit vectors (not re-normalised)
        return [np.mean([latents[key] for key in window_keys], axis=0) for window_keys in keys]

    def _clip_latents(self, model: Any, clips: dict[bytes, torch.Tensor]) -> dict[bytes, np.ndarray]:
        """Each clip's latent by digest: remembered ones from the cache, the rest computed in chunks."""
        latents = {key: self._clips.get(key) for key in clips}
        pending = [(key, clip) for key, clip in clips.items() if latents[key] is None]
        chunk = CLIPS_PER_BATCH_UNIT * self.batch_size
        for start in range(0, len(pending), chunk):
            part = pending[start : start + chunk]
            stacked = torch.stack([clip for _, clip in part])
            if self.device.type == "cuda":  # pinned host memory: an asynchronous copy
                stacked = stacked.pin_memory()
            stacked = stacked.to(self.device, self.dtype, non_blocking=True)
            computed = model.mulan_module.get_audio_latents(stacked).float().cpu().numpy()
            for (key, _), latent in zip(part, computed, strict=True):
                latents[key] = latent
                self._clips.put(key, latent)
        return latents

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        windows = np.stack(window_features)
        return {EMBEDDING_FIELD: enrich(windows), MULAN_FIELD: l2_normalise(windows.mean(axis=0))}


class _ClipLatentCache:
    """A thread-safe LRU map from a clip's digest to its latent."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> np.ndarray | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: bytes, latent: np.ndarray) -> None:
        with self._lock:
            self._items[key] = latent
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _find_any(repo_ids: tuple[str, ...], models_dir: Path | None, *, model_name: str) -> Path:
    """The first present of several names for one repo; if none is, the error names the first."""
    errors: list[WeightsMissingError] = []
    for repo_id in repo_ids:
        try:
            return find_weights(repo_id, models_dir, model_name=model_name)
        except WeightsMissingError as exc:
            errors.append(exc)
    raise errors[0]


def _network_config(weights: MuQWeights) -> dict[str, Any]:
    config = json.loads((weights.mulan / CONFIG_FILE).read_text(encoding="utf-8"))
    config = config.get("config", config)  # tolerate a config nested by an older hub mixin
    for key, expected, local in (("audio_model", AUDIO_REPO, weights.audio),
                                 ("text_model", TEXT_REPO, weights.text)):
        named = str(config[key].get("name", ""))
        if named.rsplit("/", 1)[-1].lower() != expected.rsplit("/", 1)[-1].lower():
            LOGGER.warning("MuQ-MuLan config names %s %r; loading %s from %s instead",
                           key, named, expected, local)
        config[key] = {**config[key], "name": str(local)}
    return config


def _load_checkpoint(network: torch.nn.Module, directory: Path) -> None:
    """Load the MuLan checkpoint; every network weight must come from it."""
    path = _weights_file(directory)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ModelLoadError(f"MuQ-MuLan checkpoint {path} lacks {len(result.missing_keys)} weights "
                             f"(e.g. {result.missing_keys[:3]}); it is not {MULAN_REPO} — download it "
                             "again with: navembed models download muq")
    unexpected = [key for key in result.unexpected_keys if not key.endswith(HARMLESS_UNEXPECTED_SUFFIXES)]
    if unexpected:
        LOGGER.warning("MuQ-MuLan checkpoint has %d weights the network does not use (e.g. %s)",
                       len(unexpected), unexpected[:3])


def _weights_file(directory: Path) -> Path:
    for name in WEIGHTS_FILES:
        if (directory / name).is_file():
            return directory / name
    raise ModelLoadError(f"no MuQ-MuLan checkpoint ({' or '.join(WEIGHTS_FILES)}) in {directory}; "
                         "download it again with: navembed models download muq")


def _fingerprint(weights: MuQWeights) -> str:
    """Configs plus checkpoint size: stable however the files were copied, new when they change."""
    digest = hashlib.sha256()
    for directory in (weights.mulan, weights.audio, weights.text):
        config = directory / CONFIG_FILE
        digest.update(config.read_bytes() if config.is_file() else b"-")
    try:
        digest.update(str(_weights_file(weights.mulan).stat().st_size).encode())
    except ModelLoadError:
        digest.update(b"no-checkpoint")
    return digest.hexdigest()[:12]


def _digest(clip: torch.Tensor) -> bytes:
    return hashlib.blake2b(clip.contiguous().numpy().tobytes(), digest_size=16).digest()


def _max_text_tokens(model: Any) -> int:
    """XLM-R positions start after the padding index, so 514 positions hold 512 tokens."""
    config = model.mulan_module.text.model.config
    return int(config.max_position_embeddings - config.pad_token_id - 1)


def _fit_prompt(model: Any, text: str, limit: int) -> str:
    """Cut ``text`` at a token boundary so it fits the text tower (longer prompts would crash it)."""
    tokenizer = model.mulan_module.text.tokenizer
    while len(tokenizer(text)["input_ids"]) > limit:
        encoded = tokenizer(text, truncation=True, max_length=limit, return_offsets_mapping=True)
        ends = [end for start, end in encoded["offset_mapping"] if end > start]
        shorter = text[: ends[-1]] if ends else ""
        text = shorter if len(shorter) < len(text) else text[: len(text) - 1]
    return text
