"""SonicService: what a music server asks (similar tracks, a path, similar artists) with calibrated numbers."""

import dataclasses

import numpy as np
import pytest

from navembed_pipeline.lib.recommend import (PlaylistRules, RecommendRequest, RecordingIdentity, UnknownTrackError,
                                             title_keys)
from navembed_pipeline.lib.recommend.sonic import RADIUS_SIMILARITY, SonicService, UnknownArtistError
from tests.lib.recommend.helpers import catalog_of, field, grouped_vectors, recommender, track

AXES = np.eye(8, dtype=np.float32)
# Groups p, q (near p: shares most of its direction), d and five others; artists by group.
CENTRES = {"p": AXES[0], "q": (0.6 * AXES[0] + 0.8 * AXES[1]), "d": AXES[2],
           **{f"x{i}": AXES[3 + i] for i in range(5)}}
VECTORS = grouped_vectors(CENTRES, 4, spread=0.1, seed=3)


def tracks_for(vectors: dict[str, np.ndarray], **titles: str):
    out = []
    for track_id in vectors:
        group = track_id.rstrip("0123456789")
        base = track(track_id, artist=f"Band {group}")
        out.append(dataclasses.replace(base, artist_id=f"artist-{group}", title=titles.get(track_id, base.title)))
    return out


def service(vectors=VECTORS, *, groups=None, **titles: str) -> SonicService:
    """``groups``: fingerprint recording groups, track id → group number (the others have none)."""
    tracks = tracks_for(vectors, **titles)
    known = groups or {}
    identity = RecordingIdentity(groups=lambda ids: np.asarray([known.get(t, -1) for t in ids], dtype=np.int64),
                                 titles=title_keys(catalog_of(tracks)))
    engine = recommender([field("dsp", vectors)], tracks, default_models=("dsp",), identity=identity)
    return SonicService(engine, lambda: tracks)


def test_similar_tracks_are_the_nearest_most_similar_first_never_the_seed():
    found = service().similar_tracks("p0", 3)
    assert [n.track.id[0] for n in found] == ["p", "p", "p"] and "p0" not in [n.track.id for n in found]
    similarity = [n.similarity for n in found]
    assert similarity == sorted(similarity, reverse=True) and all(0.0 <= s <= 1.0 for s in similarity)


def test_asking_for_more_than_the_library_gives_every_other_track_once():
    found = service().similar_tracks("p0", 1000, eliminate_duplicates=False)
    assert sorted(n.track.id for n in found) == sorted(set(VECTORS) - {"p0"})


def test_copies_known_by_fingerprint_appear_once_and_never_a_copy_of_the_seed():
    with_copies = service(groups={"p0": 0, "p1": 0, "p2": 1, "p3": 1})
    ids = [n.track.id for n in with_copies.similar_tracks("p0", 5)]
    assert "p1" not in ids  # the seed's own copy
    assert len({"p2", "p3"} & set(ids)) == 1
    everything = [n.track.id for n in with_copies.similar_tracks("p0", 5, eliminate_duplicates=False)]
    assert {"p1", "p2", "p3"} <= set(everything)


def test_without_fingerprints_the_same_artist_and_title_is_one_recording():
    copies = service(p1="Morning Keys", p2="morning keys!")
    ids = [n.track.id for n in copies.similar_tracks("p0", 3)]
    assert len({"p1", "p2"} & set(ids)) == 1


def test_the_same_artist_and_title_with_different_fingerprints_are_two_recordings():
    # A live take and the studio one share artist and title; their fingerprints tell them apart.
    copies = service(groups={"p1": 7, "p2": 8}, p1="Morning Keys", p2="morning keys!")
    ids = [n.track.id for n in copies.similar_tracks("p0", 3)]
    assert {"p1", "p2"} <= set(ids)


def test_different_fingerprint_groups_are_different_recordings_however_close_the_vectors():
    vectors = {**VECTORS, "p9": VECTORS["p1"] + 1e-4}
    ids = [n.track.id for n in service(vectors, groups={"p1": 5, "p9": 6}).similar_tracks("p0", 4)]
    assert {"p1", "p9"} <= set(ids)


def test_without_fingerprints_near_identical_vectors_are_one_recording():
    vectors = {**VECTORS, "p9": VECTORS["p1"] + 1e-4}
    ids = [n.track.id for n in service(vectors).similar_tracks("p0", 4)]
    assert len({"p1", "p9"} & set(ids)) == 1


def test_the_radius_keeps_unrelated_tracks_out_even_when_more_are_asked_for():
    everyone = service()
    near = everyone.similar_tracks("p0", 30, within_radius=True)
    assert near and all(n.similarity >= RADIUS_SIMILARITY for n in near)
    assert {n.track.id[0] for n in near} <= {"p", "q"}
    assert len(everyone.similar_tracks("p0", 30)) > len(near)


def test_a_path_runs_from_the_start_to_the_end_within_count():
    path = service().path("p0", "d0", 5)
    ids = [n.track.id for n in path]
    assert ids[0] == "p0" and ids[-1] == "d0" and len(ids) <= 5
    assert path[0].similarity == 1.0
    assert [n.track.id for n in service().path("p0", "d0", 2)] == ["p0", "d0"]
    assert [n.track.id for n in service().path("p0", "d0", 1)] == ["p0"]


def test_unknown_tracks_are_refused_as_unknown():
    with pytest.raises(UnknownTrackError):
        service().similar_tracks("nope", 3)
    with pytest.raises(UnknownTrackError):
        service().path("p0", "nope", 2)


def test_similar_artists_come_most_alike_first_with_songs_from_both_sides():
    artist_id, matches = service().similar_artists("artist-p", 3)
    assert artist_id == "artist-p"
    assert matches[0].artist.id == "artist-q" and matches[0].artist.name == "Band q"
    assert "artist-p" not in [m.artist.id for m in matches] and len(matches) == 3
    assert matches[0].own_songs and all(t.startswith("p") for t in matches[0].own_songs)
    assert matches[0].their_songs and all(t.startswith("q") for t in matches[0].their_songs)


def test_an_artist_is_found_by_name_too_and_an_unknown_one_is_refused():
    assert service().similar_artists("band D", 1)[0] == "artist-d"
    with pytest.raises(UnknownArtistError):
        service().similar_artists("nobody", 3)


def test_a_track_is_fully_similar_to_itself_and_random_pairs_average_at_most_one_half():
    engine = service().engine
    ids = sorted(VECTORS)
    assert engine.sonic_similarity("p0", ["p0"])["p0"] == pytest.approx(1.0)
    rng = np.random.default_rng(4)
    pairs = [(ids[a], ids[b]) for a, b in rng.integers(0, len(ids), (200, 2)) if a != b]
    values = [engine.sonic_similarity(a, [b])[b] for a, b in pairs]
    assert np.mean(values) <= 0.5


def test_why_shows_each_seeds_calibrated_similarity():
    engine = service().engine
    playlist = engine.recommend(RecommendRequest(mode="similar", seeds=("p0",), rules=PlaylistRules(size=3)))
    shown = engine.sonic_similarity("p0", [t.id for t in playlist.tracks])
    for track in playlist.tracks:
        (contribution,) = track.why.contributions
        assert contribution.sonic_similarity == pytest.approx(shown[track.id])
