"""Tags where a person looks, and tag text search, through the real app over a real Milvus Lite store.

The store holds ``musicnn`` rows as the pipeline writes them (an ``embedding`` and the 50 raw MSD tag
scores in ``tags``) for a Navidrome-schema library; MuQ-MuLan's weights are absent, so text is read as
tags. (The scores are chosen here to test ranking; ``test_musicnn_tag_query.py`` runs the real model.)
"""

from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.models.musicnn import tag_names
from navembed_pipeline.lib.store import VectorRow, VectorStore
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from tests.api.app_fixtures import api_settings, running_app
from tests.lib.store.milvus_fixture import drop_everything

NAMES = tag_names("MSD_musicnn")


def scores(**wanted: float) -> np.ndarray:
    vector = np.linspace(0.06, 0.01, len(NAMES)).astype(np.float32)  # distinct, low: no ties
    for name, value in wanted.items():
        vector[NAMES.index(name.replace("_", " "))] = value
    return vector


LIBRARY = {
    "Night Drive": scores(chill=0.7, electronic=0.8, electronica=0.5),
    "Synth Study": scores(electronic=0.85, electro=0.4),
    "Porch": scores(chill=0.75, acoustic=0.6),
    "Riff": scores(rock=0.9, hard_rock=0.5),
    "Thunder": scores(rock=0.85, metal=0.8, heavy_metal=0.6),
    "Ballad": scores(female_vocalists=0.8, pop=0.5, beautiful=0.4),
    "Standards": scores(jazz=0.8, instrumental=0.3),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory, milvus_uri):
    """The app over a small library whose musicnn rows are in the store; (client, title → id)."""
    root: Path = tmp_path_factory.mktemp("tags-api")
    ids = create_navidrome_db(root / "navidrome.db", libraries=[FixtureLibrary(1, "Music", str(root / "music"))],
                              tracks=[FixtureTrack(path=f"{t}.flac", title=t, artist=f"{t} Band", album=t)
                                      for t in LIBRARY])
    by_title = dict(zip(LIBRARY, ids, strict=True))
    drop_everything(milvus_uri)
    store = VectorStore(milvus_uri)
    store.ensure_collection("musicnn", {"embedding": 8, "tags": len(NAMES)})
    rng = np.random.default_rng(5)
    store.upsert("musicnn", [VectorRow(track_id=by_title[t], segment=1, name=t, offset_seconds=0.0,
                                       duration_seconds=180.0, model_id="musicnn", model_version="musicnn:test",
                                       fingerprint="f", bucket=bucket_of(by_title[t]),
                                       vectors={"embedding": rng.standard_normal(8).astype(np.float32),
                                                "tags": tags})
                             for t, tags in LIBRARY.items()])
    store.close()
    try:
        settings = api_settings(root, milvus_uri=milvus_uri, navidrome_db=root / "navidrome.db")
        FailureLog(settings.failures_db).record("dsp", [(by_title["Standards"], "could not decode: test")])
        with running_app(settings) as client:
            yield client, by_title
    finally:
        drop_everything(milvus_uri)


def titles(body: dict) -> list[str]:
    return [t["title"] for t in body["tracks"]]


def test_a_tag_phrase_finds_the_tracks_with_those_tags(app):
    client, _ = app
    response = client.post("/playlist/text", json={"prompts": ["chill electronic"], "models": ["musicnn"], "size": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text_model"] == "musicnn-tags"
    assert titles(body)[0] == "Night Drive" and set(titles(body)[1:]) == {"Synth Study", "Porch"}
    first = body["tracks"][0]
    assert first["why"]["contributions"][0]["ref"] == "chill electronic"
    assert first["why"]["contributions"][0]["similarity"] == pytest.approx(0.75)  # mean of 0.7 and 0.8


def test_rock_but_not_metal_puts_metal_below_plain_rock(app):
    client, _ = app
    body = client.post("/playlist/text", json={"prompts": ["rock but not metal"], "models": ["musicnn"],
                                               "size": 7}).json()
    assert titles(body)[0] == "Riff"
    thunder = next(t for t in body["tracks"] if t["title"] == "Thunder")
    assert thunder["why"]["penalty"]["ref"] == "metal" and thunder["why"]["penalty"]["value"] < 0
    assert titles(body).index("Thunder") > 1


def test_recommendations_show_each_tracks_top_tags(app):
    client, ids = app
    body = client.get(f"/similar/{ids['Riff']}", params={"models": ["musicnn"], "size": 3}).json()
    for track in body["tracks"]:
        tags = track["why"]["tags"]
        assert len(tags) == 5 and tags[0]["score"] >= tags[-1]["score"]
    ballad = client.post("/playlist/text", json={"prompts": ["female vocalists"], "models": ["musicnn"],
                                                 "size": 1}).json()["tracks"][0]
    assert ballad["title"] == "Ballad"
    assert [t["tag"] for t in ballad["why"]["tags"][:3]] == ["female vocalists", "pop", "beautiful"]


def test_an_unknown_word_is_a_422_listing_the_vocabulary(app):
    client, _ = app
    response = client.post("/playlist/text", json={"prompts": ["chill vaporwave"], "models": ["musicnn"]})
    assert response.status_code == 422
    body = response.json()
    assert body["status"] == "error" and "'vaporwave'" in body["message"]
    assert body["unknown"] == ["vaporwave"] and body["vocabulary"] == list(NAMES)


def test_embed_text_reads_tags_when_mulan_is_absent(app):
    client, _ = app
    response = client.post("/embed_text", json={"text": "female vocalists but not rock"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["text_model"], body["dimension"]) == ("musicnn", "musicnn-tags", 50)
    assert body["tags"] == {"wanted": ["female vocalists"], "avoided": ["rock"]}
    assert body["embedding"][NAMES.index("female vocalists")] == 1.0 and body["embedding"][0] == -1.0
    wrong = client.post("/embed_text", json={"text": "shoegaze"})
    assert wrong.status_code == 422 and wrong.json()["vocabulary"] == list(NAMES)


def test_track_details_give_metadata_presence_and_tags(app):
    client, ids = app
    response = client.get(f"/tracks/{ids['Standards']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["artist"], body["in_library"]) == ("Standards", "Standards Band", True)
    assert body["models"]["musicnn"] == {"stored": True, "segments": 1, "model_version": "musicnn:test"}
    assert body["models"]["dsp"] == {"stored": False, "failed": "could not decode: test"}
    assert body["models"]["mert"] == {"stored": False}
    assert body["top_tags"][0] == {"tag": "jazz", "score": pytest.approx(0.8)}
    assert len(body["tags"]) == 50 and body["tags"][1]["tag"] == "instrumental"
    missing = client.get("/tracks/no-such-track")
    assert missing.status_code == 404 and "no-such-track" in missing.json()["message"]
