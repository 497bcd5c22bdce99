"""``GET /playlist/for-you``: a user's For you mix from Navidrome's listening history, explained like the
other playlist modes, with clear 4xx answers for unknown users and users without history."""

import math
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from navembed_api.errors import install_error_handlers
from navembed_api.routes import recommend
from navembed_pipeline.lib.library.history import NavidromeHistory
from tests.lib.recommend.test_mixes import world  # noqa: F401 - the fixture: a navidrome.db with 4 users


@pytest.fixture
def client(world, tmp_path: Path) -> TestClient:  # noqa: F811 - the imported fixture
    engine, _, _, _ = world
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(recommend.router)
    app.state.recommender = engine
    app.state.history = NavidromeHistory(tmp_path / "navidrome.db")
    return TestClient(app)


def test_for_you_by_user_name_or_id_is_explained_and_skips_recent_plays(client: TestClient, world) -> None:  # noqa: F811
    _, _, histories, _ = world
    body = client.get("/playlist/for-you", params={"user": "pia", "size": 5}).json()
    assert body["user"]["user_name"] == "pia" and body["mode"] == "similar"
    ids = [t["id"] for t in body["tracks"]]
    assert len(ids) == 5 and sum(t.startswith("p") for t in ids) >= 4
    assert not {"p0", "p2"} & set(ids) and set(body["seeds"]) == {"p0", "p1", "p2"}
    assert body["left_out_recent_plays"] == 2
    for track in body["tracks"]:
        contributions = track["why"]["contributions"]
        assert {c["ref"] for c in contributions} <= set(body["seeds"])
        assert math.fsum(c["value"] for c in contributions) == track["score"]
    by_id = client.get("/playlist/for-you", params={"user": histories["pia"].user.id, "size": 5}).json()
    assert [t["id"] for t in by_id["tracks"]] == ids
    dan = client.get("/playlist/for-you", params={"user": "DAN", "size": 5}).json()
    assert sum(t["id"].startswith("d") for t in dan["tracks"]) >= 4


def test_for_you_keeps_to_the_users_libraries(client: TestClient) -> None:
    body = client.get("/playlist/for-you", params={"user": "bea", "size": 20}).json()
    ids = {t["id"] for t in body["tracks"]}
    assert ids and not ids & {"b6", "b7"}  # bea sees only the first library


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"user": "nobody"}, 404, "no Navidrome user 'nobody'"),
    ({"user": "nob"}, 409, "no plays, ratings or stars"),
    ({}, 422, "user"),
    ({"user": "pia", "size": 0}, 422, "size"),
    ({"user": "pia", "models": "mert"}, 409, "mert"),
])
def test_for_you_refusals_are_clear_4xx(client: TestClient, params, status, message) -> None:
    response = client.get("/playlist/for-you", params=params)
    assert response.status_code == status, response.text
    assert response.json()["status"] == "error" and message in response.json()["message"]


def test_without_a_navidrome_database_it_says_so() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(recommend.router)
    app.state.recommender = object()
    response = TestClient(app).get("/playlist/for-you", params={"user": "pia"})
    assert response.status_code == 503 and "NAVEMBED_NAVIDROME_DB" in response.json()["message"]
