"""Upload duplicates by Chromaprint fingerprint, and uploads in their own store.

A real Milvus Lite server, real audio files (24 s generated tracks written by real encoders), a
library fingerprinted by the engine as the pipeline does, the real socket for the Go client's view.
"""

import shutil
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from navembed_api.model_pool import ModelPool
from navembed_api.socket_server import UploadSocketServer
from navembed_api.uploads import UploadService
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.duplicates.chromaprint import DUPLICATE_SCORE
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.duplicates.uploads import UploadStore, upload_collection
from navembed_pipeline.lib.engine.fingerprinter import TrackFingerprinter
from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.library.upload_ids import upload_id
from navembed_pipeline.lib.store import VectorRow, VectorStore
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.sample_data.navidrome_fixture import FixtureTrack, add_tracks
from navembed_pipeline.sample_data.synth import render_song
from navembed_pipeline.sensors import build_library_change_sensor
from tests.api.upload_fixtures import EmbeddedLibrary, ask, embed_library, serving, upload_service
from tests.lib.store.milvus_fixture import drop_everything, milvus_server, milvus_uri, session_failures_db  # noqa: F401
from tests.pipeline.helpers import navembed_instance, pipeline_resources

SECONDS = 24
ON = {"similaritySearchEnabled": True, "dedupThreshold": 0.85}
UPLOADS = upload_collection("dsp")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str,  # noqa: F811
            models: ModelPool) -> Iterator[EmbeddedLibrary]:
    drop_everything(milvus_uri)
    store = VectorStore(milvus_uri, failure_log=FailureLog(session_failures_db() or ":memory:"))
    yield embed_library(tmp_path_factory.mktemp("dups"), store, models, seconds=SECONDS, fingerprint=True)
    store.close()
    drop_everything(milvus_uri)


def morning(library: EmbeddedLibrary) -> np.ndarray:
    return load_audio(library.sample.duplicate_pair[0], 44100)


def upload(service: UploadService, path: Path, **settings: object) -> dict:
    return service.handle({"music_file": str(path), "name": path.name, "settings": {**ON, **settings}})


def only_match(answer: dict) -> dict:
    [entry] = answer["duplicateMatches"]
    return entry["matches"][0]


def new_song(library: EmbeddedLibrary, name: str, seed: int) -> Path:
    return write_audio(library.upload_dir / name, render_song(seconds=SECONDS, sample_rate=22050, seed=seed), 22050,
                       tags={"title": f"Song {seed}", "artist": "Newcomer"})


def test_the_engine_fingerprinted_every_readable_library_track(library: EmbeddedLibrary) -> None:
    tracks = list(NavidromeLibrary(library.sample.db_path).tracks())
    versions = FingerprintStore(library.fingerprints_db).versions(t.id for t in tracks)
    unreadable = {t.id for t in tracks if t.path == library.sample.corrupt_path}
    assert set(versions) == {t.id for t in tracks} - unreadable


def test_a_96_kbps_reencode_of_a_library_track_is_a_fingerprint_duplicate(
        service: UploadService, library: EmbeddedLibrary) -> None:
    copy = write_audio(library.upload_dir / "morning-96k.mp3", morning(library), 44100, bit_rate=96_000)
    answer = upload(service, copy)
    assert answer["allDuplicates"] is True and answer["stored"] is False
    found = only_match(answer)
    assert found["method"] == "fingerprint" and found["source"] == "library"
    assert found["name"] == "Piano Trio - Morning Keys" and found["fingerprint"]["score"] >= DUPLICATE_SCORE
    assert abs(found["fingerprint"]["offset_seconds"]) < 0.5
    # the album copy and its re-encode in the library are one recording: both are named
    assert len(answer["duplicateMatches"][0]["matches"]) == 2


def test_a_copy_with_10_s_trimmed_and_6_db_quieter_reports_the_offset(
        service: UploadService, library: EmbeddedLibrary) -> None:
    copy = write_audio(library.upload_dir / "morning-trimmed.ogg", morning(library)[10 * 44100:] * 0.5, 44100)
    found = only_match(upload(service, copy))
    assert found["method"] == "fingerprint"
    assert found["fingerprint"]["offset_seconds"] == pytest.approx(10.0, abs=0.5)


def test_a_new_song_is_stored_even_with_a_low_dedup_threshold(service: UploadService, library: EmbeddedLibrary) -> None:
    # The dsp cosine of two different songs can exceed any threshold; the fingerprints decide.
    song = new_song(library, "new-song.flac", seed=32)
    answer = upload(service, song, dedupThreshold=0.0)
    assert answer["duplicates"] == [] and answer["stored"] is True
    assert upload_id(song.resolve()) in library.store.stored(UPLOADS, [upload_id(song.resolve())])
    assert library.store.stored("dsp", [upload_id(song.resolve())]) == {}  # never a library row


def test_uploading_the_same_song_twice_reports_the_first_upload(
        service: UploadService, library: EmbeddedLibrary) -> None:
    first = new_song(library, "twice.flac", seed=25)
    assert upload(service, first)["stored"] is True
    second = library.upload_dir / "twice (1).flac"
    shutil.copyfile(first, second)
    answer = upload(service, second)
    found = only_match(answer)
    assert answer["allDuplicates"] is True and found["track_id"] == upload_id(first.resolve())
    assert found["source"] == "upload" and found["method"] == "fingerprint"


def test_uploads_survive_a_sensor_run_and_a_restart(service: UploadService, library: EmbeddedLibrary,
                                                    models: ModelPool, milvus_uri: str) -> None:  # noqa: F811
    song = new_song(library, "survivor.flac", seed=40)
    assert upload(service, song)["stored"] is True
    uid = upload_id(song.resolve())
    sensor = build_library_change_sensor(["dsp"], interval_seconds=60)
    resources = pipeline_resources(library.sample, milvus_uri)
    with navembed_instance() as instance, dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        assert not sensor(ctx).run_requests  # the upload is no reason to run
    tracks = list(NavidromeLibrary(library.sample.db_path).tracks())
    reports = list(EmbeddingRun(model=models.get("dsp"), store=library.store,
                                options=RunOptions(decode_workers=1, force=True)).run(group_by_bucket(tracks)))
    assert sum(r.deleted for r in reports) == 0
    restarted_store = VectorStore(milvus_uri)
    try:
        assert uid in restarted_store.stored(UPLOADS, [uid])
        restarted = UploadService(roots=service.roots, models=models, model_names=["dsp"],
                                  store=lambda: restarted_store, renamer=service.renamer,
                                  fingerprints=FingerprintStore(library.fingerprints_db))
        again = library.upload_dir / "survivor again.flac"
        shutil.copyfile(song, again)
        assert only_match(upload(restarted, again))["track_id"] == uid
        assert UploadStore(FingerprintStore(library.fingerprints_db)).get(uid).path == str(song.resolve())
    finally:
        restarted_store.close()


def test_upload_rows_an_older_version_kept_in_the_library_collection_are_moved(
        service: UploadService, library: EmbeddedLibrary) -> None:
    old_id = upload_id(Path("/old/upload.flac"))
    vector = library.store.get_vectors("dsp", [next(iter(library.store.all_track_ids("dsp")))])
    row = VectorRow(track_id=old_id, segment=1, name="Old - Upload", offset_seconds=0.0, duration_seconds=30.0,
                    model_id="dsp", model_version="old", fingerprint="f", bucket=bucket_of(old_id),
                    vectors={"embedding": next(iter(vector.values()))[0]})
    library.store.upsert("dsp", [row])
    service._migrated = False  # as after a restart of the API
    service.migrate()
    assert library.store.stored("dsp", [old_id]) == {}
    assert old_id in library.store.stored(UPLOADS, [old_id])
    assert UploadStore(FingerprintStore(library.fingerprints_db)).get(old_id).name == "Old - Upload"


def test_when_navidrome_scans_an_uploaded_file_the_pipeline_links_it(
        service: UploadService, library: EmbeddedLibrary, models: ModelPool) -> None:
    target = library.music / "Uploads" / "scanned.flac"
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(new_song(library, "to-scan.flac", seed=51), target)
    assert upload(service, target)["stored"] is True
    [track_id] = add_tracks(library.sample.db_path, [FixtureTrack(path="Uploads/scanned.flac", title="Song 51",
                                                                 artist="Newcomer", album="Uploads",
                                                                 duration=SECONDS)])
    fingerprints = FingerprintStore(library.fingerprints_db)
    tracks = [t for t in NavidromeLibrary(library.sample.db_path).tracks() if t.id == track_id]
    list(EmbeddingRun(model=models.get("dsp"), store=library.store, options=RunOptions(decode_workers=1),
                      fingerprinter=TrackFingerprinter(fingerprints)).run(group_by_bucket(tracks)))
    assert UploadStore(fingerprints).library_tracks_of(upload_id(target.resolve())) == [track_id]


def test_the_socket_answer_says_why(library: EmbeddedLibrary, models: ModelPool,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("sock") / "embed.sock"
    copy = write_audio(library.upload_dir / "morning-socket.mp3", morning(library), 44100, bit_rate=96_000)
    server = UploadSocketServer(path, upload_service(library, models).handle, max_request_bytes=1 << 16,
                                idle_timeout=5.0, workers=1)
    with serving(server):
        answer = ask(path, {"music_file": str(copy), "name": copy.name, "settings": ON})
    assert list(answer)[:4] == ["status", "duplicates", "renamedFile", "allDuplicates"]
    assert answer["duplicates"] == [copy.name.removesuffix(".mp3")] or answer["duplicates"]
    assert only_match(answer)["method"] == "fingerprint"


def test_twenty_concurrent_uploads_of_one_new_file_store_it_once(service: UploadService,
                                                                 library: EmbeddedLibrary) -> None:
    song = new_song(library, "rush.flac", seed=41)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: upload(service, song), range(20)))
    assert [a["stored"] for a in answers].count(True) == 1, [a["stored"] for a in answers]
    assert all(a["allDuplicates"] for a in answers if not a["stored"])
    uid = upload_id(song.resolve())
    assert [r.upload_id for r in UploadStore(FingerprintStore(library.fingerprints_db)).all()].count(uid) == 1
    assert library.store.stored(UPLOADS, [uid])[uid].segments == 1


def test_duplicates_are_judged_by_a_model_with_a_measured_copy_threshold() -> None:
    """After the fingerprint, vectors judge: by the model whose copy threshold was measured on real copies
    (dsp), even beside a deep model without one (whose vectors would claim nothing)."""
    from navembed_api.uploads import dedup_model

    assert dedup_model(["dsp", "muq"]) == dedup_model(["muq", "dsp"]) == dedup_model(["musicnn", "dsp"]) == "dsp"
    assert dedup_model(["muq"]) == "muq" and dedup_model(["mert", "latent"]) == "mert"
