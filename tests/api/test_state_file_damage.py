"""Each SQLite state file of the data dir damaged in turn — the failure log, the fingerprints and upload
records, the missing-file log — as a truncated copy (a disk that filled mid-write, a torn restore): the
API starts, keeps serving what does not depend on the file (``/similar``, the upload socket), ``/health``
names the file, and the file is set aside (``<name>.corrupt-<time>``, byte for byte) and rebuilt.

The issue's symptoms were: a truncated ``failures.sqlite`` made ``/similar`` and the uploads answer 503; a
corrupt ``fingerprints.sqlite`` turned every upload into an error while ``/health`` said "ok".
"""

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from navembed_api.model_pool import ModelPool
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.store.missing_tracks import MissingLog, Tombstone
from navembed_pipeline.lib.store.state_files import damage
from navembed_pipeline.sample_data.synth import render_song
from tests.api.app_fixtures import api_settings, running_app
from tests.api.upload_fixtures import SETTINGS_ON, EmbeddedLibrary, ask, embed_library
from tests.lib.store.milvus_fixture import drop_everything, milvus_server, milvus_uri  # noqa: F401 - fixtures


def filled_failures(path: Path) -> None:
    FailureLog(path).record("dsp", [(f"t{i}", "not a readable audio file " * 20) for i in range(600)])


def filled_fingerprints(path: Path) -> None:
    store = FingerprintStore(path)
    for i in range(150):
        words = (np.arange(400, dtype=np.int64) * (i + 7) * 2654435761) % (1 << 32)
        store.put(f"t{i}", f"v{i}", [(0, "", words.astype(np.uint32))])


def filled_missing(path: Path) -> None:
    MissingLog(path).mark(Tombstone(f"t{i}", 1.0, f"Some/Long/Path/{i:05d}/" + "x" * 200, 1 << 20) for i in range(600))


FILES = {"failures.sqlite": filled_failures, "fingerprints.sqlite": filled_fingerprints,
         "missing.sqlite": filled_missing}
# What the pipeline's next run does with each file: open it (a damaged one is set aside and rebuilt).
OPEN = {"failures.sqlite": FailureLog, "fingerprints.sqlite": lambda p: FingerprintStore(p).versions([]),
        "missing.sqlite": MissingLog}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str,  # noqa: F811
            models: ModelPool) -> Iterator[EmbeddedLibrary]:
    drop_everything(milvus_uri)
    store = VectorStore(milvus_uri)
    yield embed_library(tmp_path_factory.mktemp("damage"), store, models, seconds=6)
    store.close()
    drop_everything(milvus_uri)


def truncated(path: Path, fill) -> bytes:
    """A real state file of some size, cut to its first third (as a full disk leaves it); its bytes."""
    fill(path)
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    raw = path.read_bytes()
    assert len(raw) > 3 * 4096, len(raw)
    path.write_bytes(raw[:len(raw) // 3])
    assert damage(path) is not None  # SQLite itself says it is damaged
    return path.read_bytes()


@pytest.mark.parametrize("name", list(FILES))
def test_a_damaged_state_file_leaves_the_rest_serving_is_named_and_is_rebuilt(
        library: EmbeddedLibrary, milvus_uri: str, tmp_path: Path, name: str) -> None:  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    raw = truncated(data / name, FILES[name])
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings = api_settings(tmp_path, milvus_uri=milvus_uri, data_dir=data, navidrome_db=library.sample.db_path,
                            music_root=library.sample.root, upload_dir=uploads, socket_path=tmp_path / "up.sock")
    seed = next(iter(NavidromeLibrary(library.sample.db_path).tracks())).id
    song = write_audio(uploads / "new.flac", render_song(seconds=6, sample_rate=22050, seed=4000 + list(FILES).index(name)), 22050,
                       tags={"title": "Brand New", "artist": "Newcomer"})
    with running_app(settings) as client:
        health = client.get("/health").json()
        named = list(health["state_files"]["broken"]) + [n.split(".corrupt-")[0]
                                                         for n in health["state_files"]["set_aside"]]
        assert named == [name], health["state_files"]
        assert any(name in reason for reason in health["reasons"]) or health["state_files"]["set_aside"]
        similar = client.get(f"/similar/{seed}")
        assert similar.status_code == 200, similar.text
        assert similar.json()["tracks"]
        answer = ask(settings.socket_path, {"music_file": str(song), "name": song.name, "settings": SETTINGS_ON})
        assert answer["status"] == "ok", answer
        assert answer.get("stored") is True, answer
        OPEN[name](data / name)
        after = client.get("/health").json()
    assert after["state_files"]["broken"] == {}, after["state_files"]
    (aside,) = after["state_files"]["set_aside"]
    assert aside.startswith(f"{name}.corrupt-") and (data / aside).read_bytes() == raw  # kept, byte for byte
    assert damage(data / name) is None  # rebuilt, sound
