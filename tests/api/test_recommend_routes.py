"""The recommendation routes over a hand-made library: JSON shapes, errors, the OpenSubsonic shapes."""

import math

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from navembed_api.errors import install_error_handlers
from navembed_api.routes import recommend
from tests.lib.recommend.helpers import field, grouped_vectors, recommender, track

AXES = np.eye(8, dtype=np.float32)
VECTORS = grouped_vectors({"p": AXES[0], "d": AXES[1], **{f"x{i}": AXES[2 + i] for i in range(6)}}, 4,
                          spread=0.15, seed=3)  # piano, drums and six other groups


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(recommend.router)
    app.state.recommender = recommender([field("dsp", VECTORS)], [track(t) for t in VECTORS],
                                        default_models=("dsp",))
    return TestClient(app)


def test_a_playlist_answers_tracks_with_explanations(client: TestClient):
    response = client.post("/playlist/similar", json={"seeds": ["p0"], "size": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["mode"], body["models"], body["fusion"]) == ("similar", ["dsp"], "weighted")
    assert [t["id"][0] for t in body["tracks"]] == ["p", "p", "p"]
    first = body["tracks"][0]
    assert set(first) >= {"id", "title", "artist", "album", "score", "why"}
    values = [c["value"] for c in first["why"]["contributions"]]
    assert math.fsum(values) == first["score"]


def test_path_mode_takes_start_end_and_steps(client: TestClient):
    body = client.post("/playlist/path", json={"start": "p0", "end": "d0", "steps": 2}).json()
    assert body["tracks"][0]["id"] == "p0" and body["tracks"][-1]["id"] == "d0"


@pytest.mark.parametrize(("path", "payload", "status", "message"), [
    ("/playlist/similar", {"seeds": ["nope"]}, 404, "unknown track id"),
    ("/playlist/text", {"prompts": ["piano"]}, 422, "text tower"),
    ("/playlist/similar", {"seeds": ["p0"], "models": ["mert"]}, 409, "mert"),
    ("/playlist/mixed", {"seeds": ["p0"]}, 422, "prompt"),
    ("/playlist/dance", {"seeds": ["p0"]}, 422, "mode"),
])
def test_requests_that_cannot_be_answered_are_4xx_errors(client: TestClient, path, payload, status, message):
    response = client.post(path, json=payload)
    assert response.status_code == status
    assert response.json()["status"] == "error" and message in response.json()["message"]


def test_similar_by_get(client: TestClient):
    body = client.get("/similar/d1", params={"size": 2}).json()
    assert [t["id"][0] for t in body["tracks"]] == ["d", "d"]


def test_get_sonic_similar_tracks_speaks_opensubsonic(client: TestClient):
    body = client.get("/rest/getSonicSimilarTracks", params={"id": "p0", "count": 3}).json()["subsonic-response"]
    assert body["status"] == "ok" and body["openSubsonic"] is True
    matches = body["sonicMatch"]
    assert len(matches) == 3 and all(m["entry"]["id"].startswith("p") for m in matches)
    assert all(0.0 <= m["similarity"] <= 1.0 for m in matches)
    assert [m["similarity"] for m in matches] == sorted((m["similarity"] for m in matches), reverse=True)


def test_find_sonic_path_starts_and_ends_with_the_songs(client: TestClient):
    body = client.get("/rest/findSonicPath", params={"startSongId": "p0", "endSongId": "d0", "count": 5}).json()
    matches = body["subsonic-response"]["sonicMatch"]
    assert matches[0]["entry"]["id"] == "p0" and matches[-1]["entry"]["id"] == "d0"
    assert matches[0]["similarity"] == 1.0


def test_opensubsonic_errors_use_its_error_shape(client: TestClient):
    body = client.get("/rest/getSonicSimilarTracks", params={"id": "nope"}).json()["subsonic-response"]
    assert body["status"] == "failed" and body["error"]["code"] == 70
