"""Playlist rules: which candidates may appear, and a greedy pick that honours the rest.

Static rules (excluded tracks, artists, albums, libraries, duration bounds, tracks no longer in the
library) filter candidates once. The pick then goes best-first and skips a candidate that would
break a rule given what is already chosen: more than ``max_per_artist`` by one artist, the same
artist twice in a row, or a duplicate — a candidate that is the same recording as a seed, a recently
played track or an earlier pick (``same_as``: ``identity.RecordingIdentity``, fingerprint groups first,
then the per-model calibrated threshold). With
``diversity`` > 0 it picks by maximal marginal relevance instead of score alone:
``(1 - diversity) * relevance - diversity * similarity to the nearest already chosen``.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.request import PlaylistRules

Catalog = Callable[[Sequence[str]], Mapping[str, Track]]
# Sonic similarity of every pool candidate to one track (NaN where unknown).
SimilarityTo = Callable[[str], np.ndarray]
# Which pool candidates are the same recording as one track (``RecordingIdentity.matcher``).
SameAs = Callable[[str], np.ndarray]
LOOKUP_CHUNK = 256


def artist_key(track: Track) -> str:
    return track.artist.strip().casefold()


def allowed(track: Track, rules: PlaylistRules) -> bool:
    """Whether ``track`` passes the rules that do not depend on the rest of the playlist."""
    artists = {a.strip().casefold() for a in rules.exclude_artists}
    albums = {a.strip().casefold() for a in rules.exclude_albums}
    duration = track.duration_seconds
    return not (
        {artist_key(track), track.album_artist.strip().casefold()} & artists
        or track.album.strip().casefold() in albums
        or track.library_id in rules.exclude_libraries
        or (rules.min_duration is not None and duration < rules.min_duration)
        or (rules.max_duration is not None and duration > rules.max_duration)
    )


@dataclass(frozen=True)
class Pool:
    """Allowed candidates (positions into the caller's arrays, best first) with their tracks."""

    positions: np.ndarray
    tracks: Mapping[str, Track]
    exhausted: bool  # every ranked candidate was looked at


def eligible(order: Sequence[int], ids: Sequence[str], rules: PlaylistRules, *, catalog: Catalog,
             blocked: Iterable[str], limit: int | None = None) -> Pool:
    """Walk ``order`` (best first) and keep up to ``limit`` allowed candidates, asking the catalog in chunks."""
    blocked = set(blocked) | set(rules.exclude_tracks) | set(rules.previous)
    order = [i for i in order if ids[i] not in blocked]
    kept: list[int] = []
    tracks: dict[str, Track] = {}
    step = max(LOOKUP_CHUNK, limit or len(order))  # few large lookups: each costs a query
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        tracks.update(catalog([ids[i] for i in chunk]))
        kept += [i for i in chunk if ids[i] in tracks and allowed(tracks[ids[i]], rules)]
        if limit is not None and len(kept) >= limit:
            return Pool(np.asarray(kept[:limit], dtype=np.int64), tracks, start + step >= len(order))
    return Pool(np.asarray(kept, dtype=np.int64), tracks, True)


class Arrangement:
    """What is chosen so far and which pool candidates the dynamic rules still allow.

    ``similarity_to`` compares the pool's candidates (in pool order) with one track; ``same_as`` says
    which of them are the same recording as one track (None: duplicates are not collapsed).
    """

    def __init__(self, pool: Pool, ids: Sequence[str], rules: PlaylistRules, *, similarity_to: SimilarityTo,
                 anchors: Iterable[str] = (), last_artist: str | None = None, same_as: SameAs | None = None) -> None:
        self.rules = rules
        self.positions = pool.positions
        self._ids = ids
        self._similarity_to = similarity_to
        keys = [artist_key(pool.tracks[ids[i]]) for i in pool.positions]
        self._artist_names, self._artists = np.unique(np.asarray(keys, dtype=object), return_inverse=True) \
            if keys else (np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
        self._counts = np.zeros(len(self._artist_names), dtype=np.int64)
        self._last = last_artist
        self.available = np.ones(len(pool.positions), dtype=bool)
        self.nearest_chosen = np.full(len(pool.positions), -np.inf)
        self._same_as = same_as if rules.collapse_duplicates else None
        self._copies = np.zeros(len(pool.positions), dtype=bool)  # same recording as an anchor or a pick
        self.chosen: list[int] = []
        for anchor in anchors:
            self._mark_copies(anchor)

    def allowed(self) -> np.ndarray:
        """Mask of pool candidates that may come next."""
        mask = self.available.copy()
        if self.rules.max_per_artist is not None:
            mask &= self._counts[self._artists] < self.rules.max_per_artist
        if self.rules.no_consecutive_artist and self._last is not None:
            mask &= self._artist_names[self._artists] != self._last
        return mask & ~self._copies

    def choose(self, slot: int) -> None:
        """Append pool candidate ``slot`` to the playlist."""
        self.available[slot] = False
        self._counts[self._artists[slot]] += 1
        self._last = str(self._artist_names[self._artists[slot]])
        position = int(self.positions[slot])
        self.chosen.append(position)
        if self.rules.diversity > 0:  # the only reader of nearest_chosen
            self.nearest_chosen = self._closer(self.nearest_chosen, self._ids[position])
        self._mark_copies(self._ids[position])

    def _mark_copies(self, track_id: str) -> None:
        if self._same_as is not None and len(self.positions):
            self._copies |= self._same_as(track_id)

    def _closer(self, nearest: np.ndarray, track_id: str) -> np.ndarray:
        if not len(self.positions):
            return nearest
        return np.fmax(nearest, self._similarity_to(track_id))


def select(pool: Pool, ids: Sequence[str], scores: np.ndarray, rules: PlaylistRules, *,
           similarity_to: SimilarityTo, anchors: Iterable[str] = (), same_as: SameAs | None = None) -> list[int]:
    """Positions of the chosen candidates, in playlist order (at most ``rules.size``)."""
    arrangement = Arrangement(pool, ids, rules, similarity_to=similarity_to, anchors=anchors, same_as=same_as)
    relevance = _unit_range(scores[pool.positions]) if len(pool.positions) else np.zeros(0)
    lam = 1.0 - rules.diversity
    while len(arrangement.chosen) < rules.size:
        mask = arrangement.allowed()
        if not mask.any():
            break
        redundancy = np.where(np.isfinite(arrangement.nearest_chosen), arrangement.nearest_chosen, 0.0)
        objective = relevance if rules.diversity == 0 else lam * relevance - rules.diversity * redundancy
        arrangement.choose(int(np.argmax(np.where(mask, objective, -np.inf))))
    return arrangement.chosen


def _unit_range(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.ones_like(values)
