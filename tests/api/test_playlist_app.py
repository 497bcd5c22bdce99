"""The recommendation routes through the real app on the sample library (real Milvus Lite, dsp vectors)."""

import pytest

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.sample_data.sample_library import write_sample_library
from tests.api.app_fixtures import api_settings, running_app
from tests.lib.store.milvus_fixture import drop_everything
from tests.pipeline.helpers import embed, navembed_instance


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, milvus_uri):
    """The app over the sample library, embedded once for the module: its tests only ask."""
    root = tmp_path_factory.mktemp("playlist-app")
    library = write_sample_library(root / "library", seconds=4.0)
    drop_everything(milvus_uri)
    try:
        with navembed_instance() as instance:
            embed(library, milvus_uri, instance)
        settings = api_settings(root, milvus_uri=milvus_uri, navidrome_db=library.db_path)
        with running_app(settings) as client:
            yield client, {t.title: t.id for t in NavidromeLibrary(library.db_path).tracks()}
    finally:
        drop_everything(milvus_uri)


def test_each_mode_answers_through_the_app(app_client) -> None:
    client, ids = app_client
    similar = client.post("/playlist/similar", json={"seeds": [ids["Morning Keys"]], "models": ["dsp"], "size": 5})
    assert similar.status_code == 200, similar.text
    body = similar.json()
    assert body["mode"] == "similar" and 0 < len(body["tracks"]) <= 5
    assert ids["Morning Keys"] not in {t["id"] for t in body["tracks"]}
    for track in body["tracks"]:
        assert {"id", "title", "artist", "album", "score", "why"} <= set(track)
    path = client.post("/playlist/path", json={"start": ids["Morning Keys"], "end": ids["Breakbeat"], "steps": 3,
                                               "models": ["dsp"]})
    assert path.status_code == 200, path.text
    tracks = path.json()["tracks"]
    assert tracks[0]["id"] == ids["Morning Keys"] and tracks[-1]["id"] == ids["Breakbeat"]
    assert client.get(f"/similar/{ids['Breakbeat']}").status_code == 200


def test_unknown_seed_is_a_4xx_with_a_message(app_client) -> None:
    client, _ = app_client
    response = client.post("/playlist/similar", json={"seeds": ["no-such-track"], "models": ["dsp"]})
    assert 400 <= response.status_code < 500
    assert response.json()["status"] == "error" and "no-such-track" in response.json()["message"]
