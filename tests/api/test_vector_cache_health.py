"""``/health`` shows the vector caches: the generation each serves, its age and last error, and a damaged
snapshot set aside; a cache that cannot load is degraded with the reason (not only logged)."""

import dataclasses
import time
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from tests.api.app_fixtures import api_settings, nowhere_url, running_app
from tests.lib.recommend.test_index import DIM, rows
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri, vector_store  # noqa: F401 - fixtures


def library(tmp_path: Path, count: int) -> Path:
    db = tmp_path / "navidrome.db"
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Music", "/music")],
                        tracks=[FixtureTrack(f"{i}.flac", id=f"t{i}") for i in range(count)])
    return db


def warmed_health(client, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/health").json()
        cache = body["vector_cache"]
        if cache.get("warm") and cache["fields"] or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_health_names_the_generation_age_and_a_damaged_snapshot_set_aside(tmp_path: Path, milvus_uri: str,
                                                                          vector_store: VectorStore) -> None:
    rng = np.random.default_rng(1)
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({f"t{i}": rng.standard_normal(DIM).astype(np.float32) for i in range(20)}))
    token = vector_store.publish_writes() and vector_store.generations(["dsp"])["dsp"]
    settings = api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=library(tmp_path, 20))
    snapshots = settings.data_dir / "vector-cache"
    snapshots.mkdir(parents=True)
    (snapshots / "dsp.embedding.json").write_text("garbage, not a manifest")
    with running_app(settings) as client:
        body = warmed_health(client)
    cache = body["vector_cache"]
    (field,) = [f for f in cache["fields"] if f["model"] == "dsp" and f["field"] == "embedding"]
    assert field["generation"] == token and field["rows"] == 20 and field["source"] == "store"
    assert field["age_s"] >= 0 and field["last_error"] is None and not field["stale"]
    assert field["set_aside"]["files"][0].startswith("dsp.embedding.json.corrupt-")
    assert (snapshots / field["set_aside"]["files"][0]).exists() and (snapshots / "dsp.embedding.json").exists()
    assert cache["ok"]  # rebuilt from the store: named, no longer degrading


def test_a_cache_that_cannot_load_makes_health_degraded_with_the_reason(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, milvus_uri=nowhere_url(), navidrome_db=library(tmp_path, 3))
    with running_app(settings) as client:
        body = warmed_health(client)
    assert body["status"] == "degraded" and not body["vector_cache"]["ok"]
    assert any("vector cache dsp.embedding could not be loaded" in reason for reason in body["reasons"]), body


def test_the_api_joins_the_default_models_vectors_and_health_shows_it(tmp_path: Path, milvus_uri: str,
                                                                      vector_store: VectorStore) -> None:
    rng = np.random.default_rng(2)
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({f"t{i}": rng.standard_normal(DIM).astype(np.float32) for i in range(20)}))
    vector_store.ensure_collection("musicnn", {"embedding": DIM, "tags": 50})  # as the model stores its tags
    vector_store.upsert("musicnn", [dataclasses.replace(row, model_id="musicnn", vectors={
        **row.vectors, "tags": rng.random(50).astype(np.float32)}) for row in rows(
            {f"t{i}": rng.standard_normal(DIM).astype(np.float32) for i in range(20)})])
    vector_store.publish_writes()
    settings = api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=library(tmp_path, 20), models="dsp,musicnn")
    with running_app(settings) as client:
        body = warmed_health(client)
        similar = client.get("/rest/getSonicSimilarTracks", params={"id": "t3", "count": 5})
    joined = body["vector_cache"]["joined"]
    assert joined == [{"models": ["dsp", "musicnn"], "tracks": 20, "complete": True, "index": None,
                       "building": False, "error": None}], joined
    assert similar.status_code == 200, similar.text
