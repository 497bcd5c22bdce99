"""What a recommendation request asks for and what it answers: plain frozen records, no web types.

A request names its positive inputs (seed tracks, text prompts, vectors of an uploaded file), its
negative inputs (prompts and tracks to steer away from), the models to search with their weights,
how to fuse them, and the playlist rules. The answer lists tracks with a ``why`` whose values add
up to each track's score.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from navembed_pipeline.lib.recommend.errors import InvalidRequestError

Mode = Literal["similar", "text", "mixed", "path"]
Fusion = Literal["weighted", "rrf"]
MODES: tuple[str, ...] = ("similar", "text", "mixed", "path")
FUSIONS: tuple[str, ...] = ("weighted", "rrf")
EMBEDDING_FIELD = "embedding"
MAX_SIZE = 500
MAX_STEPS = 200
DEFAULT_RRF_K = 60


@dataclass(frozen=True)
class VectorSeed:
    """Vectors computed outside the store (e.g. an uploaded file), used like a seed track."""

    label: str
    model: str
    vectors: np.ndarray  # (segments, dim) or (dim,)
    field: str = EMBEDDING_FIELD


@dataclass(frozen=True)
class PlaylistRules:
    """Which tracks may appear and in what arrangement. Seeds never appear in their own playlist."""

    size: int = 25
    exclude_tracks: frozenset[str] = frozenset()
    exclude_artists: frozenset[str] = frozenset()  # matched case-insensitively to artist or album artist
    exclude_albums: frozenset[str] = frozenset()  # album titles, case-insensitive
    exclude_libraries: frozenset[int] = frozenset()
    previous: tuple[str, ...] = ()  # recently played: never repeated, nor their duplicates
    max_per_artist: int | None = None
    no_consecutive_artist: bool = False
    collapse_duplicates: bool = True  # never two copies of one recording (``identity.RecordingIdentity``)
    min_duration: float | None = None  # seconds
    max_duration: float | None = None
    diversity: float = 0.0  # maximal marginal relevance: 0 = by score only, 1 = as varied as possible


@dataclass(frozen=True)
class PathSpec:
    """From ``start`` to ``end`` through ``steps`` tracks in between."""

    start: str
    end: str
    steps: int = 8


@dataclass(frozen=True)
class RecommendRequest:
    """One playlist request. ``models`` empty = every default model that has vectors."""

    mode: Mode
    seeds: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    negative_prompts: tuple[str, ...] = ()
    negative_tracks: tuple[str, ...] = ()
    seed_vectors: tuple[VectorSeed, ...] = ()
    models: tuple[str, ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)  # missing models weigh 1
    fusion: Fusion = "weighted"
    rrf_k: int = DEFAULT_RRF_K
    negative_strength: float = 1.0
    rules: PlaylistRules = PlaylistRules()
    path: PathSpec | None = None


@dataclass(frozen=True)
class Contribution:
    """What one positive input added to a track's score in one model.

    ``similarity`` is the raw cosine (best segment pair); ``normalized`` is it made comparable
    across inputs and models (a z-score against the library, or ``1/(k+rank)`` under RRF);
    ``value = weight * normalized`` is what it adds to the score. ``sonic_similarity`` is the
    cosine calibrated on the library (0 = as alike as a typical unrelated pair, 1 = the same
    recording; ``lib/recommend/calibration.py``); None for text prompts, whose cosines are not track-to-track.
    """

    model: str
    field: str
    source: str  # seed | prompt | vector | path
    ref: str  # track id, prompt text, vector label or path step
    similarity: float
    normalized: float
    weight: float
    value: float
    rank: int | None = None
    sonic_similarity: float | None = None


@dataclass(frozen=True)
class Penalty:
    """The negative input a track is closest to, and what that cost it (``value`` <= 0)."""

    source: str  # negative_prompt | negative_track
    ref: str
    similarity: Mapping[str, float]  # raw cosine per model
    normalized: float  # the weighted mix of per-model normalised similarities
    strength: float
    value: float


@dataclass(frozen=True)
class TagScore:
    """One MusiCNN tag of a track and its score (0..1: the model's mean probability over the track)."""

    tag: str
    score: float


@dataclass(frozen=True)
class Explanation:
    """``sum(c.value for c in contributions) + penalty.value`` is the score, exactly (math.fsum).

    ``tags``: the track's strongest MusiCNN tags, where the library has them (shown, not scored)."""

    contributions: tuple[Contribution, ...]
    penalty: Penalty | None = None
    tags: tuple[TagScore, ...] = ()

    def values(self) -> list[float]:
        return [c.value for c in self.contributions] + ([self.penalty.value] if self.penalty else [])


@dataclass(frozen=True)
class RecommendedTrack:
    id: str
    title: str
    artist: str
    album: str
    score: float
    why: Explanation
    role: str = "pick"  # pick | start | end


@dataclass(frozen=True)
class Playlist:
    mode: Mode
    models: tuple[str, ...]
    weights: Mapping[str, float]  # as used, summing to 1
    fusion: Fusion
    tracks: tuple[RecommendedTrack, ...]
    notes: tuple[str, ...] = ()  # e.g. a seed some model has not embedded yet
    text_model: str | None = None  # how prompts were read: "muq" (MuLan) or "musicnn-tags"; None: no prompts


def validate(request: RecommendRequest) -> None:
    """Raise InvalidRequestError if the request lacks what its mode needs or has an out-of-range value."""
    problems = _mode_problems(request) + _value_problems(request)
    if problems:
        raise InvalidRequestError("; ".join(problems))


def _mode_problems(request: RecommendRequest) -> list[str]:
    has_seeds = bool(request.seeds or request.seed_vectors)
    needs = {
        "similar": [] if has_seeds else ["'similar' needs at least one seed track"],
        "text": [] if request.prompts else ["'text' needs at least one prompt"],
        "mixed": ([] if has_seeds else ["'mixed' needs at least one seed track"])
        + ([] if request.prompts else ["'mixed' needs at least one prompt"]),
        "path": [] if request.path else ["'path' needs a start and an end track"],
    }
    if request.mode not in MODES:
        return [f"unknown mode {request.mode!r}; choose one of {', '.join(MODES)}"]
    return needs[request.mode]


def _value_problems(request: RecommendRequest) -> list[str]:
    rules = request.rules
    checks = [
        (request.fusion in FUSIONS, f"fusion must be one of {', '.join(FUSIONS)}"),
        (1 <= rules.size <= MAX_SIZE, f"size must be 1..{MAX_SIZE}"),
        (0.0 <= rules.diversity <= 1.0, "diversity must be within 0..1"),
        (rules.max_per_artist is None or rules.max_per_artist >= 1, "max_per_artist must be at least 1"),
        (math.isfinite(request.negative_strength) and request.negative_strength >= 0.0,
         "negative_strength must be a finite number, 0 or more"),
        (request.rrf_k >= 1, "rrf_k must be at least 1"),
        *_weight_checks(request),
        (not [p for p in (*request.prompts, *request.negative_prompts) if not p.strip()], "prompts must not be blank"),
        (request.path is None or 1 <= request.path.steps <= MAX_STEPS, f"steps must be 1..{MAX_STEPS}"),
        (request.path is None or request.path.start != request.path.end, "a path needs two different tracks"),
    ]
    low, high = rules.min_duration, rules.max_duration
    checks.append((all(v is None or math.isfinite(v) for v in (low, high)), "durations must be finite numbers"))
    checks.append((low is None or high is None or low <= high, "min_duration must not exceed max_duration"))
    return [message for ok, message in checks if not ok]


def _weight_checks(request: RecommendRequest) -> list[tuple[bool, str]]:
    """Weights are finite and not negative (all-zero weights are the engine's to refuse)."""
    bad = [f"{model}: {weight}" for model, weight in request.weights.items()
           if not (math.isfinite(weight) and weight >= 0.0)]
    return [(not bad, f"weights must be finite numbers, 0 or more (got {', '.join(bad[:4])})")]
