"""`dsp` v2: a weight-free timbre/harmony/rhythm descriptor that runs fast on any CPU.

Frames (``dsp_features``; 22.05 kHz, 2048-point FFT, hop 512 ≈ 43 frames/s), 88 columns:
64 log-mel bands minus their frame mean (spectral shape), 12-bin chroma from a filterbank that
shares wide low bins evenly between semitones, 7 octave-band flatnesses (tonal peaks vs noise),
log centroid / bandwidth / roll-off, onset strength (spectral flux) and frame loudness.
Pooling (``dsp_pooling``) leaves silence out and gives per column mean, robust sigma and the
change between ~1 s summaries, plus a 9-d tempo/periodicity descriptor from the onset
envelope's autocorrelation → 88 × 3 + 9 = 273 dimensions.

Every dimension is scaled (and the offset blocks ``CENTRED_BLOCKS`` centred) by a reference
measured on real recordings (``reference.json``), each block is weighted by its *measured*
contribution (see ``BLOCK_WEIGHTS``), and the vector is L2-normalised.

What v1 got wrong and v2 fixes (issue 10): a third of v1's vector was the mean of first
differences of thousands of frames, which telescopes to ≈ 0; silence was pooled like music; chroma
bins below 220 Hz were uneven; there was no tempo feature; block weights were set by ear. v1 stays
reachable as ``v1.DspV1Model`` for side-by-side measurements (``benchmarks/quality.py``).

Cost (one core, a 6-minute track, ``time.process_time`` on the busy 2-core development machine):
v1 1.8-2.3 s, v2 0.49-0.60 s — one STFT, one filterbank matrix multiply, no sorting.

Audio is cut into 30 s windows without overlap (the last one shorter), so memory is flat on long
tracks and no frame counts twice; a track over 3 minutes is analysed from 12 excerpts of 10 s spread
over it (``EXCERPTS``), each its own window.
"""

from typing import Any

import numpy as np
import torch

from navembed_pipeline.lib.library.excerpts import ExcerptPlan
from navembed_pipeline.lib.models.base import EmbeddingModel
from navembed_pipeline.lib.models.dsp.features import COLUMNS, FRAME_COLUMNS, HOP, N_FFT, SAMPLE_RATE, FrameFeatures
from navembed_pipeline.lib.models.dsp.pooling import (RAW_DIMENSION, STATS, TEMPO_DIM, audible, frame_statistics,
                                                      tempo_descriptor)
from navembed_pipeline.lib.models.dsp.reference import reference
from navembed_pipeline.lib.models.enrich import l2_normalise

VERSION = "2"
WINDOW_SECONDS = 30.0
# Tracks over 3 minutes are analysed from 12 excerpts of 10 s spread over them (issue 25: decode and
# analyse less for the same answer). Pooling the frames of those excerpts instead of every frame of the
# 210 recordings of benchmarks/quality.py (41 % of their audio analysed) moved same-album precision@5 by
# -0.005 (95 % interval -0.021 .. +0.011; held-out albums +0.012, -0.010 .. +0.032), each vector's cosine
# to its whole-track vector 0.989 at worst (median 0.998); 4 excerpts of 30 s (the same share of audio)
# cost -0.022 (-0.041 .. -0.003), so many short excerpts it is (README "Excerpts"). The vectors stay
# comparable with those computed whole: the variant is unchanged and nothing is re-embedded.
EXCERPTS = ExcerptPlan(count=12, seconds=10.0, above_seconds=180.0)
Z_CLIP = 6.0
# Blocks whose values sit on an arbitrary offset (a log-frequency, a loudness, a flatness, an onset
# rate, a correlation) are centred on the reference median; shape blocks (mel shape, chroma, every
# spread and change) keep their natural zero — centring those cost same-album precision@5
# (0.622 uncentred vs 0.614 all centred vs 0.649 this way, equal block weights, measured below).
CENTRED_BLOCKS = {(group, "mean") for group in ("flatness", "spectral", "onset", "energy_db")} | {("tempo", "acf")}
# Weight of each (column group, statistic) block in the cosine; a block's dimensions share its
# weight (each is divided by sqrt(block size)), so the numbers compare blocks, not dimensions.
# Measured (benchmarks/quality.py material, 74 real recordings, 5 albums, chance 0.366; reference
# fitted on the same recordings, so these are in-sample): alone, the mel-shape mean reaches
# same-album precision@5 0.60; every other block 0.40-0.51 (chroma mean 0.40, flatness sigma 0.50,
# spectral change 0.51, tempo 0.46). All blocks at 1: 0.649; weights proportional to each block's
# precision above chance: 0.638 (fitted on one half of the recordings they did not transfer to the
# other half beyond noise: +0.011 / -0.022); mel mean at 1.5 / 2 / 3, others 1: 0.643 / 0.651 /
# 0.649. So: the one block that measurably stands out counts double; the rest are equal. Clipping
# deviations at Z_CLIP = 6 costs nothing here (0.651 at 8 and unclipped; 0.643 at 4). Leaving out
# the frames at the edges of silence (dsp_pooling.EDGE_FRAMES) then moved the shipped figure to 0.641
# (mel mean at 1 / 1.5 / 2.5: 0.638 / 0.643 / 0.646): differences this small are noise on 74 queries.
BLOCK_WEIGHTS: dict[tuple[str, str], float] = {
    (group, stat): 1.0 for group in COLUMNS for stat in STATS
} | {("tempo", "acf"): 1.0, ("mel", "mean"): 2.0}


def blocks() -> list[tuple[tuple[str, str], slice]]:
    """The raw vector's blocks in order: ``((group, stat), slice)``."""
    out, start = [], 0
    for stat in STATS:
        for group, columns in COLUMNS.items():
            size = columns.stop - columns.start
            out.append(((group, stat), slice(start + columns.start, start + columns.stop)))
        start += FRAME_COLUMNS
    out.append((("tempo", "acf"), slice(start, start + TEMPO_DIM)))
    return out


def centred_mask() -> np.ndarray:
    """Which raw dimensions the reference centres (``CENTRED_BLOCKS``)."""
    mask = np.zeros(RAW_DIMENSION, dtype=bool)
    for key, where in blocks():
        mask[where] = key in CENTRED_BLOCKS
    return mask


def raw_vector(window_features: list[np.ndarray]) -> np.ndarray:
    """The unweighted pooled vector ``(RAW_DIMENSION,)`` of one track's window frame features."""
    frames = np.concatenate(window_features, axis=0)
    stats = frame_statistics(frames)
    # Periodicity of the audible frames only: a gap of silence is no rhythm.
    keep = np.split(audible(frames[:, COLUMNS["energy_db"]][:, 0]), np.cumsum([len(w) for w in window_features])[:-1])
    onsets = [w[k, COLUMNS["onset"]][:, 0] for w, k in zip(window_features, keep, strict=True)]
    return np.concatenate([stats[s] for s in STATS] + [tempo_descriptor(onsets)]).astype(np.float32)


def weighted_vector(raw: np.ndarray, weights: dict[tuple[str, str], float] = BLOCK_WEIGHTS) -> np.ndarray:
    """Reference-standardise ``raw`` (one row or ``(N, RAW_DIMENSION)``), weight blocks, L2-normalise."""
    ref = reference()
    # Deviations from the reference are clipped at Z_CLIP spreads, so no single dimension of an
    # unusual input (a click track's onset spread scores 160) can outweigh all the others.
    deviation = np.clip((np.asarray(raw, dtype=np.float64) - ref.centre) / ref.scale, -Z_CLIP, Z_CLIP)
    standard = deviation + np.where(ref.centred, 0.0, ref.centre / ref.scale)
    for key, where in blocks():
        standard[..., where] *= weights.get(key, 0.0) / np.sqrt(where.stop - where.start)
    if standard.ndim == 1:
        return l2_normalise(standard)
    norms = np.linalg.norm(standard, axis=1, keepdims=True)
    return (standard / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class DspModel(EmbeddingModel):
    """Weight-free spectral descriptor; the default on machines without deep-model weights."""

    name = "dsp"
    sample_rate = SAMPLE_RATE
    window_seconds = WINDOW_SECONDS
    hop_seconds = WINDOW_SECONDS
    licence = "MIT (navembed's own code; no weights)"
    weights_repos = ()
    min_window_samples = N_FFT
    excerpts = EXCERPTS
    cpu_threads = 1  # small ops: one torch thread, the other cores decode (engine.run._model_threads)
    embeds_in_workers = True  # weight-free, ~1 s to build: decode worker processes embed too

    @property
    def dimension(self) -> int:
        return RAW_DIMENSION

    @property
    def variant(self) -> str:
        return f"v{VERSION}-sr{SAMPLE_RATE}-fft{N_FFT}-hop{HOP}"

    def _load(self) -> FrameFeatures:
        return FrameFeatures().to(self.device, torch.float32)

    def _windows(self, wave: np.ndarray) -> list[np.ndarray]:
        """Consecutive windows without overlap; the last one holds the remainder."""
        size = int(WINDOW_SECONDS * SAMPLE_RATE)
        if len(wave) <= size:
            return [wave]
        return [wave[start : start + size] for start in range(0, len(wave), size)]

    def _forward(self, model: Any, batch: torch.Tensor) -> list[np.ndarray]:
        frames = model(batch.float())  # (B, T, FRAME_COLUMNS)
        return [f.cpu().numpy() for f in frames]

    def _pool(self, window_features: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {"embedding": weighted_vector(raw_vector(window_features))}
