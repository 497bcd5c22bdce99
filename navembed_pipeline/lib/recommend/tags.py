"""MusiCNN's tags as data: each track's 50 tag scores, its top tags, and the library's tag distribution.

The ``musicnn`` collection stores, beside its ``embedding``, a ``tags`` vector: the mean taggram over
the track's 3-s patches, raw sigmoid scores 0..1 in the checkpoint's tag order
(the models domain's ``tag_names(variant)`` names them; callers pass the names in). ``TagScores`` is the in-process copy the recommender
reads (one row per track: the mean over a CUE track's segments); the functions below turn scores
into what people are shown.
"""

import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from navembed_pipeline.lib.recommend.request import TagScore
from navembed_pipeline.lib.recommend.vectors import FieldVectors

TAGS_MODEL = "musicnn"
TAGS_FIELD = "tags"
TEXT_MODEL = "musicnn-tags"  # what an answer calls the tag path of text search
TOP_TAGS = 5
DISTRIBUTION_TOP = 3
WEIGHTED_KEPT = 64  # weight vectors whose per-track scores a TagScores remembers  # a track counts for each of its 3 strongest tags in the library's distribution


def top_tags(scores: np.ndarray, names: Sequence[str], k: int = TOP_TAGS) -> tuple[TagScore, ...]:
    """The ``k`` strongest tags of one track's scores (``(tags,)`` or ``(segments, tags)``: averaged)."""
    scores = np.asarray(scores, dtype=np.float64)
    mean = scores.reshape(-1, scores.shape[-1]).mean(axis=0)
    if mean.shape[0] != len(names):
        raise ValueError(f"{mean.shape[0]} tag scores but {len(names)} tag names")
    order = np.argsort(-mean, kind="stable")[:k]
    return tuple(TagScore(names[i], round(float(mean[i]), 4)) for i in order)


def tag_distribution(vectors: Iterable[np.ndarray], names: Sequence[str],
                     top: int = DISTRIBUTION_TOP) -> dict[str, int]:
    """How many tracks have each tag among their ``top`` strongest, most frequent first (zeros left out)."""
    counts: Counter[str] = Counter()
    for scores in vectors:
        counts.update(t.tag for t in top_tags(scores, names, top))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def distribution_markdown(counts: dict[str, int], tracks: int) -> str:
    """The distribution as a markdown table (what the Dagster UI shows)."""
    lines = [f"| tag | tracks with it in their top {DISTRIBUTION_TOP} | share |", "|---|---|---|"]
    lines += [f"| {tag} | {n} | {n / max(tracks, 1):.0%} |" for tag, n in counts.items()]
    return "\n".join(lines)


class TagScores:
    """Every track's raw tag scores, rebuilt from the (normalised) rows of the ``tags`` field."""

    def __init__(self, vectors: FieldVectors) -> None:
        raw = vectors.rows * vectors.norms[:, None]
        self.track_ids = vectors.track_ids
        self.track_index = vectors.track_index
        self._weighted: dict[bytes, np.ndarray] = {}
        if len(raw) == len(vectors):  # one row per track (no CUE images): a reordering
            self.scores = np.empty_like(raw)
            self.scores[vectors.row_track] = raw
        else:
            sums = np.zeros((len(vectors), vectors.dimension), dtype=np.float64)
            np.add.at(sums, vectors.row_track, raw)
            counts = np.bincount(vectors.row_track, minlength=len(vectors)).astype(np.float64)
            self.scores = (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
        self._columns = np.ascontiguousarray(self.scores.T)  # (tags, tracks): one tag's scores side by side

    def __len__(self) -> int:
        return len(self.track_ids)

    def of(self, track_id: str) -> np.ndarray | None:
        """The track's tag scores, None if it has none."""
        index = self.track_index.get(track_id)
        return None if index is None else self.scores[index]

    def weighted(self, weights: np.ndarray) -> np.ndarray:
        """Per track, ``scores @ weights`` (with 1/n weights: the mean score of n tags), remembered for
        the last few weight vectors (a request asks for the same ones while it widens its search)."""
        weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        key = weights.tobytes()
        found = self._weighted.get(key)
        if found is None:
            used = np.flatnonzero(weights)  # a prompt names a few tags: read only their columns
            found = weights[used] @ self._columns[used]
            with _LOCK:
                if len(self._weighted) >= WEIGHTED_KEPT:
                    self._weighted.pop(next(iter(self._weighted)))
                self._weighted[key] = found
        return found

    def top(self, weights: np.ndarray, k: int) -> list[str]:
        """The ``k`` tracks with the highest ``weighted`` scores (in no particular order)."""
        score = self.weighted(weights)
        if k >= len(score):
            return list(self.track_ids)
        return [self.track_ids[i] for i in np.argpartition(-score, k - 1)[:k]]

    def of_many(self, track_ids: Sequence[str], weights: np.ndarray) -> np.ndarray:
        """``weighted`` for the tracks ``track_ids``; NaN where a track has no tags."""
        index = np.fromiter((self.track_index.get(t, -1) for t in track_ids), dtype=np.int64, count=len(track_ids))
        out = np.full(len(track_ids), np.nan)
        present = index >= 0
        out[present] = self.weighted(weights)[index[present]]
        return out


_BUILT: "weakref.WeakKeyDictionary[FieldVectors, TagScores]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def tag_scores(vectors: FieldVectors) -> TagScores:
    """The ``TagScores`` of one loaded copy of the field, built once per copy."""
    with _LOCK:
        found = _BUILT.get(vectors)
    if found is None:
        found = TagScores(vectors)
        with _LOCK:
            _BUILT[vectors] = found
    return found


def as_json(tags: Sequence[TagScore]) -> list[dict[str, object]]:
    """``[{"tag": ..., "score": ...}]``, what the API and the upload socket answer."""
    return [{"tag": t.tag, "score": t.score} for t in tags]
