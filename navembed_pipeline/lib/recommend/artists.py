"""Artists as sound: one vector per Navidrome artist (per model), similar artists, representative songs.

An artist's vector in a model is the normalised mean of its tracks' vectors (each track's segments
averaged first), so an artist with many tracks is the centre of its sound. Two artists are as
alike as their vectors' cosine, mixed over models by weight. For a pair (A, B) the representative
songs are A's tracks nearest B's centre and B's tracks nearest A's centre: the songs through which
the two artists meet, which is what artist radio interleaves.

Artists are keyed by Navidrome's ``media_file.artist_id``; only tracks with vectors count.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.vectors import FieldVectors

REPRESENTATIVES = 5  # songs per side of a component match
CENTRE_BLOCK = 65_536  # member tracks summed at a time (``ArtistIndex._centres_of``)
_EPS = 1e-12


@dataclass(frozen=True)
class Artist:
    id: str
    name: str
    track_ids: tuple[str, ...]  # tracks with vectors in at least one model


@dataclass(frozen=True)
class ArtistMatch:
    """A similar artist and the songs through which it meets the asked-for one."""

    artist: Artist
    similarity: float  # cosine of the artists' vectors, mixed over models
    own_songs: tuple[str, ...]  # the asked-for artist's tracks nearest the other's centre
    their_songs: tuple[str, ...]  # the other artist's tracks nearest the asked-for artist's centre


class ArtistIndex:
    """Artist vectors of the models in ``fields`` (weights by model), built once from the library's tracks."""

    def __init__(self, tracks: Iterable[Track], fields: Mapping[str, FieldVectors],
                 weights: Mapping[str, float]) -> None:
        self.fields = dict(fields)
        self.weights = {m: float(weights.get(m, 1.0)) for m in self.fields}
        members: dict[str, list[str]] = defaultdict(list)
        names: dict[str, str] = {}
        listed = [(t.id, t.artist_id, t.artist) for t in tracks if t.artist_id]
        ids = [t[0] for t in listed]
        analysed = np.zeros(len(ids), dtype=bool)  # with vectors in at least one model
        for vectors in self.fields.values():
            analysed |= vectors.local_indices(ids) >= 0
        for (track_id, artist_id, name), keep in zip(listed, analysed.tolist(), strict=True):
            if keep:
                members[artist_id].append(track_id)
                names.setdefault(artist_id, name)
        self.artists = {a: Artist(a, names[a], tuple(sorted(ids))) for a, ids in sorted(members.items())}
        self._order = list(self.artists)
        self._position = {a: i for i, a in enumerate(self._order)}
        self._by_name = {a.name.strip().casefold(): a for a in self.artists.values()}
        self._centres = {m: self._centres_of(f) for m, f in self.fields.items()}
        self._present = {m: np.any(c != 0, axis=1) for m, c in self._centres.items()}  # artists with vectors

    def __len__(self) -> int:
        return len(self.artists)

    def find(self, key: str) -> Artist | None:
        """The artist with Navidrome id ``key``, else the one named ``key`` (case-insensitive)."""
        return self.artists.get(key) or self._by_name.get(key.strip().casefold())

    def similar(self, artist: Artist, count: int, *, representatives: int = REPRESENTATIVES) -> list[ArtistMatch]:
        """Up to ``count`` other artists, most alike first, with their representative songs."""
        if count <= 0 or len(self._order) < 2:
            return []
        index = self._position[artist.id]
        scores = self._alike(index)
        scores[index] = -np.inf
        ranked = [i for i in _top(scores, count).tolist() if np.isfinite(scores[i])]
        return [self._match(index, i, float(scores[i]), representatives) for i in ranked]

    def _match(self, own: int, other: int, score: float, count: int) -> ArtistMatch:
        first, second = self.artists[self._order[own]], self.artists[self._order[other]]
        return ArtistMatch(second, score, self._nearest(first, other, count), self._nearest(second, own, count))

    def _nearest(self, artist: Artist, towards: int, count: int) -> tuple[str, ...]:
        """``artist``'s tracks nearest the centre of artist number ``towards``."""
        total = np.zeros(len(artist.track_ids))
        weight = np.zeros(len(artist.track_ids))
        for model, field in self.fields.items():
            centre = self._centres[model][towards]
            if not np.any(centre):
                continue
            rows = [field.vectors_of(t) for t in artist.track_ids]
            present = np.asarray([r is not None for r in rows])
            cosine = np.asarray([float(np.max(r @ centre)) if r is not None else 0.0 for r in rows])
            total += self.weights[model] * cosine * present
            weight += self.weights[model] * present
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(weight > 0, total / weight, -np.inf)
        order = np.argsort(-score, kind="stable")[:count]
        return tuple(artist.track_ids[i] for i in order if np.isfinite(score[i]))

    def _alike(self, index: int) -> np.ndarray:
        """Every artist's cosine to artist ``index``, mixed over the models that have both."""
        total = np.zeros(len(self._order))
        weight = np.zeros(len(self._order))
        for model, centres in self._centres.items():
            if not self._present[model][index]:
                continue
            present = self._present[model]
            total += self.weights[model] * np.where(present, centres @ centres[index], 0.0)
            weight += self.weights[model] * present
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weight > 0, total / weight, -np.inf)

    def _centres_of(self, field: FieldVectors) -> np.ndarray:
        """(artists, dim) normalised mean track vector per artist (each track's segments averaged first); a
        zero row where it has none here. Array sums over blocks of ``CENTRE_BLOCK`` member tracks (a million
        tracks: seconds, not a Python step per track, and never a copy of every row at once)."""
        centres = np.zeros((len(self._order), field.dimension), dtype=np.float32)
        counts = np.asarray([len(self.artists[a].track_ids) for a in self._order], dtype=np.int64)
        ends = np.cumsum(counts)
        members = [t for a in self._order for t in self.artists[a].track_ids]
        local = field.local_indices(members)
        first = 0
        while first < len(self._order):  # artists first..last-1: whole artists, about CENTRE_BLOCK tracks
            start = int(ends[first - 1]) if first else 0
            last = max(first + 1, int(np.searchsorted(ends, start + CENTRE_BLOCK, side="right")))
            stop = int(ends[last - 1])
            block = field.block(local[start:stop])
            means = np.zeros((stop - start, field.dimension), dtype=np.float64)
            if len(block.present):
                rows = block.rows.astype(np.float64)
                if not block.single:
                    sizes = np.diff(np.append(block.offsets, len(rows)))
                    rows = np.add.reduceat(rows, block.offsets, axis=0) / sizes[:, None]
                means[block.present] = rows
            present = (local[start:stop] >= 0).astype(np.float64)
            starts = (ends[first:last] - counts[first:last]) - start
            sums = np.add.reduceat(means, starts, axis=0)
            have = np.add.reduceat(present, starts) > 0
            norms = np.maximum(np.linalg.norm(sums, axis=1), _EPS)
            centres[first:last] = np.where(have[:, None], sums / norms[:, None], 0.0)
            first = last
        return centres


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """``np.argsort(-scores, kind="stable")[:count]`` without sorting every artist: the ``count`` best, ties
    in index order (every value tied with the ``count``-th is kept before the stable sort)."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    kth = np.partition(-scores, count - 1)[count - 1]
    chosen = np.flatnonzero(-scores <= kth)
    return chosen[np.argsort(-scores[chosen], kind="stable")][:count]


def identity(fields: Sequence[FieldVectors]) -> tuple[int, ...]:
    """Which field copies an index was built from: a reload of any makes a new tuple."""
    return tuple(id(f) for f in fields)
