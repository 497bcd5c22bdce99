"""Hostile input, one probe per test: every one is a clear 4xx (listed in the OpenAPI), never a 500 or silence."""

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from navembed_api.limits import MAX_JSON_DEPTH, json_depth, parse_json
from navembed_api.rename import Renamer, RenameRequest
from navembed_api.socket_server import UploadSocketServer
from navembed_api.uploads import fresh_directory
from navembed_pipeline.lib.library.filenames import MAX_NAME_BYTES, safe_file_name
from navembed_pipeline.lib.recommend.errors import InvalidRequestError
from navembed_pipeline.lib.recommend.request import RecommendRequest, validate
from tests.api.app_fixtures import ADMIN, api_settings, nowhere_url, running_app
from tests.api.upload_fixtures import ask, serving

MAX_BYTES = 4096
EVIL_NAMES = ["../../../../etc/cron.d/evil.wav", "/etc/passwd", "..", ".", "a/..", "evil\x00.wav", "x\\..\\y.wav",
              "\x1b[31mred.mp3", " .. ", ".hidden.flac", "é" * 300 + ".flac"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = api_settings(tmp_path, milvus_uri=nowhere_url(), api_max_request_bytes=MAX_BYTES)
    with running_app(settings) as app:
        yield app


def documented(client: TestClient, method: str, path: str) -> set[str]:
    return set(client.app.openapi()["paths"][path][method]["responses"])


def post_raw(client: TestClient, path: str, body: bytes, **headers: str) -> Any:
    return client.post(path, content=body, headers={"Content-Type": "application/json", **ADMIN, **headers})


# ----- one name sanitiser ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", EVIL_NAMES)
def test_a_sanitised_name_is_one_plain_file_name(name: str) -> None:
    safe = safe_file_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe and safe not in (".", "..")
    assert not safe.startswith(".") and all(ord(c) >= 32 for c in safe)
    assert len(safe.encode("utf-8")) <= MAX_NAME_BYTES


def test_a_long_name_keeps_its_extension_and_whole_characters() -> None:
    safe = safe_file_name("é" * 300 + ".flac")
    assert safe.endswith(".flac") and safe.encode("utf-8").decode("utf-8") == safe


def test_a_title_keeps_its_slash_as_text() -> None:
    assert safe_file_name("AC/DC - Back in Black", is_title=True) == "AC_DC - Back in Black"


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_renamed_file_never_echoes_a_path_when_renaming_is_off(name: str, tmp_path: Path) -> None:
    music = tmp_path / "upload.wav"
    music.write_bytes(b"")
    renamed = Renamer(timeout=1.0).rename(name, RenameRequest(enabled=False, use_metadata=False), music_file=music)
    assert renamed.name == safe_file_name(name, fallback="upload.wav")
    assert "/" not in renamed.name and ".." != renamed.name and "\x00" not in renamed.name
    if name.startswith("../../"):
        assert renamed.name == "evil.wav"


def test_concurrent_splits_of_one_album_each_get_their_own_directory(tmp_path: Path) -> None:
    wanted, made, errors = tmp_path / "Album (tracks)", [], []
    barrier = threading.Barrier(8)

    def split() -> None:
        barrier.wait()
        try:
            made.append(fresh_directory(wanted))
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=split) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(made)) == 8 and all(p.is_dir() for p in made)


# ----- JSON: depth, numbers, Unicode ------------------------------------------------------------------
def test_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]]"}]}') == 3


@pytest.mark.parametrize("body, says", [
    (b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep"),
    (b'{"weights": {"dsp": Infinity}}', "Infinity is not a JSON number"),
    (b'{"weights": {"dsp": NaN}}', "NaN is not a JSON number"),
    (b'{"weights": {"dsp": 1e999}}', "out of range"),
    (b'{"name": "\\ud800.wav"}', "invalid text at body.name: it holds a lone UTF-16 surrogate"),
])
def test_strict_json_refuses_with_a_clear_message(body: bytes, says: str) -> None:
    with pytest.raises(Exception, match=says) as refused:
        parse_json(body)
    assert refused.value.status_code == 400


def test_json_at_the_depth_cap_is_accepted() -> None:
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None


# ----- HTTP ------------------------------------------------------------------------------------------
def test_a_body_over_the_cap_is_413_before_anything_else(client: TestClient) -> None:
    response = post_raw(client, "/batch/start", b'{"models": ["dsp"], "pad": "' + b"x" * 10 * MAX_BYTES + b'"}')
    assert response.status_code == 413 and "larger than" in response.json()["message"]
    assert "413" in documented(client, "post", "/batch/start")


@pytest.mark.parametrize("path", ["/batch/start", "/playlist/similar", "/embed_text"])
def test_deeply_nested_json_is_a_400_on_every_route(client: TestClient, path: str) -> None:
    response = post_raw(client, path, b"[" * 1000 + b"]" * 1000)
    assert response.status_code == 400 and "nested 1000 levels deep" in response.json()["message"]
    assert "400" in documented(client, "post", path.replace("similar", "{mode}"))


def test_infinite_and_nan_weights_are_refused_with_clear_messages(client: TestClient) -> None:
    for raw, word in ((b"Infinity", "Infinity"), (b"-Infinity", "-Infinity"), (b"NaN", "NaN")):
        response = post_raw(client, "/playlist/similar", b'{"seeds": ["t"], "weights": {"dsp": ' + raw + b"}}")
        assert response.status_code == 400, response.text
        assert f"{word} is not a JSON number" in response.json()["message"]


def test_a_lone_surrogate_is_a_400_naming_the_field(client: TestClient) -> None:
    response = post_raw(client, "/embed_text", b'{"text": "a\\udc00b"}')
    assert response.status_code == 400 and "body.text" in response.json()["message"]


@pytest.mark.parametrize("field", ["force", "clearExisting"])
@pytest.mark.parametrize("value", [0, 1, "true", "yes"])
def test_booleans_are_strict(client: TestClient, field: str, value: object) -> None:
    response = client.post("/batch/start", json={"models": ["dsp"], field: value}, headers=ADMIN)
    assert response.status_code == 422 and field in response.json()["message"]
    assert "valid boolean" in response.json()["message"]


def test_an_error_quotes_only_a_short_prefix_of_a_huge_input(client: TestClient) -> None:
    huge = "A" * 3000
    response = client.post("/batch/start", json={"models": [huge]}, headers=ADMIN)
    assert response.status_code == 422 and len(response.text) < 700 and huge not in response.text


# ----- the upload socket ------------------------------------------------------------------------------
@pytest.fixture
def echo_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "s.sock"
    server = UploadSocketServer(path, lambda request: {"status": "ok", "keys": sorted(request)},
                                max_request_bytes=64 * 1024, idle_timeout=2.0, workers=1)
    with serving(server):
        yield path


def test_deeply_nested_json_on_the_socket_gets_an_answer(echo_socket: Path) -> None:
    answer = ask(echo_socket, b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n")
    assert answer["status"] == "error" and "nested 50001 levels deep" in answer["message"]


def test_a_lone_surrogate_in_name_on_the_socket_is_refused_clearly(echo_socket: Path) -> None:
    answer = ask(echo_socket, b'{"music_file": "/m/a.flac", "name": "\\ud83d.flac"}\n')
    assert answer["status"] == "error" and "body.name" in answer["message"] and "surrogate" in answer["message"]


def test_the_socket_still_answers_well_formed_requests(echo_socket: Path) -> None:
    assert ask(echo_socket, {"music_file": "/m/a.flac", "name": "a.flac"}) == {"status": "ok",
                                                                              "keys": ["music_file", "name"]}


def test_socket_errors_never_echo_a_whole_request(echo_socket: Path) -> None:
    answer = ask(echo_socket, b'{"name": "' + b"z" * 20_000 + b'", broken}\n')
    assert answer["status"] == "error" and len(json.dumps(answer)) < 700


@pytest.mark.parametrize("weight", [float("inf"), float("-inf"), float("nan"), -1.0])
def test_the_engine_refuses_weights_that_are_not_finite_and_non_negative(weight: float) -> None:
    request = RecommendRequest(mode="similar", seeds=("t",), weights={"dsp": weight})
    with pytest.raises(InvalidRequestError, match=r"weights must be finite numbers, 0 or more \(got dsp: "):
        validate(request)
