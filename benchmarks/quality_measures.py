"""The measures the quality benchmarks report: ROC AUC and same-album precision@k."""

import numpy as np

TOP_K = 5


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(positive score > negative score), ties counted half (Mann-Whitney)."""
    scores = np.concatenate([positives, negatives])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks of ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def album_shares(scores: np.ndarray, albums: list[str] | np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per row: the share of its ``k`` best other items (by ``scores``, higher = nearer) from its album."""
    shares = []
    for i, row in enumerate(np.asarray(scores)):
        order = [j for j in np.argsort(-row, kind="stable") if j != i][:k]
        shares.append(np.mean([albums[j] == albums[i] for j in order]))
    return np.asarray(shares)


def precision_at_k(scores: np.ndarray, albums: list[str] | np.ndarray, k: int = TOP_K) -> float:
    """Same-album precision@k: the mean of ``album_shares``."""
    return float(album_shares(scores, albums, k).mean())


def paired_difference(a: np.ndarray, b: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` (per-query values of two methods on the same queries) and its 95 % bootstrap
    interval (queries resampled with replacement): ``(mean, low, high)``."""
    differences = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), (resamples, len(differences)))].mean(axis=1)
    return float(differences.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def cosine_precision_at_k(rows: np.ndarray, albums: list[str] | np.ndarray, k: int = TOP_K) -> float:
    """``precision_at_k`` of the cosine between ``rows`` (normalised here)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = rows / np.where(norms > 0, norms, 1.0)
    return precision_at_k(unit @ unit.T, albums, k)
