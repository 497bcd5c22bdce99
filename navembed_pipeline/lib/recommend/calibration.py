"""Library-calibrated vectors and similarity numbers, per (model, field).

Raw cosines mean different things in different models: between two *unrelated* real songs the
``dsp`` v1 vector scores 0.95-0.986, while a re-encode of one song scores >= 0.992. Two tools fix
that from the library's own distribution:

- ``LibraryStats``: the library's mean and per-dimension spread. ``apply`` standardises vectors
  (``(v - mean) / scale``) and L2-normalises the rows, so every dimension counts by how much it
  varies *within this library* and the shared "every song looks like this" direction is removed.
- ``ScoreCalibration``: the distribution of cosines between random pairs of different tracks.
  ``similarity`` maps a cosine to 0..1 for people and clients:

      similarity = (closeness + rarity) / 2
      closeness  = clip((cos - median) / (1 - median), 0, 1)   # 0 = a typical pair, 1 = identical
      rarity     = clip(2 * F(cos) - 1, 0, 1)                  # F = share of random pairs below cos

  A typical unrelated pair (the median) scores 0, the same recording (cos 1) scores 1, random pairs
  average about 0.2-0.3, and the nearest neighbours of a track (rarer than ~all random pairs, but
  not identical) land between, ordered by how close they are. The map is monotonic in the cosine,
  so it never changes a ranking; it only gives the number a meaning.

Both persist as JSON (``to_json`` / ``from_json``; ``save_calibration`` / ``load_calibration`` under
a directory) so they survive restarts and can be inspected. No Dagster, no web imports.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from navembed_pipeline.lib.errors import NavembedError

DEFAULT_PAIRS = 20_000
QUANTILES = 201  # stored points of the random-pair cosine distribution (0, 0.5, ..., 100 %)
SCALE_FLOOR = 0.05  # a dimension's scale is at least this share of the typical dimension's spread
FORMAT = 1
_EPS = 1e-12


class CalibrationError(NavembedError):
    """Calibration data is missing, malformed, or does not fit the vectors it is applied to."""


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > _EPS, norms, 1.0)


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    array = array.reshape(1, -1) if array.ndim == 1 else array
    if array.ndim != 2:
        raise CalibrationError(f"expected vectors (rows, dim), got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class LibraryStats:
    """Mean and per-dimension scale of one vector field over the library (rows L2-normalised first)."""

    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,), > 0
    count: int  # rows the statistics were fitted on

    @classmethod
    def fit(cls, vectors: np.ndarray) -> "LibraryStats":
        """Statistics of ``vectors`` (rows, dim). Near-constant dimensions get a floored scale
        (``SCALE_FLOOR`` x the root-mean-square spread), so noise in a dead dimension is not blown
        up to the weight of a live one."""
        rows = _unit_rows(_as_matrix(vectors))
        if len(rows) == 0:
            raise CalibrationError("cannot fit library statistics on no vectors")
        mean = rows.mean(axis=0)
        spread = rows.std(axis=0)
        typical = float(np.sqrt(np.mean(spread ** 2)))
        floor = max(SCALE_FLOOR * typical, _EPS)
        return cls(mean=mean, scale=np.maximum(spread, floor), count=len(rows))

    @property
    def dimension(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Rows L2-normalised, standardised by the library's statistics, L2-normalised again (float32)."""
        rows = _unit_rows(_as_matrix(vectors))
        if rows.shape[1] != self.dimension:
            raise CalibrationError(f"vectors have {rows.shape[1]} dimensions, the statistics {self.dimension}")
        return _unit_rows((rows - self.mean) / self.scale).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LibraryStats":
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
            count = int(data["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"malformed library statistics: {exc}") from exc
        if mean.ndim != 1 or mean.shape != scale.shape or not np.all(scale > 0):
            raise CalibrationError("malformed library statistics: mean and scale must be equal-length, scale > 0")
        return cls(mean=mean, scale=scale, count=count)


@dataclass(frozen=True, eq=False)
class ScoreCalibration:
    """The random-pair cosine distribution of one field, and the 0..1 similarity built on it."""

    quantiles: np.ndarray  # (QUANTILES,) cosines at 0 %, 0.5 %, ..., 100 % of random pairs, ascending
    pairs: int  # random pairs the quantiles were measured on

    @classmethod
    def fit(cls, vectors: np.ndarray, *, pairs: int = DEFAULT_PAIRS, seed: int = 0,
            groups: np.ndarray | None = None) -> "ScoreCalibration":
        """Cosines of up to ``pairs`` random pairs of different rows of ``vectors`` (as they will be
        compared: apply ``LibraryStats`` first if searches use standardised vectors). ``groups``
        (one label per row, e.g. the track of each CUE segment) keeps pairs within one group out."""
        rows = _unit_rows(_as_matrix(vectors))
        if len(rows) < 2:
            raise CalibrationError("need at least two vectors to calibrate similarity")
        rng = np.random.default_rng(seed)
        first = rng.integers(0, len(rows), size=pairs)
        second = (first + rng.integers(1, len(rows), size=pairs)) % len(rows)  # never the same row
        if groups is not None:
            labels = np.asarray(groups)
            keep = labels[first] != labels[second]
            first, second = first[keep], second[keep]
        if len(first) == 0:
            raise CalibrationError("every sampled pair was within one group: nothing to calibrate on")
        cosines = np.einsum("ij,ij->i", rows[first], rows[second])
        return cls(quantiles=np.quantile(cosines, np.linspace(0.0, 1.0, QUANTILES)), pairs=int(len(first)))

    @property
    def median(self) -> float:
        return float(self.quantiles[QUANTILES // 2])

    def percentile(self, cosines: np.ndarray | float) -> np.ndarray:
        """Share of random pairs whose cosine is below each of ``cosines`` (0..1; NaN stays NaN)."""
        values = np.asarray(cosines, dtype=np.float64)
        ranks = np.interp(values, self.quantiles, np.linspace(0.0, 1.0, QUANTILES), left=0.0, right=1.0)
        return np.where(np.isnan(values), np.nan, ranks)

    def similarity(self, cosines: np.ndarray | float) -> np.ndarray:
        """0..1: ~0 for a typical unrelated pair, 1 for the same recording (see the module docstring)."""
        values = np.asarray(cosines, dtype=np.float64)
        median = self.median
        closeness = np.clip((values - median) / max(1.0 - median, _EPS), 0.0, 1.0)
        rarity = np.clip(2.0 * self.percentile(values) - 1.0, 0.0, 1.0)
        out = (closeness + rarity) / 2.0
        return np.where(values >= 1.0 - 1e-6, 1.0, out)

    def to_json(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "quantiles": self.quantiles.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ScoreCalibration":
        try:
            quantiles = np.asarray(data["quantiles"], dtype=np.float64)
            pairs = int(data["pairs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"malformed score calibration: {exc}") from exc
        if quantiles.shape != (QUANTILES,) or np.any(np.diff(quantiles) < 0):
            raise CalibrationError(f"malformed score calibration: need {QUANTILES} ascending quantiles")
        return cls(quantiles=quantiles, pairs=pairs)


@dataclass(frozen=True, eq=False)
class FieldCalibration:
    """What one (model, field) was calibrated to: its statistics and its score map."""

    model: str
    field: str
    stats: LibraryStats
    scores: ScoreCalibration  # over cosines in the space searches use (see ``standardised``)
    standardised: bool = False  # True: searches compare ``stats.apply``-ed vectors; False: the stored ones
    signature: str = ""  # what the vectors were (e.g. collection and row count), for staleness checks

    @classmethod
    def fit(cls, model: str, field: str, vectors: np.ndarray, *, groups: np.ndarray | None = None,
            standardise: bool = False, pairs: int = DEFAULT_PAIRS, seed: int = 0,
            signature: str = "") -> "FieldCalibration":
        """Statistics of ``vectors`` and the score map of the space searches compare them in.

        Searches compare the stored vectors (``standardise=False``): on real recordings ranking by
        standardised ``dsp`` v1 vectors lost same-album precision@5 (0.645 → 0.632, README)."""
        stats = LibraryStats.fit(vectors)
        compared = stats.apply(vectors) if standardise else vectors
        scores = ScoreCalibration.fit(compared, pairs=pairs, seed=seed, groups=groups)
        return cls(model, field, stats, scores, standardise, signature)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "field": self.field, "signature": self.signature,
                "standardised": self.standardised, "stats": self.stats.to_json(), "scores": self.scores.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FieldCalibration":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CalibrationError(f"unknown calibration format (expected format {FORMAT})")
        try:
            return cls(str(data["model"]), str(data["field"]), LibraryStats.from_json(data["stats"]),
                       ScoreCalibration.from_json(data["scores"]), bool(data.get("standardised", False)),
                       str(data.get("signature", "")))
        except KeyError as exc:
            raise CalibrationError(f"malformed calibration: missing {exc}") from exc


def calibration_path(directory: Path, model: str, field: str) -> Path:
    return Path(directory) / f"{model}.{field}.json"


def save_calibration(directory: Path, calibration: FieldCalibration) -> Path:
    """Write ``<directory>/<model>.<field>.json`` atomically (a reader never sees half a file)."""
    path = calibration_path(directory, calibration.model, calibration.field)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(calibration.to_json()))
    partial.replace(path)
    return path


def load_calibration(directory: Path, model: str, field: str) -> FieldCalibration | None:
    """The saved calibration of (model, field), or None if there is none or it cannot be read."""
    path = calibration_path(directory, model, field)
    try:
        return FieldCalibration.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, CalibrationError):
        return None
