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

from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.artists import REPRESENTATIVES, ArtistIndex, ArtistMatch, identity
from navembed_pipeline.lib.recommend.engine import Recommender
from navembed_pipeline.lib.recommend.errors import InvalidRequestError, RecommendError, UnknownTrackError
from navembed_pipeline.lib.recommend.request import MAX_SIZE, MAX_STEPS, PathSpec, PlaylistRules, RecommendRequest

LOGGER = logging.getLogger("navembed.recommend")
RADIUS_SIMILARITY = 0.5  # halfway between a typical unrelated pair (0) and the same recording (1)
MAX_PATH = MAX_STEPS + 2
TrackSource = Callable[[], Iterable[Track]]


class UnknownArtistError(RecommendError):
    """No artist with that Navidrome id or name has tracks with vectors."""


@dataclass(frozen=True)
class Neighbour:
    track: Track
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
                       within_radius: bool = False) -> list[Neighbour]:
        """Up to ``count`` tracks like ``track_id``, most similar first, never the seed itself."""
        self._require([track_id])
        count = min(max(count, 0), MAX_SIZE)
        fetch = min(MAX_SIZE, 2 * count + 10)  # room for dropped copies and the radius
        playlist = self.engine.recommend(RecommendRequest(
            mode="similar", seeds=(track_id,), rules=PlaylistRules(size=fetch, collapse_duplicates=False)))
        ids = [t.id for t in playlist.tracks]
        similarity = self.engine.sonic_similarity(track_id, ids, models=playlist.models)
        ids.sort(key=lambda t: -similarity[t])  # stable: equal numbers keep the engine's order
        if within_radius:
            ids = [t for t in ids if similarity[t] >= RADIUS_SIMILARITY]
        if eliminate_duplicates:
            ids = self._distinct_recordings(track_id, ids, playlist.models)
        known = self.engine.catalog(ids[:count])
        return [Neighbour(known[t], similarity[t]) for t in ids[:count] if t in known]

    def path(self, start: str, end: str, count: int) -> list[Neighbour]:
        """At most ``count`` songs: ``start``, tracks each nearer ``end``, then ``end`` (``count`` 1: the
        start alone); each with its similarity to ``start``."""
        if start == end:
            raise InvalidRequestError("a path needs two different tracks")
        if count < 1:
            raise InvalidRequestError("count must be at least 1")
        known = self._require([start, end])
        steps = min(count, MAX_PATH) - 2
        if steps <= 0:
            ids, models = [start, end][:count], ()
        else:
            playlist = self.engine.recommend(RecommendRequest(mode="path", path=PathSpec(start, end, steps)))
            ids, models = [t.id for t in playlist.tracks], playlist.models
            known = self.engine.catalog(ids)
        similarity = self.engine.sonic_similarity(start, ids, models=models)
        return [Neighbour(known[t], similarity[t]) for t in ids if t in known]

    def _require(self, ids: Sequence[str]) -> Mapping[str, Track]:
        """The library's tracks ``ids``; an unknown one is refused before any vector is looked at."""
        known = self.engine.catalog(ids)
        if missing := [t for t in ids if t not in known]:
            raise UnknownTrackError(f"unknown track id(s): {', '.join(missing)} (not in the library)")
        return known

    def _distinct_recordings(self, seed: str, ids: list[str], models: Sequence[str]) -> list[str]:
        """``ids`` without copies of the seed or of an earlier track (``Recommender.identity``)."""
        fields = {m: f for m in models if len(f := self.engine.vectors.field(m)) > 0}
        return self.engine.identity.distinct(ids, fields, before=[seed])

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
