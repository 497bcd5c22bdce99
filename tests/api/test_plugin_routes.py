"""The Navidrome plugin's HTTP contract (/api/*) over a hand-made library, and the app's lifespan owning the
recommender. The byte-for-byte run against real processes is test_plugin_e2e.py."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from navembed_api.errors import install_error_handlers
from navembed_api.recommender import FingerprintGroups
from navembed_api.routes import plugin, recommend
from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.duplicates.chromaprint import fingerprint_pcm
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.recommend.sonic import SonicService
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from navembed_pipeline.sample_data.synth import render
from tests.api.app_fixtures import api_settings, running_app
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri  # noqa: F401 - pytest fixtures
from tests.lib.recommend.helpers import field, recommender
from tests.lib.recommend.test_sonic import VECTORS, tracks_for

TRACK_KEYS = {"item_id": str, "title": str, "author": str, "album": str, "distance": float}


def app_with(token: str | None = None) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(plugin.router)
    app.include_router(recommend.router)
    tracks = tracks_for(VECTORS)
    engine = recommender([field("dsp", VECTORS)], tracks, default_models=("dsp",))
    app.state.recommender, app.state.sonic = engine, SonicService(engine, lambda: tracks)
    app.state.services = SimpleNamespace(settings=ApiSettings(plugin_token=token, socket_path=None))
    return TestClient(app)


@pytest.fixture
def client() -> TestClient:
    return app_with()


def assert_track(item: dict) -> None:
    assert set(item) == set(TRACK_KEYS) and all(isinstance(item[k], t) for k, t in TRACK_KEYS.items())
    assert 0.0 <= item["distance"] <= 1.0


def test_similar_tracks_answer_the_plugins_struct_most_similar_first(client: TestClient):
    response = client.get("/api/similar_tracks?eliminate_duplicates=true&item_id=p0&n=3&radius_similarity=false")
    assert response.status_code == 200, response.text
    items = response.json()
    assert len(items) == 3 and "p0" not in [i["item_id"] for i in items]
    for item in items:
        assert_track(item)
    assert [i["distance"] for i in items] == sorted(i["distance"] for i in items)
    assert items[0]["author"] == "Band p"


def test_n_zero_is_an_empty_list_and_n_beyond_the_cap_is_capped(client: TestClient):
    assert client.get("/api/similar_tracks", params={"item_id": "p0", "n": 0}).json() == []
    many = client.get("/api/similar_tracks", params={"item_id": "p0", "n": 100000,
                                                     "eliminate_duplicates": "false"}).json()
    assert len(many) == len(VECTORS) - 1


def test_find_path_answers_a_path_object_from_start_to_end(client: TestClient):
    body = client.get("/api/find_path?count=5&end_song_id=d0&max_steps=5&mood_pct=100&path_fix_size=false"
                      "&start_song_id=p0").json()
    assert set(body) == {"path"} and 2 <= len(body["path"]) <= 5
    assert body["path"][0]["item_id"] == "p0" and body["path"][-1]["item_id"] == "d0"
    assert body["path"][0]["distance"] == 0.0
    for item in body["path"]:
        assert_track(item)


def test_similar_artists_name_navidrome_artist_ids_and_library_songs(client: TestClient):
    body = client.get("/api/similar_artists?artist=artist-p&include_component_matches=true&n=2").json()
    assert [a["artist_id"] for a in body][0] == "artist-q" and len(body) == 2
    match = body[0]["component_matches"][0]
    assert {s["item_id"][0] for s in match["artist1_representative_songs"]} == {"p"}
    assert {s["item_id"][0] for s in match["artist2_representative_songs"]} == {"q"}
    assert all(s["title"].startswith("Title ") for s in match["artist2_representative_songs"])
    plain = client.get("/api/similar_artists?artist=artist-p&include_component_matches=false&n=2").json()
    assert [a["component_matches"] for a in plain] == [[], []]


@pytest.mark.parametrize("url", ["/api/similar_tracks?item_id=nope&n=3",
                                 "/api/find_path?start_song_id=p0&end_song_id=nope",
                                 "/api/similar_artists?artist=nobody&n=3"])
def test_unknown_ids_are_404_json(client: TestClient, url: str):
    response = client.get(url)
    assert response.status_code == 404 and response.json()["status"] == "error"


def test_a_configured_token_is_required_and_an_unconfigured_one_ignored():
    guarded = app_with("plug-token")
    url = "/api/similar_tracks?item_id=p0&n=1"
    assert guarded.get(url).status_code == 401
    assert guarded.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get(url, headers={"Authorization": "Bearer plug-token"}).status_code == 200
    assert app_with(None).get(url, headers={"Authorization": "Bearer anything"}).status_code == 200


# ----- the OpenSubsonic pair --------------------------------------------------------------------
def subsonic(client: TestClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()["subsonic-response"]


@pytest.mark.parametrize(("url", "code"), [
    ("/rest/getSonicSimilarTracks", 10), ("/rest/getSonicSimilarTracks?id=nope", 70),
    ("/rest/getSonicSimilarTracks?id=p0&count=-1", 0), ("/rest/getSonicSimilarTracks?id=p0&count=x", 0),
    ("/rest/findSonicPath?startSongId=p0", 10), ("/rest/findSonicPath?startSongId=p0&endSongId=nope", 70),
    ("/rest/findSonicPath?startSongId=p0&endSongId=d0&count=0", 0),
])
def test_opensubsonic_errors_are_inside_the_envelope_at_http_200(client: TestClient, url: str, code: int):
    body = subsonic(client, url)
    assert body["status"] == "failed" and body["error"]["code"] == code and body["error"]["message"]


def test_opensubsonic_count_bounds(client: TestClient):
    assert subsonic(client, "/rest/getSonicSimilarTracks?id=p0&count=0")["sonicMatch"] == []
    one = subsonic(client, "/rest/findSonicPath?startSongId=p0&endSongId=d0&count=1")["sonicMatch"]
    assert [m["entry"]["id"] for m in one] == ["p0"] and one[0]["similarity"] == 1.0


def test_opensubsonic_similarity_is_calibrated(client: TestClient):
    matches = subsonic(client, "/rest/getSonicSimilarTracks?id=p0&count=30")["sonicMatch"]
    unrelated = [m["similarity"] for m in matches if m["entry"]["id"][0] not in "pq"]
    assert unrelated and sum(unrelated) / len(unrelated) < 0.3  # (1 + cos) / 2 gave these ~0.5


# ----- the lifespan -----------------------------------------------------------------------------
def test_the_recommender_is_built_at_startup_not_on_the_first_request(tmp_path: Path, milvus_uri: str):  # noqa: F811
    db = tmp_path / "navidrome.db"
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Music", str(tmp_path / "music"))],
                        tracks=[FixtureTrack("a/one.flac", title="One", artist="A")])
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=db)) as client:
        assert client.app.state.recommender is not None and client.app.state.sonic is not None
        response = client.get("/api/similar_tracks", params={"item_id": "nope", "n": 3})
        assert response.status_code == 404 and "unknown track" in response.json()["message"]


def test_without_a_navidrome_database_the_routes_say_so_with_503(tmp_path: Path, milvus_uri: str):  # noqa: F811
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=None)) as client:
        response = client.get("/api/similar_tracks", params={"item_id": "x"})
        assert response.status_code == 503 and "NAVEMBED_NAVIDROME_DB" in response.json()["message"]


# ----- duplicate knowledge from the pipeline's fingerprint file ---------------------------------------
def test_recording_groups_come_from_the_fingerprint_file_once_it_exists(tmp_path: Path):
    groups = FingerprintGroups(tmp_path / "fingerprints.sqlite", check_interval_s=0.0)
    assert groups.index.ids_for(["a", "b"]).tolist() == [-1, -1] and not groups.path.exists()  # never created
    song, other = render("piano", seconds=30, seed=1), render("drums", seconds=30, seed=2)
    store = FingerprintStore(groups.path)
    store.put("a", "v1", [(1, "A", fingerprint_pcm(song, 44100))])
    store.put("b", "v1", [(1, "B", fingerprint_pcm(0.5 * song, 44100))])  # the same recording, quieter
    store.put("c", "v1", [(1, "C", fingerprint_pcm(other, 44100))])
    a, b, c = groups.index.ids_for(["a", "b", "c"]).tolist()
    assert a == b != c and -1 not in (a, c)
