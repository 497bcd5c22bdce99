"""Temporal pooling of frame features into one track vector.

The original system's `enrich_embedding`: for features over time, concatenate
``[mean, robust sigma, mean of first differences]`` per dimension and L2-normalise.
Robust sigma is the inter-quartile range divided by 1.349 (the IQR of a unit normal),
so it equals the standard deviation for Gaussian data but ignores outliers.

A single frame has no spread and no change: sigma and delta-mean are defined as 0,
so the result is the normalised frame padded with zeros to ``3 * D``.
"""

import numpy as np

IQR_TO_SIGMA = 1.349
_EPS = 1e-12


def enrich(frames: np.ndarray) -> np.ndarray:
    """Pool ``frames`` of shape ``(T, D)`` into an L2-normalised ``(3 * D,)`` float32 vector."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] == 0 or frames.shape[1] == 0:
        raise ValueError(f"enrich expects a non-empty (T, D) array, got shape {frames.shape}")
    mean = frames.mean(axis=0)
    if frames.shape[0] == 1:
        sigma = np.zeros_like(mean)
        delta_mean = np.zeros_like(mean)
    else:
        q75, q25 = np.percentile(frames, [75.0, 25.0], axis=0)
        sigma = (q75 - q25) / IQR_TO_SIGMA
        delta_mean = np.diff(frames, axis=0).mean(axis=0)
    return l2_normalise(np.concatenate([mean, sigma, delta_mean]))


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """Return ``vector / ||vector||`` as float32; an all-zero vector stays zero."""
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > _EPS else vector).astype(np.float32)
