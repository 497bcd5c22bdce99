"""Sonic mixes: playlists built without anyone asking, from the library's sound and each user's history.

- **Library-wide** ("Sound of ..."): the library clustered by sound (k-means, ``scipy.cluster.vq``, on
  each track's mean segment vector of one model), each mix the cluster's tracks nearest its centre,
  varied across artists. Named by what the members share: their strongest MusiCNN tags where the
  ``musicnn`` model has a ``tags`` field, otherwise their most frequent artists.
- **Per user**, from Navidrome's listening history (``lib/library/history.py``):
  "For you" — tracks near what the user plays, rates and stars (the engine's ``similar`` mode over
  those seeds), without anything played in the last ``recent_days``, at most ``max_per_artist`` per
  artist; "Rediscover" — tracks the user starred or rated highly long ago and has not played for
  ``rediscover_after_days``; "Radio" — one station per top-starred track (the track, then what
  sounds like it). A user without history gets no per-user mix: the library-wide ones are for everyone.
  Every per-user mix keeps to the libraries the user may see.

Plain functions over the engine (``Recommender``), the catalog and the histories; no I/O.
"""

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from navembed_pipeline.lib.library.history import ListeningHistory, TrackAnnotation
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.recommend.engine import Recommender
from navembed_pipeline.lib.recommend.errors import RecommendError
from navembed_pipeline.lib.recommend.request import PlaylistRules, RecommendRequest
from navembed_pipeline.lib.recommend.tags import TAGS_FIELD, TAGS_MODEL
from navembed_pipeline.lib.recommend.vectors import FieldVectors

KINDS = ("sound", "for-you", "rediscover", "radio")
MAX_SEEDS = 10
_EPS = 1e-12


@dataclass(frozen=True)
class MixOptions:
    """How the mixes are built."""

    size: int = 25
    clusters: int | None = None  # None: about sqrt(tracks), 2..MAX_CLUSTERS
    max_clusters: int = 12
    min_cluster_tracks: int = 2
    recent_days: int = 14
    rediscover_after_days: int = 90
    radio_stations: int = 2
    max_per_artist: int = 2
    diversity: float = 0.3
    model: str | None = None  # the model clustered on; None: the first of the engine's with vectors


@dataclass(frozen=True)
class Mix:
    """One playlist: ``slug`` is stable across rebuilds (the file's name), ``reason`` says why it exists."""

    kind: str
    slug: str
    title: str
    reason: str
    track_ids: tuple[str, ...]
    user: str | None = None  # the user name, for per-user mixes


@dataclass(frozen=True)
class Tagging:
    """Per-track tag scores (the ``musicnn`` model's ``tags`` field) and the tag names in output order."""

    vectors: FieldVectors
    names: Sequence[str]


def build_mixes(engine: Recommender, tracks: Mapping[str, Track], histories: Sequence[ListeningHistory], *,
                now: datetime, options: MixOptions = MixOptions(), tagging: Tagging | None = None) -> list[Mix]:
    """Library-wide mixes, then each user's (users without history get none)."""
    mixes = library_mixes(engine, tracks, options=options, tagging=tagging)
    slugs = Counter(_slug(h.user.user_name) for h in histories)
    for history in histories:
        # Two user names that clean to one slug ("Bob", "bob!") get their ids' start to keep files apart.
        suffix = history.user.id[:8] if slugs[_slug(history.user.user_name)] > 1 else ""
        mixes += user_mixes(engine, tracks, history, now=now, options=options, slug_suffix=suffix)
    return mixes


def clustering_model(engine: Recommender, options: MixOptions) -> str | None:
    """The model whose vectors the library is clustered on: the chosen one, else the first with vectors."""
    names = [options.model] if options.model else list(engine.default_models)
    return next((m for m in names if len(engine.vectors.field(m)) > 0), None)


def library_mixes(engine: Recommender, tracks: Mapping[str, Track], *, options: MixOptions = MixOptions(),
                  tagging: Tagging | None = None) -> list[Mix]:
    """One mix per cluster of the library's sound, largest cluster first."""
    from scipy.cluster.vq import kmeans2

    model = clustering_model(engine, options)
    if model is None:
        return []
    field = engine.vectors.field(model)
    ids = [t for t in field.track_ids if t in tracks]
    if len(ids) < 2 * options.min_cluster_tracks:
        return []
    # Directions away from the library's mean: one model's vectors share a large common part, which
    # would otherwise leave k-means one big cluster and a few outliers.
    data = _normalised(np.stack([field.vectors_of(t).mean(axis=0) for t in ids]).astype(np.float64))
    data = _normalised(data - data.mean(axis=0))
    k = options.clusters or min(options.max_clusters, max(2, round(math.sqrt(len(ids)))))
    k = min(k, len(ids) // options.min_cluster_tracks)
    centroids, labels = kmeans2(data, k, minit="++", seed=0, iter=20)
    groups = [np.flatnonzero(labels == c) for c in range(k)]
    order = sorted((c for c in range(k) if len(groups[c]) >= options.min_cluster_tracks),
                   key=lambda c: (-len(groups[c]), ids[groups[c][0]]))
    mixes = []
    for number, c in enumerate(order, start=1):
        members = groups[c]
        closeness = data[members] @ _normalised(centroids[c][None, :])[0]
        ranked = [ids[members[i]] for i in np.argsort(-closeness, kind="stable")]
        picked = _varied(ranked, tracks, options.size, options.max_per_artist)
        shared, described = _shared(ranked, tracks, tagging)
        mixes.append(Mix(
            kind="sound", slug=f"sound-{number:02d}", title=f"Sound of {shared}",
            reason=(f"cluster {number} of {len(order)} of the library by sound (k-means on {model} vectors of "
                    f"{len(ids)} tracks; {len(members)} tracks in this one, the {len(picked)} nearest its centre "
                    f"here, at most {options.max_per_artist} per artist); its tracks share {described}"),
            track_ids=tuple(picked)))
    return mixes


def user_mixes(engine: Recommender, tracks: Mapping[str, Track], history: ListeningHistory, *, now: datetime,
               options: MixOptions = MixOptions(), slug_suffix: str = "",
               library_ids: Collection[int] | None = None) -> list[Mix]:
    """``history``'s user's "For you", "Rediscover" and radio mixes (those the history allows).

    ``tracks`` must hold at least the history's tracks; ``library_ids`` are every library's (None:
    those of ``tracks``), so that the libraries the user may not see are left out.
    """
    if history.empty:
        return []
    user = history.user
    slug = _slug(user.user_name) + (f"-{_slug(slug_suffix)}" if slug_suffix else "")
    mixes = []
    request = for_you_request(engine, tracks, history, now=now, options=options, library_ids=library_ids)
    if request is not None and (picked := _distinct_songs(_similar(engine, request), tracks,
                                                          before=(*request.seeds, *request.rules.previous))):
        seeds = request.seeds
        names = ", ".join(tracks[t].title for t in seeds[:3]) + (" ..." if len(seeds) > 3 else "")
        mixes.append(Mix(
            kind="for-you", slug=f"for-you-{slug}", title=f"For you · {user.user_name}", user=user.user_name,
            reason=(f"for {user.user_name}: tracks that sound like the {len(seeds)} they play, rate and star most "
                    f"({names}), none played in the last {options.recent_days} days, at most "
                    f"{options.max_per_artist} per artist"),
            track_ids=tuple(picked)))
    visible = _visible(tracks, history)
    forgotten = _forgotten(visible, now - timedelta(days=options.rediscover_after_days))
    if forgotten:
        mixes.append(Mix(
            kind="rediscover", slug=f"rediscover-{slug}", title=f"Rediscover · {user.user_name}",
            user=user.user_name,
            reason=(f"for {user.user_name}: tracks starred or rated 4+ at least {options.rediscover_after_days} "
                    f"days ago and not played since {(now - timedelta(days=options.rediscover_after_days)):%Y-%m-%d}"),
            track_ids=tuple(forgotten[:options.size])))
    rules = _rules(tracks, history, now=now, options=options, library_ids=library_ids)
    starred = [a.track_id for a in sorted(visible.values(), key=lambda a: (-a.rating, -a.play_count, a.track_id))
               if a.starred and _embedded(engine, a.track_id)]
    for number, seed in enumerate(starred[:options.radio_stations], start=1):
        radio = RecommendRequest(mode="similar", seeds=(seed,), rules=replace(rules, size=max(1, options.size - 1)))
        if picked := _distinct_songs(_similar(engine, radio), tracks, before=(seed, *rules.previous)):
            mixes.append(Mix(
                kind="radio", slug=f"radio-{slug}-{number}", title=f"Radio · {tracks[seed].title} · {user.user_name}",
                user=user.user_name,
                reason=(f"for {user.user_name}: radio from their starred track {tracks[seed].artist} - "
                        f"{tracks[seed].title} (starred track no. {number} by rating and plays): it, then the "
                        f"tracks that sound most like it, none played in the last {options.recent_days} days"),
                track_ids=(seed, *picked)))
    return mixes


def for_you_request(engine: Recommender, tracks: Mapping[str, Track], history: ListeningHistory, *,
                    now: datetime, options: MixOptions = MixOptions(),
                    library_ids: Collection[int] | None = None,
                    models: Sequence[str] = ()) -> RecommendRequest | None:
    """The engine request behind "For you": ``similar`` over the tracks the user plays, rates and stars
    most (up to ``MAX_SEEDS``, embedded ones only), recent plays as ``previous``; None without such tracks."""
    visible = _visible(tracks, history)
    ranked = sorted((t for t in visible if _affinity(visible[t]) > 0), key=lambda t: (-_affinity(visible[t]), t))
    seeds = [t for t in ranked if _embedded(engine, t, models)][:MAX_SEEDS]
    if not seeds:
        return None
    rules = _rules(tracks, history, now=now, options=options, library_ids=library_ids)
    return RecommendRequest(mode="similar", seeds=tuple(seeds), rules=rules, models=tuple(models))


def _rules(tracks: Mapping[str, Track], history: ListeningHistory, *, now: datetime, options: MixOptions,
           library_ids: Collection[int] | None) -> PlaylistRules:
    """Per-user rules: no recent plays, only the user's libraries, varied artists."""
    every = set(library_ids) if library_ids is not None else {t.library_id for t in tracks.values()}
    hidden = frozenset(i for i in every if not history.user.sees(i))
    recent = history.played_since(now - timedelta(days=options.recent_days))
    return PlaylistRules(size=options.size, previous=tuple(sorted(recent)), exclude_libraries=hidden,
                         max_per_artist=options.max_per_artist, no_consecutive_artist=True,
                         diversity=options.diversity)


def _visible(tracks: Mapping[str, Track], history: ListeningHistory) -> dict[str, TrackAnnotation]:
    """The history's tracks that are still in the library and in a library the user may see."""
    return {a.track_id: a for a in history.tracks
            if a.track_id in tracks and history.user.sees(tracks[a.track_id].library_id)}


def _affinity(annotation: TrackAnnotation) -> float:
    """How much a track says about the user's taste: plays (log), a star, a rating above 3."""
    return (math.log1p(annotation.play_count) + (2.0 if annotation.starred else 0.0)
            + max(0, annotation.rating - 3))


def _embedded(engine: Recommender, track_id: str, models: Sequence[str] = ()) -> bool:
    return any(engine.vectors.field(m).vectors_of(track_id) is not None for m in (models or engine.default_models))


def _similar(engine: Recommender, request: RecommendRequest) -> list[str]:
    """The engine's playlist for ``request`` (empty when it has nothing to offer)."""
    try:
        playlist = engine.recommend(request)
    except RecommendError:
        return []
    return [t.id for t in playlist.tracks]


def _forgotten(visible: Mapping[str, TrackAnnotation], before: datetime) -> list[str]:
    """Loved tracks (starred, or rated 4+) loved before ``before`` and not played since, most loved first."""
    def loved_at(a: TrackAnnotation) -> datetime | None:
        return a.starred_at if a.starred else a.rated_at

    keep = [a for a in visible.values()
            if (a.starred or a.rating >= 4) and (loved_at(a) is None or loved_at(a) < before)
            and (a.play_date is None or a.play_date < before)]
    return [a.track_id for a in sorted(keep, key=lambda a: (-_affinity(a), a.track_id))]


def _varied(ranked: Sequence[str], tracks: Mapping[str, Track], size: int, max_per_artist: int) -> list[str]:
    """Up to ``size`` of ``ranked`` in order, at most ``max_per_artist`` per artist (then the rest, if short)."""
    counts: Counter[str] = Counter()
    picked, held = [], []
    for track_id in _distinct_songs(ranked, tracks):
        artist = tracks[track_id].artist.strip().casefold()
        (picked if counts[artist] < max_per_artist else held).append(track_id)
        counts[artist] += 1
    return (picked + held)[:size] if len(picked) < size else picked[:size]


def _song(track: Track) -> tuple[str, str]:
    return track.artist.strip().casefold(), track.title.strip().casefold()


def _distinct_songs(ids: Sequence[str], tracks: Mapping[str, Track], *, before: Sequence[str] = ()) -> list[str]:
    """``ids`` without a second copy of one song (same artist and title, e.g. a FLAC and its MP3), nor
    songs of ``before``."""
    seen = {_song(tracks[t]) for t in before if t in tracks}
    out = []
    for track_id in ids:
        song = _song(tracks[track_id]) if track_id in tracks else ("", track_id)
        if song not in seen:
            seen.add(song)
            out.append(track_id)
    return out


def _shared(ids: Sequence[str], tracks: Mapping[str, Track], tagging: Tagging | None) -> tuple[str, str]:
    """A short name for what ``ids`` share, and a longer description of it."""
    if tagging is not None:
        rows = [tagging.vectors.vectors_of(t) for t in ids]
        rows = [r.mean(axis=0) for r in rows if r is not None]
        if rows and len(rows) * 2 >= len(ids):
            profile = np.mean(rows, axis=0)
            top = [int(i) for i in np.argsort(-profile, kind="stable")[:3]]
            names = [str(tagging.names[i]) for i in top if i < len(tagging.names)]
            if names:
                return (" · ".join(names[:2]),
                        f"the MusiCNN tags {', '.join(names)} (strongest on average over {len(rows)} tracks)")
    artists = Counter(tracks[t].artist for t in ids if tracks[t].artist)
    top = [a for a, _ in artists.most_common(2)]
    if not top:
        return "untitled", "no tags and no artist names"
    counts = ", ".join(f"{a} ({n})" for a, n in artists.most_common(3))
    return " & ".join(top), f"these artists most often: {counts}"


def _slug(name: str) -> str:
    """A file-name-safe form of a user name (letters and digits kept, Unicode included)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in name.strip().casefold())
    return "-".join(part for part in cleaned.split("-") if part) or "user"


def _normalised(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > _EPS, norms, 1.0)
