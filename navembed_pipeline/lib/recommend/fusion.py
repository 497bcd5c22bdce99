"""Fusing per-model similarities into one score, minus a penalty for nearness to negative inputs.

Every input (a seed track, a prompt, a path point) searched in one model's field is a *term*:
its raw cosine to each candidate, made comparable across inputs and models by

- ``weighted``: a z-score against the library (mean and deviation of that input's cosine over a
  fixed sample), so "2.0" means two deviations nearer than a typical track, in any model;
- ``rrf``: reciprocal rank ``1/(k + rank)`` among the candidates.

A track's score is ``sum over models of w_m * mean(its terms)`` with the request's weights
rescaled over the models that have vectors for that track (a model that has not embedded a track
yet does not vote on it). Each negative input is mixed the same way over models; the nearest one
costs ``strength * max(0, mix)``. Every number that enters the score is kept for the ``why``.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.recommend.request import Contribution, Explanation, Penalty


@dataclass(frozen=True)
class Probe:
    """One input's vectors (segments, dim) searched in one model's field."""

    model: str
    field: str
    source: str  # seed | prompt | vector | path | negative_track | negative_prompt
    ref: str
    vectors: np.ndarray


@dataclass(frozen=True)
class Term:
    """A probe's similarity to every candidate; NaN where the candidate has no vectors there."""

    probe: Probe
    similarity: np.ndarray
    normalized: np.ndarray
    rank: np.ndarray | None = None
    calibrated: np.ndarray | None = None  # 0..1 by the library's calibration; None for text probes


def make_term(probe: Probe, similarity: np.ndarray, baseline: tuple[float, float], *,
              fusion: str, rrf_k: int, calibrated: np.ndarray | None = None) -> Term:
    """Normalise raw cosines: z-scores against ``baseline`` (mean, sd), or reciprocal ranks."""
    if fusion == "weighted":
        mean, deviation = baseline
        return Term(probe, similarity, (similarity - mean) / deviation, calibrated=calibrated)
    rank = np.full(len(similarity), np.nan)
    present = np.flatnonzero(~np.isnan(similarity))
    rank[present[np.argsort(-similarity[present], kind="stable")]] = np.arange(1, present.size + 1)
    return Term(probe, similarity, 1.0 / (rrf_k + rank), rank, calibrated)


@dataclass(frozen=True)
class Scores:
    """Fused scores of the candidates (``-inf`` where no model has vectors) and their parts."""

    total: np.ndarray
    terms: tuple[Term, ...]
    weights: np.ndarray  # (terms, candidates): what each term's normalised value is multiplied by
    groups: tuple[tuple[Term, ...], ...]  # negative inputs, one term per model
    mixes: np.ndarray  # (groups, candidates): each negative's weighted normalised similarity
    strength: float

    def explain(self, index: int) -> tuple[float, Explanation]:
        """Candidate ``index``'s score and its explanation; the score is math.fsum of its values."""
        parts = tuple(
            Contribution(model=t.probe.model, field=t.probe.field, source=t.probe.source, ref=t.probe.ref,
                         similarity=float(t.similarity[index]), normalized=float(t.normalized[index]),
                         weight=float(w[index]), value=float(w[index] * t.normalized[index]),
                         rank=None if t.rank is None else int(t.rank[index]),
                         sonic_similarity=None if t.calibrated is None else float(t.calibrated[index]))
            for t, w in zip(self.terms, self.weights, strict=True) if w[index] > 0
        )
        why = Explanation(parts, self._penalty(index))
        return math.fsum(why.values()), why

    def _penalty(self, index: int) -> Penalty | None:
        if not self.groups or self.strength == 0:
            return None
        column = np.nan_to_num(self.mixes[:, index], nan=-np.inf)
        nearest = int(np.argmax(column))
        if not column[nearest] > 0:
            return None
        group = self.groups[nearest]
        return Penalty(source=group[0].probe.source, ref=group[0].probe.ref,
                       similarity={t.probe.model: float(t.similarity[index]) for t in group
                                   if not np.isnan(t.similarity[index])},
                       normalized=float(column[nearest]), strength=self.strength,
                       value=float(-self.strength * column[nearest]))


def fuse(terms: Sequence[Term], groups: Sequence[Sequence[Term]], weights: Mapping[str, float], *,
         strength: float) -> Scores:
    """Scores of the candidates the terms were computed over (see the module docstring)."""
    size = len(terms[0].similarity) if terms else 0
    term_weights = _term_weights(terms, weights, size)
    values = np.nan_to_num(np.stack([t.normalized for t in terms])) if terms else np.zeros((0, size))
    total = (term_weights * values).sum(axis=0)
    total[term_weights.sum(axis=0) == 0] = -np.inf
    mixes = np.stack([_mix(group, weights) for group in groups]) if groups else np.zeros((0, size))
    if groups and strength > 0:
        nearest = np.nan_to_num(mixes, nan=-np.inf).max(axis=0)
        total = total - strength * np.maximum(nearest, 0.0)
    return Scores(total, tuple(terms), term_weights, tuple(tuple(g) for g in groups), mixes, strength)


def _term_weights(terms: Sequence[Term], weights: Mapping[str, float], size: int) -> np.ndarray:
    """Per candidate: w_m / (sum of w over models present) / (terms of m present)."""
    present = np.stack([~np.isnan(t.similarity) for t in terms]) if terms else np.zeros((0, size), bool)
    models = [t.probe.model for t in terms]
    out = np.zeros((len(terms), size))
    per_model = {m: present[[i for i, n in enumerate(models) if n == m]].sum(axis=0) for m in set(models)}
    denominator = sum(weights.get(m, 1.0) * (count > 0) for m, count in per_model.items())
    safe = np.where(np.asarray(denominator) > 0, denominator, 1.0)
    for i, model in enumerate(models):
        count = np.maximum(per_model[model], 1)
        out[i] = np.where(present[i], weights.get(model, 1.0) / safe / count, 0.0)
    return out


def _mix(group: Sequence[Term], weights: Mapping[str, float]) -> np.ndarray:
    """One negative input's normalised similarity, mixed over the models that have the candidate."""
    stacked = np.stack([t.normalized for t in group])
    w = np.asarray([weights.get(t.probe.model, 1.0) for t in group])[:, None] * ~np.isnan(stacked)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * np.nan_to_num(stacked)).sum(axis=0) / total, np.nan)
