"""Playlist rules: which candidates may appear, and a greedy pick that honours the rest.

Static rules (excluded tracks, artists, albums, libraries, duration bounds, tracks no longer in the
library) filter candidates once. The pick then goes best-first and skips a candidate that would
break a rule given what is already chosen: more than ``max_per_artist`` by one artist, the same
artist twice in a row, or a duplicate — a candidate that is the same recording as a seed, a recently
played track or an earlier pick (``same_as``: ``identity.RecordingIdentity``, fingerprint groups first,
then the per-model calibrated threshold). With
``diversity`` > 0 it picks by maximal marginal relevance instead of score alone:
``(1 - diversity) * relevance - diversity * similarity to the nearest already chosen``.

With a ``TrackTable`` (``catalog.py``) the static rules are array operations over every candidate at
once and no ``Track`` is read; without one (no table yet, or a plain catalog) candidates are read
from the catalog in chunks and tested one by one. Both keep the same candidates.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.catalog import TrackTable, name_key
from navembed_pipeline.lib.recommend.request import PlaylistRules

Catalog = Callable[[Sequence[str]], Mapping[str, Track]]
# Sonic similarity of every pool candidate to one track (NaN where unknown).
SimilarityTo = Callable[[str], np.ndarray]
# Which pool candidates are the same recording as one track (``RecordingIdentity.matcher``).
SameAs = Callable[[str], np.ndarray]
LOOKUP_CHUNK = 256


def artist_key(track: Track) -> str:
    return name_key(track.artist)


def track_table(catalog: Catalog) -> TrackTable | None:
    """The catalog's ``TrackTable`` when it keeps one and it is built (``TrackCatalog.table``), else None."""
    table = getattr(catalog, "table", None)
    return table() if callable(table) else None


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
    """Allowed candidates (positions into the caller's arrays, best first), their artists (``artist_key``,
    in pool order) and the tracks read for them (empty when a ``TrackTable`` answered: ``details``)."""

    positions: np.ndarray
    tracks: Mapping[str, Track]
    exhausted: bool  # every ranked candidate was looked at
    artists: np.ndarray  # object: each candidate's artist key

    def details(self, track_ids: Sequence[str], catalog: Catalog) -> Mapping[str, Track]:
        """The tracks ``track_ids`` (e.g. the chosen ones): from the pool where read, else one catalog read."""
        missing = [t for t in track_ids if t not in self.tracks]
        return {**self.tracks, **catalog(missing)} if missing else self.tracks


def eligible(order: Sequence[int], ids: Sequence[str], rules: PlaylistRules, *, catalog: Catalog,
             blocked: Iterable[str], limit: int | None = None, table: TrackTable | None = None) -> Pool:
    """Walk ``order`` (best first) and keep up to ``limit`` allowed candidates: with ``table`` in a few
    array operations, else asking the catalog in chunks."""
    blocked = set(blocked) | set(rules.exclude_tracks) | set(rules.previous)
    if table is not None:
        return _eligible_rows(np.asarray(order, dtype=np.int64), ids, rules, table, blocked, limit, catalog)
    order = [i for i in order if ids[i] not in blocked]
    kept: list[int] = []
    tracks: dict[str, Track] = {}
    step = max(LOOKUP_CHUNK, limit or len(order))  # few large lookups: each costs a query
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        tracks.update(catalog([ids[i] for i in chunk]))
        kept += [i for i in chunk if ids[i] in tracks and allowed(tracks[ids[i]], rules)]
        if limit is not None and len(kept) >= limit:
            return _pool(kept[:limit], ids, tracks, start + step >= len(order))
    return _pool(kept, ids, tracks, True)


def _pool(kept: list[int], ids: Sequence[str], tracks: Mapping[str, Track], exhausted: bool) -> Pool:
    artists = np.empty(len(kept), dtype=object)
    artists[:] = [artist_key(tracks[ids[i]]) for i in kept]
    return Pool(np.asarray(kept, dtype=np.int64), tracks, exhausted, artists)


def _eligible_rows(order: np.ndarray, ids: Sequence[str], rules: PlaylistRules, table: TrackTable,
                   blocked: set[str], limit: int | None, catalog: Catalog) -> Pool:
    """``eligible`` on the table; ``exhausted`` as the chunked walk would say it (same chunk size).

    A candidate the table does not hold is asked of the catalog (which remembers its answers): the table
    may be one read before Navidrome added the track, and a track a run has just embedded must be offered
    at once (the read-your-writes promise of ``/batch/progress``), not after the table's next read."""
    if blocked:
        order = order[np.fromiter((ids[i] not in blocked for i in order.tolist()), dtype=bool, count=len(order))]
    rows = table.rows_of([ids[i] for i in order.tolist()])
    ok = table.allowed(rows, exclude_artists=rules.exclude_artists, exclude_albums=rules.exclude_albums,
                       exclude_libraries=rules.exclude_libraries, min_duration=rules.min_duration,
                       max_duration=rules.max_duration)
    unknown = np.flatnonzero(rows < 0)
    read = catalog([ids[i] for i in order[unknown].tolist()]) if len(unknown) else {}
    newer = {}  # position in ``order`` -> the track the table did not hold yet
    for at in unknown.tolist():
        if (track := read.get(ids[int(order[at])])) is not None and allowed(track, rules):
            ok[at] = True
            newer[at] = track
    where = np.flatnonzero(ok)
    exhausted = True
    if limit is not None and len(where) >= limit:
        step = max(LOOKUP_CHUNK, limit)
        last = int(where[limit - 1])  # the walk stops at the end of the chunk holding the limit-th allowed one
        exhausted = (last // step + 1) * step >= len(order)
        where = where[:limit]
    artists = table.names[table.artist[np.where(rows[where] >= 0, rows[where], 0)]]
    if newer:
        artists = artists.astype(object)
        for k, at in enumerate(where.tolist()):
            if at in newer:
                artists[k] = artist_key(newer[at])
    return Pool(order[where], {t.id: t for t in newer.values()}, exhausted, artists)


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
        self._artist_names, self._artists = np.unique(pool.artists, return_inverse=True) \
            if len(pool.artists) else (np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64))
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


def by_score_only(rules: PlaylistRules) -> bool:
    """No rule depends on what is already chosen: the pick is the pool's best ``size``, in pool order."""
    return (rules.diversity == 0 and rules.max_per_artist is None and not rules.no_consecutive_artist
            and not rules.collapse_duplicates)


def select(pool: Pool, ids: Sequence[str], scores: np.ndarray, rules: PlaylistRules, *,
           similarity_to: SimilarityTo | None, anchors: Iterable[str] = (), same_as: SameAs | None = None) -> list[int]:
    """Positions of the chosen candidates, in playlist order (at most ``rules.size``). ``similarity_to``
    may be None when ``by_score_only(rules)`` (nothing is compared then)."""
    if by_score_only(rules):
        # The greedy pick below would take the best allowed candidate each time: the pool is ranked best
        # first (ties in the caller's order, which argmax keeps), so it takes the pool's first ``size``.
        return pool.positions[:rules.size].tolist()
    if similarity_to is None:
        raise ValueError("these rules compare candidates: pass similarity_to")
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
