"""What a music server asks of navembed: similar tracks, a path, similar artists — with calibrated numbers.

``SonicService`` serves the Navidrome plugin contract (``/api/similar_tracks``, ``/api/find_path``,
``/api/similar_artists``) and the OpenSubsonic ``sonicSimilarity`` routes on top of the ``Recommender``:

- similarity is the library-calibrated one (``Recommender.sonic_similarity``): 0 = as alike as a
  typical unrelated pair of this library, 1 = the same recording; results are most similar first.
- ``eliminate_duplicates``: never two copies of one recording, nor a copy of the seed, by the engine's
  ``identity`` (``identity.RecordingIdentity``: fingerprint groups first, then the per-model threshold
  on calibrated similarity), the same rule as ``collapse_duplicates`` in playlists.
- ``within_radius`` (the plugin's ``radius_similarity``): only tracks inside the seed's radius,
  calibrated similarity >= ``RADIUS_SIMILARITY``, so a mix is never padded with unrelated songs
  (the list may be shorter than asked; Navidrome tops short lists up from its other agents).
"""

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.artists import REPRESENTATIVES, ArtistIndex, ArtistMatch, identity
from navembed_pipeline.lib.recommend.catalog import TrackInfo
from navembed_pipeline.lib.recommend.engine import Recommender
from navembed_pipeline.lib.recommend.errors import InvalidRequestError, RecommendError, UnknownTrackError
from navembed_pipeline.lib.recommend.request import MAX_SIZE, MAX_STEPS, PathSpec, PlaylistRules, RecommendRequest
from navembed_pipeline.lib.recommend.rules import track_table

LOGGER = logging.getLogger("navembed.recommend")
RADIUS_SIMILARITY = 0.5  # halfway between a typical unrelated pair (0) and the same recording (1)
MAX_PATH = MAX_STEPS + 2
DISTINCT_MARGIN = 16  # tracks compared beyond those wanted, for the copies among them
TrackSource = Callable[[], Iterable[Track]]


class UnknownArtistError(RecommendError):
    """No artist with that Navidrome id or name has tracks with vectors."""


@dataclass(frozen=True)
class Neighbour:
    track: Track | TrackInfo  # TrackInfo (id, title, artist, album) where asked for with details=False
    similarity: float  # calibrated 0..1 to the reference track


class SonicService:
    """Neighbours, paths and artists for music servers, over one ``Recommender``."""

    def __init__(self, engine: Recommender, tracks: TrackSource) -> None:
        self.engine = engine
        self._tracks = tracks
        self._artists: tuple[tuple[int, ...], ArtistIndex] | None = None
        self._artist_lock = threading.Lock()
        self._rebuilding = False
        self._builds = 0  # rebuilds started, numbered
        self._stored = 0  # the number of the rebuild whose index is kept

    # ----- tracks ------------------------------------------------------------------------------
    def similar_tracks(self, track_id: str, count: int, *, eliminate_duplicates: bool = True,
                       within_radius: bool = False, details: bool = True) -> list[Neighbour]:
        """Up to ``count`` tracks like ``track_id``, most similar first, never the seed itself.

        One ranking (``Recommender.ranked_ids``: the engine's "similar" playlist without explanations),
        array filters on it, and one catalog read of the tracks answered (``details=False``: their
        ``TrackInfo`` from the track table when there is one, no read at all)."""
        self._require([track_id])
        count = min(max(count, 0), MAX_SIZE)
        fetch = min(MAX_SIZE, 2 * count + 10)  # room for dropped copies and the radius
        ids, models = self.engine.ranked_ids(RecommendRequest(
            mode="similar", seeds=(track_id,), rules=PlaylistRules(size=fetch, collapse_duplicates=False)))
        similarity = self.engine.sonic_similarities(track_id, ids, models=models)
        order = np.argsort(-similarity, kind="stable")  # stable: equal numbers keep the engine's order
        if within_radius:
            order = order[similarity[order] >= RADIUS_SIMILARITY]
        if eliminate_duplicates:
            order = order[self._distinct_positions(track_id, [ids[i] for i in order], models, want=count)]
        order = order[:count]
        known = self.track_details([ids[i] for i in order], full=details)
        return [Neighbour(known[ids[i]], float(similarity[i])) for i in order if ids[i] in known]

    def path(self, start: str, end: str, count: int, *, details: bool = True) -> list[Neighbour]:
        """At most ``count`` songs: ``start``, tracks each nearer ``end``, then ``end`` (``count`` 1: the
        start alone); each with its similarity to ``start``."""
        if start == end:
            raise InvalidRequestError("a path needs two different tracks")
        if count < 1:
            raise InvalidRequestError("count must be at least 1")
        self._require([start, end])
        steps = min(count, MAX_PATH) - 2
        if steps <= 0:
            ids, models = [start, end][:count], ()
        else:
            playlist = self.engine.recommend(RecommendRequest(mode="path", path=PathSpec(start, end, steps)))
            ids, models = [t.id for t in playlist.tracks], playlist.models
        known = self.track_details(ids, full=details)
        similarity = self.engine.sonic_similarity(start, ids, models=models)
        return [Neighbour(known[t], similarity[t]) for t in ids if t in known]

    def track_details(self, ids: Sequence[str], *, full: bool = True) -> Mapping[str, Track | TrackInfo]:
        """The library's ``Track``s ``ids`` (one catalog read), or without ``full`` their ``TrackInfo``."""
        table = None if full else track_table(self.engine.catalog)
        if table is None:
            return self.engine.catalog(ids)
        shown: dict[str, Track | TrackInfo] = dict(table.info(ids))
        if newer := [t for t in ids if t not in shown]:  # added to Navidrome after the table was read
            shown.update(self.engine.catalog(newer))
        return shown

    def _require(self, ids: Sequence[str]) -> None:
        """Refuse an id that is not a track of the library before any vector is looked at."""
        table = track_table(self.engine.catalog)
        if table is not None:  # what the table (perhaps read before Navidrome added it) lacks is asked for
            unseen = [t for t, row in zip(ids, table.rows_of(ids).tolist(), strict=True) if row < 0]
            known = self.engine.catalog(unseen) if unseen else {}
            missing = [t for t in unseen if t not in known]
        else:
            known = self.engine.catalog(ids)
            missing = [t for t in ids if t not in known]
        if missing:
            raise UnknownTrackError(f"unknown track id(s): {', '.join(missing)} (not in the library)")

    def _distinct_recordings(self, seed: str, ids: list[str], models: Sequence[str]) -> list[str]:
        """``ids`` without copies of the seed or of an earlier track (``Recommender.identity``: one
        (n, n) same-recording mask, walked by ``first_distinct``)."""
        everyone = [seed, *ids]
        fields = {m: f for m in models if len(f := self.engine.vectors.field(m)) > 0}
        same = self.engine.identity.same_matrix(everyone, fields)
        return [ids[i - 1] for i in first_distinct(same)[1:].tolist()]  # position 0 is the seed, always kept

    def _distinct_positions(self, seed: str, ids: Sequence[str], models: Sequence[str], *,
                            want: int | None = None) -> np.ndarray:
        """Positions into ``ids`` of the tracks ``_distinct_recordings`` keeps, in order. ``want``: at least
        that many if there are (fewer tracks are compared: the walk over a prefix of ``ids`` keeps what the
        walk over all of them keeps within it, so a longer prefix is taken only while short)."""
        end = len(ids) if want is None else min(len(ids), want + DISTINCT_MARGIN)
        while True:
            prefix = list(ids[:end])
            kept = self._distinct_recordings(seed, prefix, models)
            if want is None or len(kept) >= want or end >= len(ids):
                where = {t: i for i, t in enumerate(prefix)}
                return np.asarray([where[t] for t in kept], dtype=np.int64)
            end = min(len(ids), 2 * end)

    # ----- artists -----------------------------------------------------------------------------
    def similar_artists(self, key: str, count: int) -> tuple[str, list[ArtistMatch]]:
        """The artist's id and up to ``count`` similar artists with their representative songs."""
        index = self.artists()
        artist = index.find(key)
        if artist is None:
            raise UnknownArtistError(f"unknown artist {key!r}: no artist with this id or name has analysed tracks")
        matches = index.similar(artist, min(max(count, 0), MAX_SIZE), representatives=2 * REPRESENTATIVES)
        return artist.id, [self._distinct_songs(m) for m in matches]

    def _distinct_songs(self, match: ArtistMatch) -> ArtistMatch:
        """Artist radio's representative songs, one copy of each recording (``Recommender.identity``)."""
        fields = self._fields()
        own = self.engine.identity.distinct(list(match.own_songs), fields)[:REPRESENTATIVES]
        theirs = self.engine.identity.distinct(list(match.their_songs), fields)[:REPRESENTATIVES]
        return dataclasses.replace(match, own_songs=tuple(own), their_songs=tuple(theirs))

    def artists(self, *, wait: bool = False) -> ArtistIndex:
        """The artist index of the current vectors: rebuilt when they reload (in the background once
        one exists, so a request never waits for a rebuild; ``wait``: on this thread, so the index
        returned is the current vectors' one)."""
        fields = self._fields()
        current = identity(list(fields.values()))
        with self._artist_lock:
            built = self._artists
            if built is not None and built[0] == current:
                return built[1]
            if built is not None and not wait:
                if not self._rebuilding:
                    self._rebuilding = True
                    threading.Thread(target=self._rebuild, args=(fields, current, True), daemon=True,
                                     name="navembed-artists").start()
                return built[1]
            self._builds += 1
            number = self._builds
        return self._rebuild(fields, current, False, number)

    def _rebuild(self, fields: Mapping, current: tuple[int, ...], background: bool, number: int = 0) -> ArtistIndex:
        if background:
            with self._artist_lock:
                self._builds += 1
                number = self._builds
        try:
            index = ArtistIndex(self._tracks(), fields, {m: 1.0 for m in fields})
            with self._artist_lock:
                if number > self._stored:  # a rebuild started earlier never replaces a later one
                    self._artists, self._stored = (current, index), number
            return index
        finally:
            if background:
                with self._artist_lock:
                    self._rebuilding = False

    def _fields(self) -> dict:
        vectors = self.engine.vectors
        return {m: f for m in self.engine.default_models if len(f := vectors.field(m)) > 0}


def first_distinct(same: np.ndarray) -> np.ndarray:
    """Positions kept, in order, walking tracks best first (position 0: the seed, always kept): a track
    is kept unless it is the same recording (``same``, (n, n) symmetric) as a track kept before it."""
    n = len(same)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    off_diagonal = np.triu(same, 1)
    if not off_diagonal.any():  # no copies at all: every track
        return np.arange(n, dtype=np.int64)
    taken = same[0].copy()  # copies of the seed
    taken[0] = True
    kept = [0]
    for i in np.flatnonzero(~taken).tolist():  # a track taken meanwhile (a copy of a kept one) is skipped
        if taken[i]:
            continue
        kept.append(i)
        taken |= same[i]
    return np.asarray(kept, dtype=np.int64)
