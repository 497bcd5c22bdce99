"""Store generations against a real Milvus Lite server: who publishes what, and what readers see."""

import numpy as np

from navembed_pipeline.lib.store import VectorRow, VectorStore
from navembed_pipeline.lib.store.generation import GENERATIONS_COLLECTION

DIM = 4


def rows(*track_ids: str) -> list[VectorRow]:
    return [VectorRow(track_id=t, segment=1, name=t, offset_seconds=0.0, duration_seconds=30.0, model_id="dsp",
                      model_version="1", fingerprint="fp", bucket="00",
                      vectors={"embedding": np.ones(DIM, dtype=np.float32)}) for t in track_ids]


def test_a_store_nobody_published_to_has_no_generations(vector_store: VectorStore):
    assert vector_store.generations() == {}
    assert vector_store.publish_writes() == []  # nothing written: nothing to publish
    assert not vector_store._milvus.exists(GENERATIONS_COLLECTION)


def test_each_publication_is_a_new_token_every_reader_sees(vector_store: VectorStore, milvus_uri: str):
    first = vector_store.publish(["dsp", "muq"])
    assert set(first) == {"dsp", "muq"} and first["dsp"] != first["muq"]
    second = vector_store.publish(["dsp"])
    reader = VectorStore(milvus_uri)
    try:
        assert reader.generations() == {"dsp": second["dsp"], "muq": first["muq"]}
        assert reader.generations(["muq", "mert"]) == {"muq": first["muq"]}
    finally:
        reader.close()
    assert second["dsp"] != first["dsp"]


def test_writes_deletes_and_a_committed_rebuild_are_published_once(vector_store: VectorStore):
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows("a", "b"))
    assert vector_store.publish_writes() == ["dsp"]
    token = vector_store.generations()["dsp"]
    assert vector_store.publish_writes() == []  # already published: the token stays
    assert vector_store.generations()["dsp"] == token
    vector_store.delete_tracks("dsp", ["a"])
    assert vector_store.publish_writes() == ["dsp"] and vector_store.generations()["dsp"] != token


def test_a_rebuilds_staging_writes_are_published_when_it_is_committed(vector_store: VectorStore):
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    staging = vector_store.begin_rebuild("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows("a"), collection=staging)
    assert vector_store.publish_writes() == []  # readers still use the old collection
    vector_store.commit_rebuild("dsp", staging)
    assert vector_store.publish_writes() == ["dsp"]
