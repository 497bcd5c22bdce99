"""The upload socket as Navidrome's Go client uses it: framing, limits, errors, many clients at once."""

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from navembed_api.model_pool import ModelPool
from navembed_api.socket_server import UploadSocketServer
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.store import VectorStore
from tests.api.upload_fixtures import (
    SETTINGS_ON,
    EmbeddedLibrary,
    ask,
    dsp_pool,
    embed_library,
    read_line,
    serving,
    upload_service,
)
from tests.lib.store.milvus_fixture import drop_everything, milvus_server, milvus_uri  # noqa: F401 - fixtures

MAX_BYTES = 64 * 1024
IDLE_S = 1.0


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[tuple[EmbeddedLibrary, ModelPool]]:  # noqa: F811
    drop_everything(milvus_uri)
    store, pool = VectorStore(milvus_uri), dsp_pool()
    yield embed_library(tmp_path_factory.mktemp("socket"), store, pool), pool
    pool.close()
    store.close()
    drop_everything(milvus_uri)


@pytest.fixture(scope="module")
def sock(library: tuple[EmbeddedLibrary, ModelPool], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    lib, pool = library
    path = tmp_path_factory.mktemp("sock") / "embed.sock"
    server = UploadSocketServer(path, upload_service(lib, pool).handle, max_request_bytes=MAX_BYTES,
                                idle_timeout=IDLE_S, workers=2)
    with serving(server):
        yield path


def request_for(lib: EmbeddedLibrary, **settings: object) -> dict:
    return {"music_file": str(lib.sample.duplicate_pair[0]), "name": "01 Morning Keys.flac", "settings": settings}


def test_the_socket_is_0660(sock: Path) -> None:
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o660


def test_one_request_per_connection_like_the_go_client(sock: Path, library) -> None:
    answer = ask(sock, request_for(library[0], **SETTINGS_ON))
    assert answer["status"] == "ok" and answer["duplicates"] == ["Piano Trio - Morning Keys"]


def test_newline_delimited_requests_share_a_connection(sock: Path, library) -> None:
    line = json.dumps(request_for(library[0])).encode() + b"\n"
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(60)
        client.connect(str(sock))
        client.sendall(line + line)
        answers = [json.loads(read_line(client)) for _ in range(2)]
    assert [a["status"] for a in answers] == ["ok", "ok"]


def test_a_json_object_without_newline_or_close_is_answered(sock: Path, library) -> None:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(60)
        client.connect(str(sock))
        client.sendall(json.dumps(request_for(library[0])).encode())
        assert json.loads(read_line(client))["status"] == "ok"


@pytest.mark.parametrize(("payload", "message"), [
    (b"this is not json\n", "invalid json"),
    (b"[1, 2, 3]\n", "expected a JSON object"),
    (b'{"music_file": "/etc/passwd"}\n', "outside the music root"),
    (b'{"music_file": "/nonexistent/x.flac"}\n', "outside"),
    (b'{"name": "no file"}\n', "music_file"),
])
def test_bad_requests_get_an_error_and_the_server_keeps_serving(sock: Path, library, payload: bytes,
                                                                 message: str) -> None:
    answer = ask(sock, payload)
    assert answer["status"] == "error" and message in answer["message"]
    assert ask(sock, request_for(library[0]))["status"] == "ok"


def test_a_missing_file_inside_the_roots_is_an_error(sock: Path, library) -> None:
    answer = ask(sock, {"music_file": str(library[0].upload_dir / "gone.flac")})
    assert answer == {"status": "error", "message": f"music_file not found: {library[0].upload_dir / 'gone.flac'}"}


def test_a_huge_request_is_refused_and_the_server_keeps_serving(sock: Path, library) -> None:
    huge = b'{"music_file": "' + b"a" * (4 * MAX_BYTES) + b'"}\n'
    answer = ask(sock, huge)
    assert answer["status"] == "error" and f"larger than {MAX_BYTES} bytes" in answer["message"]
    assert ask(sock, request_for(library[0]))["status"] == "ok"


def test_an_idle_client_is_dropped_while_others_are_served(sock: Path, library) -> None:
    with socket.socket(socket.AF_UNIX) as idle:
        idle.settimeout(10)
        idle.connect(str(sock))
        assert ask(sock, request_for(library[0]))["status"] == "ok"
        started = time.monotonic()
        assert idle.recv(100) == b""  # closed by the server, no answer owed
        assert time.monotonic() - started < IDLE_S + 3


def test_a_request_cut_short_gets_an_error_after_the_idle_timeout(sock: Path) -> None:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(sock))
        client.sendall(b'{"music_file": "/x')
        answer = json.loads(read_line(client))
    assert answer["status"] == "error" and "incomplete request" in answer["message"]


def test_twenty_concurrent_clients(sock: Path, library) -> None:
    lib = library[0]
    tracks = [p for p in lib.music.rglob("*") if p.suffix in (".flac", ".mp3", ".wav", ".ogg", ".m4a", ".opus")
              and "Damaged" not in p.name and "Live Set" not in str(p)]
    requests = [{"music_file": str(tracks[i % len(tracks)]), "settings": SETTINGS_ON} for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda r: ask(sock, r), requests))
    assert [a["status"] for a in answers] == ["ok"] * 20
    assert all(a["allDuplicates"] for a in answers)  # every one of them is a library track


def test_a_stale_socket_file_is_replaced_but_never_another_file(tmp_path: Path, library) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(str(stale))  # bound, never listening: what a crashed server leaves behind
    lib, pool = library
    handler = upload_service(lib, pool).handle
    with serving(UploadSocketServer(stale, handler, max_request_bytes=MAX_BYTES, idle_timeout=IDLE_S, workers=1)):
        assert ask(stale, b"[]\n")["status"] == "error"
    assert not stale.exists()  # removed on stop
    regular = tmp_path / "notes.txt"
    regular.write_text("keep me")
    with pytest.raises(NavembedError, match="not a socket"):
        with serving(UploadSocketServer(regular, handler, max_request_bytes=MAX_BYTES, idle_timeout=IDLE_S,
                                        workers=1)):
            pass
    assert regular.read_text() == "keep me"


def test_a_second_server_on_a_live_socket_is_refused(sock: Path, library) -> None:
    lib, pool = library
    with pytest.raises(NavembedError, match="already listens"):
        with serving(UploadSocketServer(sock, upload_service(lib, pool).handle, max_request_bytes=MAX_BYTES,
                                        idle_timeout=IDLE_S, workers=1)):
            pass
    assert ask(sock, b"[]\n")["status"] == "error"  # the first one still serves
