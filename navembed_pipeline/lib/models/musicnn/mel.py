"""MusiCNN's input: the log-mel spectrogram exactly as ``musicnn/extractor.py`` computes it.

The original calls ``librosa.feature.melspectrogram(y, sr=16000, hop_length=256, n_fft=512,
n_mels=96)`` with librosa's defaults: a periodic Hann window, ``center=True`` with
``pad_mode="constant"`` (zeros; librosa >= 0.10 — older librosa reflected), power 2, the Slaney mel
scale from 0 Hz to 8 kHz with Slaney (area) normalisation. It then casts to float16 and takes
``log10(10000 · x + 1)``; we keep that float16 rounding, since the model was run on it.

Centring with zeros means frame ``j`` covers samples ``[256 j - 256, 256 j + 256)`` of the track
with zeros outside it. So a track padded by 256 zeros on both sides and cut into windows of
``WINDOW_SAMPLES`` every ``HOP_SAMPLES`` gives, with an uncentred STFT, exactly the original's
187-frame patches (``input_overlap=False``: consecutive, the incomplete tail dropped).
"""

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
FMAX = SAMPLE_RATE / 2
PATCH_FRAMES = 187  # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
CENTER_PAD = N_FFT // 2
WINDOW_SAMPLES = (PATCH_FRAMES - 1) * HOP + N_FFT  # 48,384: the samples one patch's frames read
HOP_SAMPLES = PATCH_FRAMES * HOP  # 47,872: consecutive patches without overlap
LOG_SCALE = 10_000.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(*, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmax: float = FMAX) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` triangular filters, Slaney-normalised (``librosa.filters.mel``)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    # float32 before and after the area normalisation, as librosa rounds
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def patch_windows(wave: np.ndarray) -> list[np.ndarray]:
    """One track → the sample windows of its 3-s patches (see the module docstring).

    A track shorter than one patch gives one shorter window; ``log_mel`` repeats its frames.
    """
    padded = np.pad(np.asarray(wave, dtype=np.float32), CENTER_PAD)
    if len(padded) < WINDOW_SAMPLES:
        return [padded]
    count = 1 + (len(padded) - WINDOW_SAMPLES) // HOP_SAMPLES
    return [padded[i * HOP_SAMPLES : i * HOP_SAMPLES + WINDOW_SAMPLES] for i in range(count)]


class LogMel(torch.nn.Module):
    """Windows ``(B, samples)`` → log-mel patches ``(B, 187, 96)`` as the original feeds its network."""

    def __init__(self) -> None:
        super().__init__()
        window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filterbank()).double(), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # The STFT and the filterbank in float64: the float16 rounding below then agrees with
        # librosa's float32 result except where a value sits right on a float16 rounding boundary.
        spectrum = torch.stft(waves.double(), N_FFT, HOP, window=self.window, center=False,
                              return_complex=True)  # (B, 257, frames)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = torch.matmul(self.filters, power).transpose(1, 2)  # (B, frames, 96)
        mel = mel.to(torch.float32).to(torch.float16).to(torch.float32)
        return torch.log10(LOG_SCALE * mel + 1.0)


def fill_patch(mel: torch.Tensor) -> torch.Tensor:
    """Patches shorter than 187 frames (short tracks) repeated to length, as the training data was."""
    frames = mel.shape[1]
    if frames >= PATCH_FRAMES:
        return mel[:, :PATCH_FRAMES]
    repeats = -(-PATCH_FRAMES // frames)
    return mel.repeat(1, repeats, 1)[:, :PATCH_FRAMES]
