"""Tag queries through the running API on audio whose top tags the ORIGINAL MusiCNN gave.

The library is the golden clips of ``tests/lib/models/fixtures/musicnn`` (three generated at 16 kHz
and a real excerpt, Sectoid's "Metal madness"); ``top_tags.json`` beside them holds each clip's top
mean-taggram tags by the original TensorFlow model (``musicnn_goldens.py`` says how it was made). The
clips are embedded with the real ``MSD_musicnn`` weights through the real Dagster asset into a real
Milvus Lite store, and the app answers text queries over it with MuQ-MuLan absent.
"""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from navembed_api.model_pool import ModelPool
from navembed_api.rename import Renamer
from navembed_api.uploads import UploadService
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.models import WEIGHTS_REPOS
from navembed_pipeline.lib.models.musicnn import install, tag_names
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.lib.models.weights import weights_present
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from tests.api.app_fixtures import api_settings, running_app
from tests.lib.store.milvus_fixture import drop_everything
from tests.lib.models.musicnn_goldens import EXCERPT_FILE, SAMPLE_RATE, synth_clips
from tests.pipeline.helpers import bucket_materializations, embed, navembed_instance

FIXTURES = Path(__file__).resolve().parents[1] / "lib" / "models" / "fixtures" / "musicnn"
CHECKED = {clip: dict(map(tuple, tags["MSD_musicnn"]))
           for clip, tags in json.loads((FIXTURES / "top_tags.json").read_text())["clips"].items()}
NAMES = tag_names("MSD_musicnn")
SCORE_TOLERANCE = 1e-3  # top_tags.json keeps 4 decimals; the port matches the original to ~5e-5 on these clips


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A models folder holding MusiCNN's weights (``navembed models download musicnn`` into it)."""
    configured = Settings().weights_dir  # where `make setup` / `navembed models download musicnn` put them
    if weights_present(WEIGHTS_REPOS["musicnn"], configured):
        return configured
    models_dir = tmp_path_factory.mktemp("musicnn-models")
    try:
        install(models_dir)
    except NavembedError as exc:
        pytest.skip(f"MusiCNN's weights could not be downloaded here (no PyPI?): {exc}")
    return models_dir


def _write_library(root: Path) -> tuple[SampleLibrary, dict[str, str]]:
    music = root / "music"
    music.mkdir(parents=True)
    for name, wave in synth_clips().items():
        write_audio(music / f"{name}.wav", wave, SAMPLE_RATE)
    shutil.copy(FIXTURES / EXCERPT_FILE, music / "real_excerpt.flac")
    files = {"piano_chords": "piano_chords.wav", "drum_beat": "drum_beat.wav", "sine_440": "sine_440.wav",
             "real_excerpt": "real_excerpt.flac"}
    db = root / "navidrome.db"
    ids = create_navidrome_db(db, libraries=[FixtureLibrary(1, "Clips", str(music))],
                              tracks=[FixtureTrack(path=f, title=c, artist="Goldens", album="Clips", duration=6.0)
                                      for c, f in files.items()])
    return SampleLibrary(root, db, len(files), ".wav .flac", music, music, (music, music)), dict(zip(files, ids))


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, milvus_uri, weights):
    """(client, clip → track id, the Dagster run's result): the clips embedded with musicnn, the app up."""
    root = tmp_path_factory.mktemp("musicnn-tag-query")
    library, ids = _write_library(root)
    drop_everything(milvus_uri)
    try:
        with navembed_instance() as instance:
            result = embed(library, milvus_uri, instance, models=("musicnn",),
                           job_config={"models_dir": str(weights)})
        settings = api_settings(root, milvus_uri=milvus_uri, navidrome_db=library.db_path, models="musicnn",
                                models_dir=weights)
        with running_app(settings) as client:
            yield client, ids, result
    finally:
        drop_everything(milvus_uri)


def first(client, prompt: str) -> dict:
    response = client.post("/playlist/text", json={"prompts": [prompt], "size": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text_model"] == "musicnn-tags"
    return body


@pytest.mark.parametrize(("prompt", "clip"), [("metal", "real_excerpt"), ("electronic but not ambient", "drum_beat"),
                                              ("ambient", "sine_440"), ("jazz instrumental", "piano_chords")])
def test_a_tag_query_ranks_first_the_clip_the_original_model_tagged_so(tagged, prompt, clip):
    client, ids, _ = tagged
    body = first(client, prompt)
    assert body["tracks"][0]["id"] == ids[clip], [t["title"] for t in body["tracks"]]


def test_each_clips_tags_are_the_original_models(tagged):
    client, ids, _ = tagged
    for clip, checked in CHECKED.items():
        body = client.get(f"/tracks/{ids[clip]}").json()
        ours = {t["tag"]: t["score"] for t in body["tags"]}
        assert [t["tag"] for t in body["top_tags"]] == list(checked), (clip, body["top_tags"])
        for tag, score in checked.items():
            assert ours[tag] == pytest.approx(score, abs=SCORE_TOLERANCE), (clip, tag)
        assert body["models"]["musicnn"]["stored"] is True


def test_a_word_that_is_no_tag_is_a_422_listing_the_vocabulary(tagged):
    client, _, _ = tagged
    response = client.post("/playlist/text", json={"prompts": ["metal shoegaze"]})
    assert response.status_code == 422
    assert response.json()["unknown"] == ["shoegaze"] and response.json()["vocabulary"] == list(NAMES)


def test_dagster_shows_the_librarys_tag_distribution(tagged):
    _, _, result = tagged
    embedded = [m for m in bucket_materializations(result, "musicnn").values() if m["embedded"]]
    assert embedded and all(m["top_tag"] in NAMES and "| tag |" in m["tag_distribution"] for m in embedded)
    observations = [e.event_specific_data.asset_observation for e in result.all_events
                    if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    library = {k: v.value for k, v in observations[-1].metadata.items()}
    assert library["tagged_tracks"] == 4
    counts = library["tag_counts"]
    assert sum(counts.values()) == 12  # 4 tracks x their 3 strongest tags
    assert counts["metal"] == 1 and counts["electro"] == 1 and counts["jazz"] == 1
    assert "| metal | 1 |" in library["library_tag_distribution"]


def test_an_upload_answer_names_its_top_tags(tmp_path, tagged, milvus_uri, weights):
    upload = tmp_path / "uploads" / "metal.flac"
    upload.parent.mkdir()
    shutil.copy(FIXTURES / EXCERPT_FILE, upload)
    pool = ModelPool(ModelOptions(device="cpu", models_dir=weights))
    store = VectorStore(milvus_uri)
    try:
        service = UploadService(roots=[upload.parent], models=pool, model_names=["musicnn"], store=lambda: store,
                                renamer=Renamer(timeout=5.0), fingerprints=FingerprintStore(tmp_path / "fp.sqlite"),
                                tag_names=NAMES)
        answer = service.handle({"music_file": str(upload), "name": "metal.flac"})
    finally:
        pool.close()
        store.close()
    tags = answer["tags"][0]["tags"]
    assert answer["tags"][0]["name"] and tags[0]["tag"] == "metal"
    assert tags[0]["score"] == pytest.approx(CHECKED["real_excerpt"]["metal"], abs=SCORE_TOLERANCE)
