"""The HTTP API without Dagster: auth, validation, errors, /embed_text, /models, /health."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.app_fixtures import ADMIN, api_settings, running_app
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri  # noqa: F401 - pytest fixtures
from tests.lib.models.tiny_muq import build_tiny_muq


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[TestClient]:  # noqa: F811
    with running_app(api_settings(tmp_path_factory.mktemp("app"), milvus_uri=milvus_uri)) as client:
        yield client


def assert_error(response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "message"} and body["status"] == "error"
    for needle in needles:
        assert needle in body["message"]


# ----- admin token ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [("post", "/batch/start"), ("get", "/batch/progress"),
                                              ("post", "/batch/cancel")])
def test_batch_endpoints_need_the_admin_token(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={})
    assert_error(response, 401, "admin token")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(client.request(method, path, json={}, headers={"Authorization": "Bearer wrong"}), 401)


def test_without_a_configured_token_the_control_endpoints_refuse(tmp_path: Path, milvus_uri: str) -> None:  # noqa: F811
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, admin_token=None)) as client:
        assert_error(client.get("/batch/progress", headers=ADMIN), 503, "NAVEMBED_ADMIN_TOKEN")
        assert_error(client.post("/batch/start", json={"models": ["dsp"]}), 503, "NAVEMBED_ADMIN_TOKEN")
        assert client.get("/health").json()["batch_control"] is False


def test_a_blank_token_counts_as_none(tmp_path: Path, milvus_uri: str) -> None:  # noqa: F811
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, admin_token="  ")) as client:
        assert_error(client.get("/batch/progress", headers={"Authorization": "Bearer   "}), 503)


# ----- validation --------------------------------------------------------------------------------
def test_an_unknown_model_is_422_naming_the_known_ones(client: TestClient) -> None:
    response = client.post("/batch/start", json={"models": ["muq", "bogus"], "clearExisting": True}, headers=ADMIN)
    assert_error(response, 422, "models.1", "'muq', 'mert', 'latent' or 'dsp'")


def test_a_model_without_weights_is_422_naming_the_download_command(client: TestClient) -> None:
    response = client.post("/batch/start", json={"models": ["mert"]}, headers=ADMIN)
    assert_error(response, 422, "navembed models download mert")


@pytest.mark.parametrize("body", [{"models": "dsp"}, {"models": [1, 2]}, {"clearExisting": "maybe"}, []])
def test_malformed_start_bodies_are_422_with_the_field(client: TestClient, body: object) -> None:
    response = client.post("/batch/start", json=body, headers=ADMIN)
    assert_error(response, 422, "invalid request")


def test_an_empty_model_list_is_422(client: TestClient) -> None:
    assert_error(client.post("/batch/start", json={"models": []}, headers=ADMIN), 422, "at least one model")


def test_dagster_down_is_a_503_that_says_so(client: TestClient) -> None:
    assert_error(client.get("/batch/progress", headers=ADMIN), 503, "unreachable", "navembed up")
    assert_error(client.post("/batch/start", json={"models": ["dsp"]}, headers=ADMIN), 503, "unreachable")
    assert_error(client.post("/batch/cancel", headers=ADMIN), 503, "unreachable")


def test_unknown_routes_use_the_same_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "Not Found")
    assert_error(client.get("/embed_text"), 405)


# ----- /embed_text -------------------------------------------------------------------------------
def test_a_model_without_a_text_tower_is_422_that_says_so(client: TestClient) -> None:
    response = client.post("/embed_text", json={"text": "upbeat dance music", "model": "dsp"})
    assert_error(response, 422, "no text tower", "muq")


@pytest.mark.parametrize("body", [{"text": "", "model": "muq"}, {"model": "muq"}, {"text": "x" * 2001},
                                  {"text": "   "}])
def test_bad_text_requests_are_422(client: TestClient, body: dict) -> None:
    assert_error(client.post("/embed_text", json=body), 422)


def test_unknown_text_model_is_422(client: TestClient) -> None:
    response = client.post("/embed_text", json={"text": "hi", "model": "clap"})
    assert_error(response, 422, "'muq', 'mert', 'latent' or 'dsp'")


def test_muq_without_weights_is_503_naming_the_download(client: TestClient) -> None:
    assert_error(client.post("/embed_text", json={"text": "calm piano", "model": "muq"}), 503,
                 "navembed models download muq")


def test_muq_text_embedding_has_the_original_shape(tmp_path: Path, milvus_uri: str) -> None:  # noqa: F811
    models_dir = build_tiny_muq(tmp_path / "models")
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, models_dir=models_dir)) as client:
        response = client.post("/embed_text", json={"text": "happy piano music", "model": "muq"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["embedding", "model", "dimension", "is_stub"]
    assert body["model"] == "muq" and body["dimension"] == 512 == len(body["embedding"])
    assert body["is_stub"] is False
    assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-4)


# ----- /models and /health -----------------------------------------------------------------------
def test_models_lists_every_model_with_its_facts(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()}
    assert list(models) == ["muq", "mert", "latent", "dsp"]
    assert models["dsp"]["dimension"] == 273 and models["dsp"]["weights_present"] is True
    assert models["dsp"]["enabled"] is True and models["muq"]["enabled"] is False
    assert models["muq"]["supports_text"] is True and models["muq"]["vector_fields"] == {"embedding": 1536,
                                                                                          "mulan": 512}
    assert models["muq"]["weights_present"] is False and "CC BY-NC" in models["muq"]["licence"]
    for entry in models.values():
        assert {"sample_rate", "loaded", "device", "licence"} <= set(entry)
        assert entry["loaded"] is False  # listing loads nothing


def test_health_reports_each_part(client: TestClient, milvus_uri: str) -> None:  # noqa: F811
    body = client.get("/health").json()
    assert body["status"] == "degraded"  # Dagster is not running in this test
    assert body["store"]["ok"] is True and body["store"]["uri"] == milvus_uri
    assert body["dagster"]["ok"] is False and "unreachable" in body["dagster"]["error"]
    assert body["models"]["enabled"] == ["dsp"] and body["batch_control"] is True
    assert body["socket"] == {"path": None, "listening": False}


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/batch/start", "/batch/progress", "/batch/cancel", "/embed_text", "/models", "/health"} <= set(paths)


def test_the_openapi_model_names_are_the_registrys() -> None:
    from typing import get_args

    from navembed_api.routes import ModelName
    from navembed_pipeline.lib.models import MODEL_NAMES

    assert get_args(ModelName) == MODEL_NAMES
