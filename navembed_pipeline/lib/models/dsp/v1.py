"""`dsp` v1, kept only for side-by-side measurements (benchmarks/quality.py); `model.py` is the model.

The original weight-free timbre/harmony/rhythm descriptor, unchanged:

Per STFT frame (22.05 kHz, 2048-point FFT, hop 512 ≈ 43 frames/s):
- 64 log-mel bands minus their frame mean (spectral shape, independent of loudness),
- MFCC 1..19 (c0 is loudness, kept separately below),
- 12-bin chroma, normalised per frame and centred (harmony / key colour),
- 7 octave-band spectral contrasts (peaky tonal vs. flat noisy spectra),
- 7 scalars: log centroid, log bandwidth, log roll-off, spectral flatness, zero-crossing
  rate, log RMS loudness and onset strength (spectral flux: rhythm density).
Every block is roughly centred and scaled by fixed constants and weighted so that no
block dominates the cosine, then frames go through the shared enrichment
``[mean, robust sigma, delta-mean]`` → 109 × 3 = 327 dimensions.
Audio is processed in 30 s windows without overlap, so memory is flat on long tracks.
"""

from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from navembed_pipeline.lib.models.base import EmbeddingModel
from navembed_pipeline.lib.models.enrich import enrich

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 64
N_MFCC = 20
CONTRAST_EDGES_HZ = (0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, SAMPLE_RATE / 2)
CHROMA_RANGE_HZ = (55.0, 5000.0)
EPS = 1e-10
TOP_DB_LN = 80.0 / 10.0 * np.log(10.0)  # 80 dB below the loudest bin, in natural-log power
# Block weights (by ear-and-eye on generated material): timbre first, harmony and rhythm next.
WEIGHTS = {"mel": 1.0, "mfcc": 1.0, "chroma": 1.5, "contrast": 1.0, "scalars": 1.0}
FEATURES_PER_FRAME = N_MELS + (N_MFCC - 1) + 12 + (len(CONTRAST_EDGES_HZ) - 1) + 7
VERSION = "1"


class DspV1Model(EmbeddingModel):
    """dsp v1 (not registered as a model; reachable for the quality harness)."""

    name = "dsp"
    sample_rate = SAMPLE_RATE
    window_seconds = 30.0
    hop_seconds = 30.0
    licence = "MIT (navembed's own code; no weights)"
    weights_repos = ()
    min_window_samples = N_FFT

    @property
    def dimension(self) -> int:
        return 3 * FEATURES_PER_FRAME

    @property
    def variant(self) -> str:
        return f"v{VERSION}-sr{SAMPLE_RATE}-fft{N_FFT}-hop{HOP}"

    def _load(self) -> "_DspFeatures":
        return _DspFeatures().to(self.device, torch.float32)

    def _forward(self, model: Any, batch: torch.Tensor) -> list[np.ndarray]:
        frames = model(batch.float())  # (B, T, F)
        return [f.cpu().numpy() for f in frames]

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"embedding": enrich(np.concatenate(window_features, axis=0))}


class _DspFeatures(torch.nn.Module):
    """Fixed (non-learned) filterbanks as buffers, so `.to(device)` moves them all."""

    def __init__(self) -> None:
        super().__init__()
        n_freqs = N_FFT // 2 + 1
        freqs = torch.linspace(0, SAMPLE_RATE / 2, n_freqs)
        self.register_buffer("window", torch.hann_window(N_FFT))
        self.register_buffer("freqs", freqs)
        self.register_buffer("mel_fb", AF.melscale_fbanks(n_freqs, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE))
        self.register_buffer("dct", AF.create_dct(N_MFCC, N_MELS, "ortho"))
        self.register_buffer("chroma_fb", _chroma_filterbank(freqs))
        self.register_buffer("band_ids", torch.bucketize(freqs, torch.tensor(CONTRAST_EDGES_HZ[1:-1])))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, N_FFT, HOP, window=self.window, center=True, return_complex=True).abs()
        floor = spec.amax(dim=(1, 2), keepdim=True) * 1e-4  # -80 dB: ignore inaudible detail
        spec = torch.maximum(spec, floor)
        power = spec.pow(2).transpose(1, 2)  # (B, T, F)
        log_mel = torch.log(power @ self.mel_fb + EPS)
        log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - TOP_DB_LN)
        blocks = {
            "mel": (log_mel - log_mel.mean(dim=-1, keepdim=True)) / 4.0,
            "mfcc": (log_mel @ self.dct)[..., 1:] / 20.0,
            "chroma": self._chroma(power),
            "contrast": (self._contrast(spec.transpose(1, 2)) - 4.0) / 4.0,
            "scalars": self._scalars(wave, spec.transpose(1, 2), log_mel),
        }
        return torch.cat([WEIGHTS[k] * v for k, v in blocks.items()], dim=-1)

    def _chroma(self, power: torch.Tensor) -> torch.Tensor:
        chroma = power @ self.chroma_fb
        chroma = chroma / (chroma.sum(dim=-1, keepdim=True) + EPS)
        return (chroma - 1.0 / 12.0) * 4.0

    def _contrast(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Per octave band: log of (top 10% mean) over (bottom 10% mean) magnitudes."""
        out = []
        for band in range(len(CONTRAST_EDGES_HZ) - 1):
            values = magnitude[..., self.band_ids == band].sort(dim=-1).values
            k = max(1, values.shape[-1] // 10)
            peak = values[..., -k:].mean(dim=-1)
            valley = values[..., :k].mean(dim=-1)
            out.append(torch.log(peak + EPS) - torch.log(valley + EPS))
        return torch.stack(out, dim=-1)

    def _scalars(self, wave: torch.Tensor, magnitude: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        total = magnitude.sum(dim=-1) + EPS
        centroid = (magnitude * self.freqs).sum(dim=-1) / total
        bandwidth = ((magnitude * (self.freqs - centroid[..., None]).pow(2)).sum(dim=-1) / total).sqrt()
        rolloff_idx = (magnitude.cumsum(dim=-1) < 0.85 * total[..., None]).sum(dim=-1)
        rolloff = self.freqs[rolloff_idx.clamp(max=len(self.freqs) - 1)]
        flatness = torch.exp(torch.log(magnitude + EPS).mean(dim=-1)) / (magnitude.mean(dim=-1) + EPS)
        frames = _frame(wave, magnitude.shape[1])
        zcr = (frames[..., 1:].sign() != frames[..., :-1].sign()).float().mean(dim=-1)
        rms = frames.pow(2).mean(dim=-1).sqrt()
        flux = torch.relu(torch.diff(log_mel, dim=1, prepend=log_mel[:, :1])).mean(dim=-1)
        return torch.stack([
            torch.log2(centroid / 1500.0 + EPS) / 2.0,
            torch.log2(bandwidth / 1500.0 + EPS) / 2.0,
            torch.log2(rolloff / 3000.0 + EPS) / 3.0,
            flatness * 4.0 - 1.0,
            zcr * 10.0 - 1.0,
            (torch.log10(rms + EPS) + 1.5),
            flux - 1.0,
        ], dim=-1)


def _frame(wave: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Time-domain frames aligned with the centred STFT frames: (B, T, N_FFT)."""
    padded = torch.nn.functional.pad(wave, (N_FFT // 2, N_FFT // 2))
    return padded.unfold(-1, N_FFT, HOP)[:, :n_frames]


def _chroma_filterbank(freqs: torch.Tensor) -> torch.Tensor:
    """(F, 12) one-hot map of FFT bins to pitch classes within the musical range."""
    fb = torch.zeros(len(freqs), 12)
    low, high = CHROMA_RANGE_HZ
    for i, f in enumerate(freqs.tolist()):
        if low <= f <= high:
            pitch_class = int(round(12 * np.log2(f / 440.0) + 69)) % 12
            fb[i, pitch_class] = 1.0
    return fb
