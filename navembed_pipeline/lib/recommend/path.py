"""Path mode: from track A to track B in N steps, each step a little nearer to B.

Per model, the points between A and B are normalised linear interpolations of their vectors
(``t = i / (N + 1)``). Step i takes the best-scoring allowed track near point i whose sonic
similarity to B is strictly above the previous track's, so the playlist moves monotonically
towards B; a step with no such track is left out rather than breaking the order. Tracks that
would overshoot the next point are taken only when nothing else moves forward. Negative
inputs and the playlist rules apply as in the other modes (diversity does not: the points
already spread the picks).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.errors import NoVectorsError
from navembed_pipeline.lib.recommend.fusion import Probe, Scores, fuse
from navembed_pipeline.lib.recommend.request import EMBEDDING_FIELD, RecommendRequest
from navembed_pipeline.lib.recommend.rules import Arrangement, Catalog, artist_key, eligible, track_table
from navembed_pipeline.lib.recommend.search import Search

CANDIDATES_PER_STEP = 64
SHORTLIST = 32  # best candidates per step that the walk considers
SEARCH_POINTS = 16


@dataclass(frozen=True)
class Stop:
    """One track of the path and the scores it was chosen by."""

    track_id: str
    scores: Scores
    index: int  # in ``scores``' candidates
    role: str  # start | pick | end


def path_stops(search: Search, request: RecommendRequest, *, catalog: Catalog,
               negatives: Sequence[Sequence[Probe]]) -> tuple[list[Stop], Mapping[str, Track]]:
    """A, the picks in order, B; and the library's details of every stop."""
    spec = request.path
    assert spec is not None  # validate() guarantees it in path mode
    ends = catalog([spec.start, spec.end])
    points = _points(search, spec.start, spec.end, spec.steps)
    picks, tracks = _walk(search, request, points, catalog=catalog, negatives=negatives, start=ends.get(spec.start))
    start = _endpoint(search, request, points[0], spec.start, negatives, "start")
    end = _endpoint(search, request, points[-1], spec.end, negatives, "end")
    return [start, *picks, end], {**tracks, **ends}


def _points(search: Search, start: str, end: str, steps: int) -> list[list[Probe]]:
    """Probes for t = 0, 1/(N+1), ..., 1 in every model that has both ends."""
    ends = {}
    for model in search.models:
        field = search.field(model)
        a, b = field.vectors_of(start), field.vectors_of(end)
        if a is not None and b is not None:
            ends[model] = (_unit(a.mean(axis=0)), _unit(b.mean(axis=0)))
    if not ends:
        raise NoVectorsError(f"no model among {', '.join(search.models)} has vectors for both {start!r} and "
                             f"{end!r}; embed both with one model first")
    fractions = np.linspace(0.0, 1.0, steps + 2)
    return [[Probe(m, EMBEDDING_FIELD, "path", f"step {i} of {steps + 1}", _unit((1 - t) * a + t * b)[None, :])
             for m, (a, b) in ends.items()] for i, t in enumerate(fractions)]


def _walk(search: Search, request: RecommendRequest, points: list[list[Probe]], *, catalog: Catalog,
          negatives: Sequence[Sequence[Probe]], start: Track | None) -> tuple[list[Stop], Mapping[str, Track]]:
    spec, rules = request.path, request.rules
    inner = points[1:-1]
    ids = _candidates(search, inner)
    steps = _step_scores(search, request, inner, ids, negatives)
    pool = eligible(_shortlist(steps), ids, rules, catalog=catalog,
                    blocked={spec.start, spec.end, *request.negative_tracks}, table=track_table(catalog))
    similarity_to = search.similarity_to([ids[i] for i in pool.positions])
    near_end = similarity_to(spec.end)
    arrangement = Arrangement(pool, ids, rules, similarity_to=similarity_to,
                              anchors=(spec.start, spec.end, *rules.previous),
                              last_artist=artist_key(start) if start else None)
    previous = search.pair_similarity(spec.start, spec.end)
    stops = []
    for scores, following in zip(steps, points[2:], strict=True):
        forward = arrangement.allowed() & (near_end > previous)
        # Prefer tracks that do not overshoot the next point, so later steps keep room to move.
        capped = forward & (near_end < _progress(search, following, spec.end))
        objective = np.where(capped if capped.any() else forward, scores.total[pool.positions], -np.inf)
        if not len(objective) or not np.isfinite(objective.max()):
            continue
        slot = int(np.argmax(objective))
        arrangement.choose(slot)
        previous = near_end[slot]
        position = int(pool.positions[slot])
        stops.append(Stop(ids[position], scores, position, "pick"))
    return stops, pool.details([s.track_id for s in stops], catalog)


def _candidates(search: Search, inner: list[list[Probe]]) -> list[str]:
    """Tracks near the points; neighbouring points share most, so at most ``SEARCH_POINTS`` are searched."""
    every = int(np.ceil(len(inner) / SEARCH_POINTS))
    return search.candidates([p for step in inner[::every] for p in step], CANDIDATES_PER_STEP * every)


def _step_scores(search: Search, request: RecommendRequest, inner: list[list[Probe]], ids: list[str],
                 negatives: Sequence[Sequence[Probe]]) -> list[Scores]:
    """Every step's fused scores over ``ids`` (all points compared in one product per field)."""
    terms = search.terms([p for step in inner for p in step], ids, fusion=request.fusion, rrf_k=request.rrf_k)
    groups = [search.terms(g, ids, fusion=request.fusion, rrf_k=request.rrf_k) for g in negatives]
    bounds = np.cumsum([0, *(len(step) for step in inner)])
    return [fuse(terms[a:b], groups, search.weights, strength=request.negative_strength)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _shortlist(steps: list[Scores]) -> list[int]:
    """The best ``SHORTLIST`` candidates of every step, best of all first."""
    table = np.stack([s.total for s in steps])
    top = min(SHORTLIST, table.shape[1])
    chosen = np.unique(np.argpartition(-table, top - 1, axis=1)[:, :top]) if top else np.zeros(0, np.int64)
    best = table.max(axis=0)
    return [int(i) for i in chosen[np.argsort(-best[chosen], kind="stable")] if np.isfinite(best[i])]


def _progress(search: Search, point: list[Probe], end: str) -> float:
    """How near a path point is to B, measured like a track's nearness to B."""
    total = sum(search.weights[p.model] * float(np.max(search.field(p.model).vectors_of(end) @ p.vectors[0]))
                for p in point)
    return total / sum(search.weights[p.model] for p in point)


def _endpoint(search: Search, request: RecommendRequest, point: list[Probe], track_id: str,
              negatives: Sequence[Sequence[Probe]], role: str) -> Stop:
    ids = [track_id]
    terms = search.terms(point, ids, fusion=request.fusion, rrf_k=request.rrf_k)
    groups = [search.terms(g, ids, fusion=request.fusion, rrf_k=request.rrf_k) for g in negatives]
    return Stop(track_id, fuse(terms, groups, search.weights, strength=request.negative_strength), 0, role)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)
