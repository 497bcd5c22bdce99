"""``recommender.catch_up`` (what /batch/progress does before it says "completed") against a real Milvus Lite
server and a real-schema Navidrome database: published writes are served at once, by every surface."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from navembed_api.recommender import RecommenderState, catch_up
from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.recommend import Recommender, SonicService, UnknownArtistError, VectorCache
from navembed_pipeline.lib.store import VectorRow, VectorStore
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db

DIM = 8
ARTISTS = ("Ada", "Ben", "Cleo", "Dan")


def row(track_id: str, axis: int) -> VectorRow:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[axis], vector[(axis + 1) % DIM] = 1.0, 0.3
    return VectorRow(track_id=track_id, segment=1, name=track_id, offset_seconds=0.0, duration_seconds=30.0,
                     model_id="dsp", model_version="1", fingerprint="fp", bucket="00", vectors={"embedding": vector})


@pytest.fixture
def library(tmp_path: Path) -> NavidromeLibrary:
    db = tmp_path / "navidrome.db"
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Music", str(tmp_path / "music"))],
                        tracks=[FixtureTrack(path=f"{a}/Album/{n} Song.flac", title=f"{a} song {n}", artist=a,
                                             album=f"{a} album") for a in ARTISTS for n in (1, 2)])
    return NavidromeLibrary(db)


@pytest.fixture
def state(vector_store: VectorStore, library: NavidromeLibrary) -> RecommenderState:
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    cache = VectorCache(vector_store, check_interval_s=3600.0, min_reload_interval_s=3600.0)  # no help from timers
    engine = Recommender(cache, library.get, default_models=("dsp",))
    return RecommenderState(engine, SonicService(engine, library.tracks), cache)


def by_artist(library: NavidromeLibrary) -> dict[str, list[str]]:
    tracks: dict[str, list[str]] = {}
    for track in library.tracks():
        tracks.setdefault(track.artist, []).append(track.id)
    return tracks


def test_published_writes_are_served_by_vectors_and_artists_once_caught_up(
        state: RecommenderState, vector_store: VectorStore, library: NavidromeLibrary):
    tracks = by_artist(library)
    vector_store.upsert("dsp", [row(t, i) for i, t in enumerate(tracks["Ada"] + tracks["Ben"])])
    vector_store.publish_writes()
    assert len(state.sonic.artists()) == 2  # loaded and built, as at the API's start
    vector_store.upsert("dsp", [row(t, 4 + k) for k, t in enumerate(tracks["Cleo"])])
    cleo = next(t.artist_id for t in library.tracks() if t.artist == "Cleo")
    with pytest.raises(UnknownArtistError):
        state.sonic.similar_artists(cleo, 5)
    vector_store.publish_writes()  # the run's last step
    assert asyncio.run(catch_up(state))
    artist_id, matches = state.sonic.similar_artists(cleo, 5)
    assert artist_id == cleo and {m.artist.name for m in matches} == {"Ada", "Ben"}
    assert set(tracks["Cleo"]) <= set(state.cache.field("dsp").track_ids)
    neighbours = state.sonic.similar_tracks(tracks["Cleo"][0], 10)
    assert tracks["Cleo"][1] in [n.track.id for n in neighbours]


def test_rows_a_run_is_still_writing_wait_for_its_publication(state: RecommenderState, vector_store: VectorStore,
                                                              library: NavidromeLibrary):
    tracks = by_artist(library)
    vector_store.upsert("dsp", [row(t, i) for i, t in enumerate(tracks["Ada"] + tracks["Ben"])])
    vector_store.publish_writes()
    state.sonic.artists()
    vector_store.upsert("dsp", [row(t, 6) for t in tracks["Dan"]])  # no publication: a run mid-way
    assert asyncio.run(catch_up(state))
    assert not set(tracks["Dan"]) & set(state.cache.field("dsp").track_ids)  # no full rescan per poll
    vector_store.publish_writes()
    assert asyncio.run(catch_up(state))
    assert set(tracks["Dan"]) <= set(state.cache.field("dsp").track_ids)


def test_without_a_recommender_there_is_nothing_to_catch_up():
    assert asyncio.run(catch_up(None))
