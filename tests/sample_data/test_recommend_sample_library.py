"""Every mode end to end on the generated sample library: its navidrome.db, a real Milvus Lite server,
dsp vectors and tiny-MuQ vectors written by the real Dagster assets, read through VectorCache.

The tiny MuQ is randomly initialised, so its text vectors mean nothing musically: text and mixed
mode are checked for their mechanics here; what negative prompts do to a group is specified with
chosen vectors in test_recommend_engine.py, and with dsp negative tracks below.
"""

import math
from collections.abc import Iterator

import numpy as np
import pytest

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.recommend import (NoVectorsError, PathSpec, PlaylistRules, Recommender, RecommendRequest,
                                             UnknownTrackError, VectorCache)
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.sample_library import write_sample_library
from tests.lib.store.milvus_fixture import drop_everything
from tests.lib.models.tiny_muq import build_tiny_muq
from tests.pipeline.helpers import embed, navembed_instance

SECONDS = 8.0  # dsp v2 scores the MP3 copy of an 8 s clip 0.989, of a 4 s one 0.976 (< duplicate_cosine)


@pytest.fixture(scope="module")
def library(tmp_path_factory, milvus_uri) -> Iterator[tuple[NavidromeLibrary, VectorStore, object]]:
    """The sample library embedded once with dsp and the tiny MuQ; yields (library, store, muq model)."""
    root = tmp_path_factory.mktemp("recommend")
    sample = write_sample_library(root / "library", seconds=SECONDS)
    models_dir = build_tiny_muq(root / "models")
    drop_everything(milvus_uri)
    with navembed_instance() as instance:
        assert embed(sample, milvus_uri, instance, models=("dsp", "muq"),
                     job_config={"models_dir": str(models_dir)}).success
    store = VectorStore(milvus_uri)
    muq = create_model("muq", ModelOptions(device="cpu", models_dir=models_dir))
    try:
        yield NavidromeLibrary(sample.db_path), store, muq
    finally:
        muq.shutdown()
        store.close()
        drop_everything(milvus_uri)


@pytest.fixture
def engine(library) -> Recommender:
    navidrome, store, muq = library
    return Recommender(VectorCache(store, background=False), navidrome.get, embed_text=muq.embed_text)


@pytest.fixture(scope="module")
def ids(library) -> dict[str, list[str]]:
    """Track ids by title (the MP3 copy of Morning Keys shares its title)."""
    found: dict[str, list[str]] = {}
    for track in library[0].tracks():
        found.setdefault(track.title, []).append(track.id)
    return found


def one(ids: dict[str, list[str]], title: str) -> str:
    return ids[title][0]


def titles(playlist) -> list[str]:
    return [t.title for t in playlist.tracks]


def test_similar_plays_related_tracks_without_the_seed_or_its_copy(engine, ids):
    seed, copy = ids["Morning Keys"]
    playlist = engine.recommend(RecommendRequest(mode="similar", seeds=(seed,), models=("dsp",),
                                                 rules=PlaylistRules(size=5)))
    assert len(playlist.tracks) == 5
    assert {seed, copy}.isdisjoint(t.id for t in playlist.tracks)  # the MP3 copy is the same recording
    assert "Evening Keys" in titles(playlist)[:2]
    assert all(t.artist and t.album for t in playlist.tracks)


def test_a_negative_track_removes_its_group(engine, ids):
    request = dict(mode="similar", seeds=(one(ids, "White Room"),), models=("dsp",), rules=PlaylistRules(size=3))
    drums = {"Breakbeat", "Rimshot Rush"}
    assert drums <= set(titles(engine.recommend(RecommendRequest(**request))))
    steered = engine.recommend(RecommendRequest(**request, negative_tracks=(one(ids, "Breakbeat"),)))
    assert drums.isdisjoint(titles(steered)) and len(steered.tracks) == 3
    assert all(t.why.penalty is None or t.why.penalty.ref == one(ids, "Breakbeat") for t in steered.tracks)


def test_text_searches_the_joint_space_of_muq(engine):
    playlist = engine.recommend(RecommendRequest(mode="text", prompts=("calm piano",), negative_prompts=("rock",),
                                                 models=("muq", "dsp"), rules=PlaylistRules(size=4)))
    assert len(playlist.tracks) == 4
    for track in playlist.tracks:
        assert {(c.model, c.field, c.source) for c in track.why.contributions} == {("muq", "mulan", "prompt")}
        assert math.fsum(track.why.values()) == track.score


def test_mixed_fuses_seed_tracks_in_both_models_with_the_prompt(engine, ids):
    playlist = engine.recommend(RecommendRequest(mode="mixed", seeds=(one(ids, "Warm Pads"),), prompts=("sad",),
                                                 models=("muq", "dsp"), weights={"muq": 1, "dsp": 3},
                                                 rules=PlaylistRules(size=4)))
    parts = {(c.model, c.field, c.source) for c in playlist.tracks[0].why.contributions}
    assert parts == {("muq", "embedding", "seed"), ("muq", "mulan", "prompt"), ("dsp", "embedding", "seed")}
    assert playlist.weights == pytest.approx({"muq": 0.25, "dsp": 0.75})


def test_path_walks_from_a_to_b_getting_closer_to_b(engine, ids, library):
    start, end = one(ids, "Morning Keys"), one(ids, "Breakbeat")
    playlist = engine.recommend(RecommendRequest(mode="path", path=PathSpec(start, end, steps=4), models=("dsp",)))
    path = [t.id for t in playlist.tracks]
    assert path[0] == start and path[-1] == end and len(path) >= 3
    vectors = library[1].get_vectors("dsp", path)
    b = vectors[end][0]
    closeness = [float(np.max(vectors[t] @ b)) for t in path]
    assert all(later > earlier for earlier, later in zip(closeness, closeness[1:], strict=False))


def test_unknown_tracks_and_models_without_vectors_are_clear_errors(engine):
    with pytest.raises(UnknownTrackError, match="no-such-track"):
        engine.recommend(RecommendRequest(mode="similar", seeds=("no-such-track",)))
    with pytest.raises(NoVectorsError, match="mert"):
        engine.recommend(RecommendRequest(mode="text", prompts=("piano",), models=("muq", "mert")))
