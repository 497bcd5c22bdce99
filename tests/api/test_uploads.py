"""Upload requests (the socket's payload): duplicates, CUE split, rename, confinement, never deleting."""

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from navembed_api.model_pool import ModelPool
from navembed_api.rename import Renamer
from navembed_api.uploads import UploadRejected, UploadService, upload_id
from navembed_pipeline.lib.duplicates.uploads import upload_collection
from navembed_pipeline.lib.errors import AudioDecodeError
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.synth import render
from tests.api.upload_fixtures import SETTINGS_ON, EmbeddedLibrary, embed_library, upload_service
from tests.lib.store.milvus_fixture import drop_everything, milvus_server, milvus_uri  # noqa: F401 - fixtures


UPLOADS = upload_collection("dsp")  # the uploads' own collection


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str,  # noqa: F811
            models: ModelPool) -> Iterator[EmbeddedLibrary]:
    drop_everything(milvus_uri)
    store = VectorStore(milvus_uri)
    yield embed_library(tmp_path_factory.mktemp("uploads"), store, models)
    store.close()
    drop_everything(milvus_uri)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ----- duplicates ----------------------------------------------------------------------------------
def test_a_track_already_in_the_library_is_reported_as_duplicate_and_not_stored(
        service: UploadService, library: EmbeddedLibrary) -> None:
    copy = library.upload_dir / "morning.mp3"
    shutil.copyfile(library.sample.duplicate_pair[1], copy)
    answer = service.handle({"music_file": str(copy), "name": "morning.mp3", "settings": SETTINGS_ON})
    assert answer["status"] == "ok"
    assert answer["duplicates"] == ["Piano Trio - Morning Keys"] and answer["allDuplicates"] is True
    matches = answer["duplicateMatches"][0]["matches"]
    assert {m["name"] for m in matches} >= {"Piano Trio - Morning Keys"}
    assert all(m["similarity"] >= 0.85 for m in matches)
    assert answer["stored"] is False
    assert library.store.stored(UPLOADS, [upload_id(copy.resolve())]) == {}


def test_without_similarity_search_nothing_is_flagged_and_the_upload_is_stored(
        service: UploadService, library: EmbeddedLibrary) -> None:
    copy = library.upload_dir / "morning-again.flac"
    shutil.copyfile(library.sample.duplicate_pair[0], copy)
    answer = service.handle({"music_file": str(copy), "name": "morning-again.flac", "settings": {}})
    assert answer["duplicates"] == [] and answer["allDuplicates"] is False and answer["stored"] is True
    assert upload_id(copy.resolve()) in library.store.stored(UPLOADS, [upload_id(copy.resolve())])
    assert library.store.stored("dsp", [upload_id(copy.resolve())]) == {}  # never a library row


def test_a_new_track_below_the_threshold_is_stored(service: UploadService, library: EmbeddedLibrary) -> None:
    new = write_audio(library.upload_dir / "new.flac", render("pad", seconds=4, seed=11), 44100,
                      tags={"title": "Fresh Pad", "artist": "Newcomer"})
    answer = service.handle({"music_file": str(new), "name": "new.flac",
                             "settings": {**SETTINGS_ON, "dedupThreshold": 0.99}})
    assert answer["duplicates"] == [] and answer["stored"] is True
    stored = library.store.get_vectors(UPLOADS, [upload_id(new.resolve())])
    assert stored[upload_id(new.resolve())].shape == (1, service.models.get("dsp").vector_fields["embedding"])


def test_the_originals_request_and_answer_keys(service: UploadService, library: EmbeddedLibrary) -> None:
    track = library.music / "Static/Rooms/01 White Room.mp3"
    answer = service.handle({"music_file": str(track), "name": "01 White Room.mp3", "cue_file": "",
                             "settings": None})
    assert list(answer)[:4] == ["status", "duplicates", "renamedFile", "allDuplicates"]
    assert "splitFiles" not in answer  # only when a CUE sheet split the upload, as in the original
    assert answer["renamedFile"] == "01 White Room.mp3"


# ----- CUE split -----------------------------------------------------------------------------------
def test_a_cue_album_is_split_into_embedded_track_files(service: UploadService, library: EmbeddedLibrary) -> None:
    album = library.sample.cue_album_path
    before = files_under(library.music)
    answer = service.handle({"music_file": str(album), "name": album.name, "cue_file": str(album.with_suffix(".cue")),
                             "settings": {}})
    split = answer["splitFiles"]
    assert [s["title"] for s in split] == ["Opening Keys", "Drum Break", "Closing Pads"]
    assert [s["index"] for s in split] == [1, 2, 3]
    paths = [Path(s["file"]) for s in split]
    assert all(p.is_file() and p.parent.parent == album.parent for p in paths)
    assert before <= files_under(library.music)  # nothing removed, the album untouched
    stored = library.store.stored(UPLOADS, [upload_id(p) for p in paths])
    assert len(stored) == 3
    hits = library.store.search(UPLOADS, library.store.get_vectors(UPLOADS, [upload_id(paths[1])])[upload_id(paths[1])][0],
                                limit=1)
    assert hits[0].name == "Various - Drum Break"


def test_splitting_twice_never_overwrites_the_first_split(service: UploadService, library: EmbeddedLibrary) -> None:
    album = library.sample.cue_album_path
    request = {"music_file": str(album), "cue_file": str(album.with_suffix(".cue"))}
    first = {Path(s["file"]).parent for s in service.handle(request)["splitFiles"]}
    second = {Path(s["file"]).parent for s in service.handle(request)["splitFiles"]}
    assert first.isdisjoint(second)


# ----- rename --------------------------------------------------------------------------------------
def test_rename_from_tags(service: UploadService, library: EmbeddedLibrary) -> None:
    track = library.sample.duplicate_pair[0]
    answer = service.handle({"music_file": str(track), "name": "upload_123.flac",
                             "settings": {"renameEnabled": True, "useMetadata": True}})
    assert answer["renamedFile"] == "Piano Trio - Morning Keys.flac"
    assert track.is_file()  # the name is a suggestion; the file is not moved


class _ChatServer:
    """A local OpenAI-compatible endpoint: answers with ``content`` after ``delay`` seconds."""

    def __init__(self, content: str, *, delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                       "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
                time.sleep(delay)
                body = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except BrokenPipeError:  # the client gave up waiting (the timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_rename_via_an_openai_compatible_endpoint(library: EmbeddedLibrary, models: ModelPool) -> None:
    chat = _ChatServer('Sure! {"title": "Piano Trio - Morning Keys (Live)"}')
    try:
        service = upload_service(library, models, renamer=Renamer(timeout=5.0, api_key="sk-test"))
        answer = service.handle({"music_file": str(library.sample.duplicate_pair[0]), "name": "x.flac", "settings": {
            "renameEnabled": True, "useMetadata": True, "openAiEndpoint": chat.url + "/v1", "openAiModel": "m",
            "renamingPrompt": "keep it short", "reasoningLevel": "low"}})
    finally:
        chat.close()
    assert answer["renamedFile"] == "Piano Trio - Morning Keys (Live).flac" and "renameError" not in answer
    (request,) = chat.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "m" and request["body"]["reasoning_effort"] == "low"
    assert "Morning Keys" in request["body"]["messages"][1]["content"]  # tags as hints
    assert "keep it short" in request["body"]["messages"][0]["content"]


def test_a_slow_rename_endpoint_never_blocks_the_upload(library: EmbeddedLibrary, models: ModelPool) -> None:
    chat = _ChatServer('{"title": "too late"}', delay=3.0)
    try:
        service = upload_service(library, models, renamer=Renamer(timeout=0.5))
        started = time.monotonic()
        answer = service.handle({"music_file": str(library.sample.duplicate_pair[0]), "name": "x.flac", "settings": {
            "renameEnabled": True, "useMetadata": True, "openAiEndpoint": chat.url, "openAiModel": "m"}})
    finally:
        chat.close()
    assert time.monotonic() - started < 3.0
    assert answer["status"] == "ok" and answer["renamedFile"] == "Piano Trio - Morning Keys.flac"
    assert "ReadTimeout" in answer["renameError"]


# ----- refusals ------------------------------------------------------------------------------------
def test_paths_outside_the_roots_are_refused(service: UploadService, library: EmbeddedLibrary, tmp_path: Path) -> None:
    outside = write_audio(tmp_path / "outside.flac", render("drums", seconds=1), 44100)
    link = library.upload_dir / "link.flac"
    link.symlink_to(outside)
    escapes = [str(outside), f"{library.upload_dir}/../../{tmp_path.name}/outside.flac", str(link), "/etc/passwd"]
    for path in escapes:
        with pytest.raises(UploadRejected, match="outside the music root"):
            service.handle({"music_file": path})
    with pytest.raises(UploadRejected, match="cue_file .* outside"):
        service.handle({"music_file": str(library.sample.cue_album_path), "cue_file": "/etc/hostname"})


@pytest.mark.parametrize(("payload", "message"), [
    ({"music_file": "relative/track.flac"}, "absolute path"),
    ({"music_file": 42}, "invalid request: music_file"),
    ({"name": "no file"}, "invalid request: music_file"),
    ({"music_file": "/x", "settings": {"dedupThreshold": 7}}, "dedupThreshold"),
])
def test_malformed_requests_are_refused_with_the_reason(service: UploadService, payload: dict, message: str) -> None:
    with pytest.raises(UploadRejected, match=message):
        service.handle(payload)


def test_a_missing_file_is_refused(service: UploadService, library: EmbeddedLibrary) -> None:
    with pytest.raises(UploadRejected, match="not found"):
        service.handle({"music_file": str(library.upload_dir / "gone.flac")})


def test_a_corrupt_file_is_an_error_naming_it(service: UploadService, library: EmbeddedLibrary) -> None:
    with pytest.raises(AudioDecodeError, match="Damaged"):
        service.handle({"music_file": str(library.sample.corrupt_path)})


def test_no_configured_root_refuses_everything(library: EmbeddedLibrary, models: ModelPool) -> None:
    service = UploadService(roots=[], models=models, model_names=["dsp"], store=lambda: library.store,
                            renamer=Renamer(timeout=1))
    with pytest.raises(UploadRejected, match="NAVEMBED_MUSIC_ROOT"):
        service.handle({"music_file": str(library.sample.duplicate_pair[0])})
