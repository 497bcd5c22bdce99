"""Each playlist rule, on a hand-made library where the ranking without rules is known.

The seed points along e0; track ``t<i>`` has cosine ``0.9 - 0.04 i`` to it and its own orthogonal
direction, so without rules the playlist is t0, t1, t2, ... and no two tracks are alike.
"""

import dataclasses

import numpy as np
import pytest

from navembed_pipeline.lib.recommend import PlaylistRules, RecommendRequest
from tests.lib.recommend.helpers import field, recommender, track

COUNT = 10
DIM = COUNT + 12


def ladder(index: int) -> np.ndarray:
    a = 0.9 - 0.04 * index
    vector = np.zeros(DIM, dtype=np.float32)
    vector[0], vector[index + 1] = a, np.sqrt(1 - a * a)
    return vector


def axis(i: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[i] = 1.0
    return vector


VECTORS = {"seed": axis(0), **{f"t{i}": ladder(i) for i in range(COUNT)}}
TRACKS = [track("seed", artist="Seeder"), *[track(f"t{i}") for i in range(COUNT)]]


def playlist(rules: PlaylistRules, *, vectors=VECTORS, tracks=TRACKS, seeds=("seed",)) -> list[str]:
    engine = recommender([field("dsp", vectors)], tracks)
    answer = engine.recommend(RecommendRequest(mode="similar", seeds=seeds, rules=rules))
    return [t.id for t in answer.tracks]


def with_track(track_id: str, vector: np.ndarray, **tags):
    return {**VECTORS, track_id: vector}, [*TRACKS, track(track_id, **tags)]


def retagged(changes: dict[str, dict]):
    return [dataclasses.replace(t, **changes.get(t.id, {})) for t in TRACKS]


def test_without_rules_the_playlist_follows_the_score_and_leaves_out_the_seed():
    assert playlist(PlaylistRules(size=4)) == ["t0", "t1", "t2", "t3"]


def test_excluded_tracks_are_left_out():
    assert playlist(PlaylistRules(size=3, exclude_tracks=frozenset({"t1"}))) == ["t0", "t2", "t3"]


def test_excluded_artists_match_artist_or_album_artist_in_any_case():
    tracks = retagged({"t0": {"artist": "Band"}, "t2": {"album_artist": "BAND"}})
    assert playlist(PlaylistRules(size=3, exclude_artists=frozenset({"band"})), tracks=tracks) == ["t1", "t3", "t4"]


def test_excluded_albums_are_left_out():
    tracks = retagged({"t0": {"album": "Live"}, "t1": {"album": "live"}})
    assert playlist(PlaylistRules(size=2, exclude_albums=frozenset({"Live"})), tracks=tracks) == ["t2", "t3"]


def test_excluded_libraries_are_left_out():
    tracks = retagged({"t0": {"library_id": 2}})
    assert playlist(PlaylistRules(size=2, exclude_libraries=frozenset({2})), tracks=tracks) == ["t1", "t2"]


def test_tracks_outside_the_duration_bounds_are_left_out():
    tracks = retagged({"t0": {"duration_seconds": 30.0}, "t1": {"duration_seconds": 900.0}})
    assert playlist(PlaylistRules(size=2, min_duration=60, max_duration=600), tracks=tracks) == ["t2", "t3"]


def test_max_per_artist_caps_each_artist():
    tracks = retagged({"t0": {"artist": "Same"}, "t1": {"artist": "Same"}, "t2": {"artist": "Same"}})
    assert playlist(PlaylistRules(size=3, max_per_artist=2), tracks=tracks) == ["t0", "t1", "t3"]


def test_no_consecutive_artist_moves_a_same_artist_track_further_down():
    tracks = retagged({"t0": {"artist": "Same"}, "t1": {"artist": "Same"}})
    assert playlist(PlaylistRules(size=3, no_consecutive_artist=True), tracks=tracks) == ["t0", "t2", "t1"]


def test_a_near_identical_copy_appears_once():
    vectors, tracks = with_track("t0copy", ladder(0) + 0.01 * axis(DIM - 1))
    collapsed = playlist(PlaylistRules(size=3), vectors=vectors, tracks=tracks)
    assert len({"t0", "t0copy"} & set(collapsed)) == 1 and len(collapsed) == 3
    kept = playlist(PlaylistRules(size=3, collapse_duplicates=False), vectors=vectors, tracks=tracks)
    assert {"t0", "t0copy"} <= set(kept)


def test_a_copy_of_the_seed_is_not_recommended():
    vectors, tracks = with_track("seedcopy", axis(0) + 0.01 * axis(DIM - 1))
    assert playlist(PlaylistRules(size=2), vectors=vectors, tracks=tracks) == ["t0", "t1"]


def test_recently_played_tracks_and_their_copies_are_avoided():
    vectors, tracks = with_track("t1copy", ladder(1) + 0.01 * axis(DIM - 1))
    assert playlist(PlaylistRules(size=3, previous=("t0", "t1")), vectors=vectors, tracks=tracks) == ["t2", "t3", "t4"]


def test_tracks_no_longer_in_the_library_are_left_out():
    tracks = [t for t in TRACKS if t.id != "t0"]
    assert playlist(PlaylistRules(size=2), tracks=tracks) == ["t1", "t2"]


def test_diversity_trades_relevance_for_variety():
    e0 = axis(0)
    cluster = {f"c{i}": e0 + 0.3 * axis(1) + 0.2 * axis(2 + i) for i in range(4)}  # alike: cosine 0.96
    others = {f"o{i}": e0 + 0.6 * axis(6 + i) for i in range(4)}  # less relevant, unlike each other
    far = {f"f{i}": 0.3 * e0 + axis(10 + i) for i in range(4)}
    vectors = {"seed": e0, **cluster, **others, **far}
    tracks = [track(t) for t in vectors]
    # Duplicates are another rule: on this toy library the cluster's 0.96 is as close as copies get
    # (calibrated on its own near-orthogonal pairs), so they are left in here to see diversity alone.
    focused = playlist(PlaylistRules(size=4, collapse_duplicates=False), vectors=vectors, tracks=tracks)
    varied = playlist(PlaylistRules(size=4, diversity=0.5, collapse_duplicates=False), vectors=vectors, tracks=tracks)
    assert all(t.startswith("c") for t in focused)
    assert varied[0].startswith("c") and sum(t.startswith("o") for t in varied) >= 2


def test_the_search_widens_until_the_rules_let_the_playlist_fill():
    rng = np.random.default_rng(4)
    seed = axis(0)
    near = {f"n{i}": seed + 0.5 * rng.standard_normal(DIM) for i in range(500)}  # all by one excluded artist
    rest = {f"r{i}": -seed + rng.standard_normal(DIM) for i in range(20)}
    vectors = {"seed": seed, **near, **rest}
    tracks = [track("seed"), *[track(t, artist="Crowd") for t in near], *[track(t) for t in rest]]
    found = playlist(PlaylistRules(size=5, exclude_artists=frozenset({"crowd"})), vectors=vectors, tracks=tracks)
    assert len(found) == 5 and all(t.startswith("r") for t in found)


def test_the_playlist_is_shorter_when_the_library_runs_out():
    assert playlist(PlaylistRules(size=50)) == [f"t{i}" for i in range(COUNT)]


@pytest.mark.parametrize("rules", [PlaylistRules(size=0), PlaylistRules(diversity=1.5), PlaylistRules(max_per_artist=0),
                                   PlaylistRules(min_duration=10, max_duration=5)])
def test_impossible_rules_are_refused(rules):
    from navembed_pipeline.lib.recommend import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        playlist(rules)
