"""`latent`: Music2Latent (Sony CSL Paris's consistency autoencoder) as a compact track vector.

Only the encoder of ``music2latent`` 0.1.8 runs, through the package's own
``EncoderDecoder.encode``: 44.1 kHz audio → complex STFT (hop 512) → encoder → 64 latent
channels per 4,096 samples (~10.77 frames/s), divided by the package's ``sigma_rescale``.
Only the encoder is kept in memory (16 M parameters, 65 MB; the whole UNet is 58 M / 233 MB).

Frame features, 192 per latent frame — the original system's "real / imaginary / magnitude"
(2 complex channels × 64 + magnitude), made precise. Each of the 64 latent channels is a real
sequence ``z`` over the track's frames; its analytic signal gives it a quadrature partner:
- real (64): the latent ``z`` itself (what the frame sounds like);
- imaginary (64): ``H[z]``, the Hilbert transform of ``z`` along time, over the whole track;
- magnitude (64): ``|(z - mean(z)) + i H[z]|``, the instantaneous envelope of the channel's
  swing around its track mean (how strongly that latent channel is moving right now).
The shared enrichment ``[mean, robust sigma, delta-mean]`` then gives 192 × 3 = 576 dimensions.

Windows: the encoder normalises over its whole input (GroupNorm), so a frame's value depends
a little on how much audio surrounds it. Every track is therefore cut into the same ~10 s
windows (108 latent frames, peak ~1.2 GB per window on CPU in float32), whatever its length,
so every frame sees comparable context; the package itself cuts long inputs into chunks
without overlap (at 60 s). Windows start every 108 × 4,096 samples and read 1,536 samples
more (the STFT overhang of their last frame), so the frames of consecutive windows tile the
track on exactly the grid a whole-file encode uses: concatenated, they are the track's frame
sequence with no gap and no duplicate. A tail shorter than one frame (< 0.13 s) is dropped,
as the package's own encode crops it. Measured (random weights, no trained ones offline): a
31 s track in 4 windows vs. one whole-file pass gives cosine 0.9990 at full size, while two
different test signals sit at 0.96-0.98.

Weights are run in float32 whatever ``dtype`` says: on CUDA the package applies its own fp16
autocast to the encoder, and its STFT front end produces float32 input.
"""

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from music2latent.inference import EncoderDecoder
from music2latent.models import Encoder, UNet
from scipy.signal import hilbert

from navembed_pipeline.lib.errors import ModelLoadError, WeightsMissingError
from navembed_pipeline.lib.models import weights
from navembed_pipeline.lib.models.base import EMBEDDING_FIELD, EmbeddingModel
from navembed_pipeline.lib.models.enrich import enrich

NAME = "latent"
SAMPLE_RATE = 44100
WEIGHTS_REPO = "SonyCSLParis/music2latent"  # where music2latent.utils.download_model fetches from
CHECKPOINT_FILE = "music2latent.pt"
LATENT_CHANNELS = 64  # hparams.bottleneck_channels
FEATURES_PER_FRAME = 3 * LATENT_CHANNELS
# The frame grid (hparams: hop 512, three 2x time downsamplings, STFT window 4 × hop).
SAMPLES_PER_FRAME = 4096
FRAME_OVERHANG = 1536
FRAMES_PER_WINDOW = 108
HOP_SAMPLES = FRAMES_PER_WINDOW * SAMPLES_PER_FRAME  # 442,368 samples, 10.03 s
WINDOW_SAMPLES = HOP_SAMPLES + FRAME_OVERHANG  # 443,904 samples, 10.07 s
ONE_FRAME_SAMPLES = SAMPLES_PER_FRAME + FRAME_OVERHANG  # 5,632 samples, 0.13 s


class LatentModel(EmbeddingModel):
    """Music2Latent latents → [real, imaginary, magnitude] frames → 576-d enriched vector."""

    name: ClassVar[str] = NAME
    sample_rate: ClassVar[int] = SAMPLE_RATE
    window_seconds: ClassVar[float] = WINDOW_SAMPLES / SAMPLE_RATE
    hop_seconds: ClassVar[float] = HOP_SAMPLES / SAMPLE_RATE
    licence: ClassVar[str] = weights.CC_BY_NC
    weights_repos: ClassVar[tuple[str, ...]] = (WEIGHTS_REPO,)
    min_window_samples: ClassVar[int] = ONE_FRAME_SAMPLES

    @property
    def dimension(self) -> int:
        return 3 * FEATURES_PER_FRAME

    @property
    def dtype(self) -> torch.dtype:
        """Always float32: on CUDA the package autocasts the encoder to fp16 by itself."""
        return torch.float32

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        return frame_aligned_windows(wave)

    def _load(self) -> EncoderDecoder:
        checkpoint = checkpoint_path(self.options.models_dir)
        encoder = load_encoder(checkpoint).to(self.device).eval()
        return OfflineEncoderDecoder(encoder, self.device)

    def _forward(self, model: EncoderDecoder, batch: torch.Tensor) -> list[np.ndarray]:
        # encode() takes [channels, samples] and encodes channels as one encoder batch, so the
        # windows ride as channels; max_batch_size keeps them in one pass (its default is 1).
        latents = model.encode(batch, max_batch_size=batch.shape[0])
        return list(latents.transpose(1, 2).float().cpu().numpy())

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {EMBEDDING_FIELD: enrich(frame_features(np.concatenate(window_features)))}


class OfflineEncoderDecoder(EncoderDecoder):
    """The package's ``EncoderDecoder`` around an already-loaded encoder.

    ``EncoderDecoder.__init__`` always calls ``download_model()`` (a network fetch into
    site-packages) and loads with ``strict=False``; this subclass skips it and holds only
    what ``encode`` uses: ``gen.encoder`` and ``device``.
    """

    def __init__(self, encoder: Encoder, device: torch.device) -> None:
        # Deliberately not calling super().__init__: it downloads (see the class docstring).
        self.device = device
        self.load_path_inference = None
        self.gen = torch.nn.ModuleDict({"encoder": encoder})


def frame_aligned_windows(wave: np.ndarray) -> list[np.ndarray]:
    """Cut ``wave`` into windows whose latent frames tile the track's own frame grid.

    A track of at most one window is one window. Otherwise windows start every
    ``HOP_SAMPLES`` and are ``WINDOW_SAMPLES`` long (the last one shorter); a last piece too
    short for one latent frame is dropped because the encoder cannot see it either.
    """
    if len(wave) <= WINDOW_SAMPLES:
        return [wave]
    windows = []
    for start in range(0, len(wave), HOP_SAMPLES):
        window = wave[start : start + WINDOW_SAMPLES]
        if len(window) < ONE_FRAME_SAMPLES:
            break
        windows.append(window)
        if start + WINDOW_SAMPLES >= len(wave):
            break
    return windows


def frame_features(latents: np.ndarray) -> np.ndarray:
    """``(T, 64)`` latent frames of one track → ``(T, 192)`` [real, imaginary, magnitude]."""
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected (frames, {LATENT_CHANNELS}) latents, got {latents.shape}")
    swing = hilbert(latents - latents.mean(axis=0), axis=0)
    return np.concatenate([latents, swing.imag, np.abs(swing)], axis=1).astype(np.float32)


def checkpoint_path(models_dir: Path | None) -> Path:
    """Where ``music2latent.pt`` is on this machine, or ``WeightsMissingError``."""
    directory = weights.find_weights(WEIGHTS_REPO, models_dir, model_name=NAME)
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise WeightsMissingError(
            f"{directory} holds no {CHECKPOINT_FILE} for model {NAME!r} ({WEIGHTS_REPO}). "
            f"Download it explicitly with: navembed models download {NAME}")
    return path


def load_encoder(path: Path) -> Encoder:
    """The encoder of the ``UNet`` saved in ``path``, after checking every key and shape.

    The file must hold ``{"gen_state_dict": UNet state dict}`` exactly as the package's own
    loader reads it; unlike that loader, a missing, unexpected or mis-shaped tensor is an error
    instead of a silently random weight.
    """
    state = _read_generator_state(path)
    with torch.device("meta"):  # the full UNet's keys and shapes, without allocating it
        expected = {key: tuple(value.shape) for key, value in UNet().state_dict().items()}
    problems = _state_problems(expected, {key: tuple(value.shape) for key, value in state.items()})
    if problems:
        raise ModelLoadError(f"{path} does not match the Music2Latent architecture of "
                             f"music2latent 0.1.8: {problems}")
    encoder = Encoder()
    prefix = "encoder."
    encoder.load_state_dict({key[len(prefix):]: value for key, value in state.items()
                             if key.startswith(prefix)}, strict=True)
    return encoder


def _read_generator_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        checkpoint: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one kind of failure here
        raise ModelLoadError(f"cannot read the Music2Latent checkpoint {path}: {error}") from error
    state = checkpoint.get("gen_state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} is not a music2latent checkpoint: it has no "
                             "'gen_state_dict' of tensors")
    return state


def _state_problems(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> str:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(key for key in set(expected) & set(found) if expected[key] != found[key])
    parts = [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
             for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                 ("tensors of the wrong shape", reshaped)) if keys]
    return "; ".join(parts)
