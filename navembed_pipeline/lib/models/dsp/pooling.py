"""Pooling of `dsp` v2 frame features into one track vector (numpy, no torch).

- **Silence is left out**: frames quieter than ``SILENCE_BELOW_LOUD_DB`` under the track's loud
  level (its 95th-percentile frame power) or under ``SILENCE_FLOOR_DB`` do not count. Leading
  silence, fades and gaps between movements therefore change nothing. A track that is silence
  throughout keeps all its frames (there is nothing better to describe). Frames at the edges of
  silence (their analysis window straddles it) are left out too; the tempo reads audible frames only.
- Per column, over the audible frames: **mean**, **robust sigma** (IQR / 1.349), and **change**:
  the mean absolute difference between consecutive ~1 s summaries (mean of frames). The old
  delta-*mean* telescopes to ``(last - first) / T`` ≈ 0 on thousands of frames; the mean
  *absolute* change of second-long summaries is how much the music moves.
- Frame loudness enters only relative to the track's loud level, so a gain change moves nothing.
- **Tempo / periodicity**: the autocorrelation of the onset envelope of each window, read at
  ``TEMPO_BINS`` log-spaced tempo bands (40-240 BPM) plus its strongest peak (pulse clarity),
  averaged over windows.
"""

from collections.abc import Sequence

import numpy as np

from navembed_pipeline.lib.models.dsp.features import COLUMNS, FRAME_COLUMNS, FRAMES_PER_SECOND, HOP, N_FFT

SILENCE_BELOW_LOUD_DB = 45.0
SILENCE_FLOOR_DB = -70.0
LOUD_PERCENTILE = 95.0
EDGE_FRAMES = N_FFT // HOP  # frames whose 2048-sample window reaches into an adjacent silent frame
SUMMARY_FRAMES = int(round(FRAMES_PER_SECOND))  # ~1 s
TEMPO_RANGE_BPM = (40.0, 240.0)
TEMPO_BINS = 8
TEMPO_PRIOR_BPM = 120.0  # for ``estimate_tempo`` only: prefer the usual tempo octave
MIN_TEMPO_FRAMES = int(4 * FRAMES_PER_SECOND)
IQR_TO_SIGMA = 1.349
TEMPO_DIM = TEMPO_BINS + 1
STATS = ("mean", "sigma", "change")
RAW_DIMENSION = len(STATS) * FRAME_COLUMNS + TEMPO_DIM  # the pooled vector, before reference and weights


def audible(energy_db: np.ndarray) -> np.ndarray:
    """Boolean mask of frames that are not silence (see the module docstring).

    Frames within ``EDGE_FRAMES`` of a silent one are left out too: their analysis window straddles
    the edge, so their loudness ramps and their onset strength spikes without the music doing so.
    """
    loud = float(np.percentile(energy_db, LOUD_PERCENTILE))
    keep = (energy_db >= loud - SILENCE_BELOW_LOUD_DB) & (energy_db >= SILENCE_FLOOR_DB)
    if not keep.any():
        return np.ones_like(keep)
    padded = np.concatenate([np.zeros(EDGE_FRAMES, bool), ~keep, np.zeros(EDGE_FRAMES, bool)])
    near_silence = np.lib.stride_tricks.sliding_window_view(padded, 2 * EDGE_FRAMES + 1).any(axis=1)
    inner = keep & ~near_silence
    return inner if inner.any() else keep


def frame_statistics(frames: np.ndarray) -> dict[str, np.ndarray]:
    """``{"mean", "sigma", "change"}`` of ``(T, FRAME_COLUMNS)`` frames, each ``(FRAME_COLUMNS,)``.

    The energy column becomes loudness relative to the track's loud level before pooling.
    """
    frames = np.asarray(frames, dtype=np.float32)
    energy = frames[:, COLUMNS["energy_db"]][:, 0]
    keep = audible(energy)
    kept = frames[keep].copy()
    loud = float(np.percentile(energy, LOUD_PERCENTILE))
    kept[:, COLUMNS["energy_db"]] = np.maximum(kept[:, COLUMNS["energy_db"]] - loud, -SILENCE_BELOW_LOUD_DB)
    mean = kept.mean(axis=0)
    if len(kept) > 1:
        q75, q25 = np.percentile(kept, [75.0, 25.0], axis=0)
        sigma = (q75 - q25) / IQR_TO_SIGMA
    else:
        sigma = np.zeros(FRAME_COLUMNS, np.float32)
    blocks = len(kept) // SUMMARY_FRAMES
    if blocks >= 2:
        summaries = kept[: blocks * SUMMARY_FRAMES].reshape(blocks, SUMMARY_FRAMES, FRAME_COLUMNS).mean(axis=1)
        change = np.abs(np.diff(summaries, axis=0)).mean(axis=0)
    else:
        change = np.zeros(FRAME_COLUMNS, np.float32)
    return {"mean": mean, "sigma": sigma, "change": change}


def onset_autocorrelation(onset: np.ndarray) -> np.ndarray:
    """Autocorrelation of a mean-removed onset envelope, 1 at lag 0 (zeros for a flat envelope)."""
    centred = np.asarray(onset, dtype=np.float64) - float(np.mean(onset))
    size = 1 << int(np.ceil(np.log2(2 * len(centred))))
    spectrum = np.fft.rfft(centred, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[: len(centred)]
    return acf / acf[0] if acf[0] > 1e-12 else np.zeros_like(acf)


def _lag(bpm: float) -> float:
    return 60.0 * FRAMES_PER_SECOND / bpm


def tempo_descriptor(onset_windows: Sequence[np.ndarray]) -> np.ndarray:
    """``(TEMPO_DIM,)``: periodicity strength per log-spaced tempo band and the strongest peak.

    Windows shorter than 4 s carry no reliable periodicity and are skipped; with none, zeros.
    """
    edges = np.geomspace(TEMPO_RANGE_BPM[1], TEMPO_RANGE_BPM[0], TEMPO_BINS + 1)  # fast → slow
    total, weight = np.zeros(TEMPO_DIM), 0.0
    for onset in onset_windows:
        if len(onset) < MIN_TEMPO_FRAMES:
            continue
        acf = onset_autocorrelation(onset)
        values = []
        for fast, slow in zip(edges[:-1], edges[1:], strict=True):
            lo, hi = int(np.floor(_lag(fast))), int(np.ceil(_lag(slow)))
            values.append(float(acf[lo : min(hi, len(acf) - 1) + 1].max()))
        values.append(max(values))
        total += len(onset) * np.clip(values, 0.0, 1.0)
        weight += len(onset)
    return (total / weight if weight else total).astype(np.float32)


def estimate_tempo(onset: np.ndarray) -> float:
    """The dominant tempo (BPM) of an onset envelope: the autocorrelation peak in 40-240 BPM,
    weighted by a broad log-Gaussian prior around 120 BPM to pick the usual tempo octave."""
    acf = onset_autocorrelation(onset)
    lags = np.arange(int(_lag(TEMPO_RANGE_BPM[1])), min(int(_lag(TEMPO_RANGE_BPM[0])) + 1, len(acf) - 1))
    bpm = 60.0 * FRAMES_PER_SECOND / lags
    prior = np.exp(-0.5 * np.log2(bpm / TEMPO_PRIOR_BPM) ** 2)
    best = int(lags[np.argmax(acf[lags] * prior)])
    left, centre, right = acf[best - 1], acf[best], acf[best + 1]
    denominator = left - 2 * centre + right
    offset = 0.5 * (left - right) / denominator if abs(denominator) > 1e-12 else 0.0
    return float(60.0 * FRAMES_PER_SECOND / (best + offset))
