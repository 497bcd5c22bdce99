"""The vector store against a real Milvus Lite server, with 8-d vectors."""

import time

import numpy as np
import pytest
from pymilvus import MilvusClient

from navembed_pipeline.lib.errors import StoreError
from navembed_pipeline.lib.store import VectorRow, VectorStore, collection_name
from navembed_pipeline.lib.store.schema import embedding_index, embedding_schema
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri, vector_store  # noqa: F401

DIM = 8
FIELDS = {"embedding": DIM}
MUQ_FIELDS = {"embedding": DIM, "mulan": 4}


def axis(index: int, dim: int = DIM) -> np.ndarray:
    vector = np.full(dim, 0.01, dtype=np.float32)
    vector[index] = 1.0
    return vector


def row(track: str, segment: int = 0, *, vector: np.ndarray | None = None, fingerprint: str = "fp1",
        version: str = "dsp:1", bucket: str = "00", extra: dict | None = None) -> VectorRow:
    vectors = {"embedding": axis(0) if vector is None else vector, **(extra or {})}
    return VectorRow(track_id=track, segment=segment, name=f"Artist - {track}", offset_seconds=30.0 * segment,
                     duration_seconds=30.0, model_id="dsp", model_version=version,
                     fingerprint=fingerprint, bucket=bucket, vectors=vectors)


@pytest.fixture
def store(vector_store: VectorStore) -> VectorStore:
    vector_store.ensure_collection("dsp", FIELDS)
    return vector_store


def test_models_keep_the_original_collection_names():
    assert [collection_name(m) for m in ("muq", "mert", "latent", "dsp")] == [
        "embedding", "mert_embedding", "latent_embedding", "dsp_embedding"]


def test_every_vector_field_gets_an_hnsw_cosine_index(vector_store, milvus_uri):
    physical = vector_store.ensure_collection("muq", MUQ_FIELDS)
    client = MilvusClient(uri=milvus_uri)
    indexes = {name: client.describe_index(physical, name) for name in client.list_indexes(physical)}
    client.close()
    assert {name: (i["index_type"], i["metric_type"]) for name, i in indexes.items()} == {
        "embedding": ("HNSW", "COSINE"), "mulan": ("HNSW", "COSINE"),
        "track_id": ("INVERTED", "NONE"), "name": ("INVERTED", "NONE"), "bucket": ("INVERTED", "NONE")}


def test_writing_the_same_rows_twice_keeps_one_copy(store):
    rows = [row("a", 0), row("a", 1), row("b", 0)]
    store.upsert("dsp", rows)
    store.upsert("dsp", rows + rows)
    assert store.count("dsp") == 3


def test_rewriting_a_track_with_fewer_segments_drops_the_extra_ones(store):
    store.upsert("dsp", [row("a", 0), row("a", 1), row("a", 2), row("b", 0), row("b", 1)])
    store.upsert("dsp", [row("a", 0, fingerprint="fp2")])
    assert store.stored("dsp", ["a", "b"])["a"].segments == 1
    assert store.stored("dsp", ["b"])["b"].segments == 2


def test_deleting_a_track_removes_all_its_segments_and_nothing_else(store):
    store.upsert("dsp", [row("a", 0), row("a", 1), row("b", 0)])
    store.delete_tracks("dsp", ["a"])
    assert store.all_track_ids("dsp") == {"b"}


def test_search_returns_the_nearest_by_cosine_whatever_the_length(store):
    store.upsert("dsp", [row(t, vector=axis(i)) for i, t in enumerate("abcd")])
    hits = store.search("dsp", 7.0 * axis(2), limit=2)
    assert len(hits) == 2 and hits[0].track_id == "c"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].name == "Artist - c" and hits[0].fields["duration_seconds"] == 30.0


def test_search_many_answers_each_query_in_order(store):
    store.upsert("dsp", [row(t, vector=axis(i)) for i, t in enumerate("abcd")])
    answers = store.search_many("dsp", [axis(3), axis(1)], limit=1)
    assert [hits[0].track_id for hits in answers] == ["d", "b"]


def test_search_filters_restrict_the_candidates(store):
    store.upsert("dsp", [row(t, vector=axis(i)) for i, t in enumerate("abcd")])
    hits = store.search("dsp", axis(2), limit=10, filter='track_id not in ["c", "d"]')
    assert {h.track_id for h in hits} == {"a", "b"}


def test_stored_reports_fingerprint_version_and_segments_of_known_tracks_only(store):
    store.upsert("dsp", [row("a", 0), row("a", 1), row("b", 0, fingerprint="fp9", version="dsp:2")])
    stored = store.stored("dsp", ["a", "b", "missing"])
    assert (stored["a"].fingerprint, stored["a"].model_version, stored["a"].segments) == ("fp1", "dsp:1", 2)
    assert (stored["b"].fingerprint, stored["b"].model_version) == ("fp9", "dsp:2")
    assert "missing" not in stored


def test_whole_collection_summaries(store):
    store.upsert("dsp", [row("a", bucket="0a"), row("b", fingerprint="fp2", bucket="0b")])
    assert store.fingerprints("dsp") == {"a": "fp1", "b": "fp2"}
    assert store.stored_summary("dsp") == {"a": ("fp1", "dsp:1"), "b": ("fp2", "dsp:1")}
    assert store.track_ids_in_bucket("dsp", "0b") == {"b"}


def test_a_model_never_embedded_reads_as_empty(vector_store):
    assert vector_store.count("mert") == 0
    assert vector_store.stored("mert", ["a"]) == {}
    assert vector_store.fingerprints("mert") == {}
    assert vector_store.get_vectors("mert", ["a"]) == {}


def test_track_ids_with_quotes_are_escaped_in_filters(store):
    odd = 'it\'s a "track"\\1'
    store.upsert("dsp", [row(odd), row("b")])
    assert store.stored("dsp", [odd])[odd].segments == 1
    store.delete_tracks("dsp", [odd])
    assert store.all_track_ids("dsp") == {"b"}


def test_get_vectors_returns_each_tracks_segments_in_order(store):
    store.upsert("dsp", [row("a", 1, vector=axis(1)), row("a", 0, vector=axis(0))])
    vectors = store.get_vectors("dsp", ["a"])["a"]
    assert vectors.shape == (2, DIM)
    np.testing.assert_allclose(vectors, np.stack([axis(0), axis(1)]), rtol=1e-6)


def test_a_muq_collection_holds_and_searches_both_vector_fields(vector_store):
    vector_store.ensure_collection("muq", MUQ_FIELDS)
    rows = [row(t, vector=axis(i), extra={"mulan": axis(3 - i, 4)}) for i, t in enumerate("abcd")]
    vector_store.upsert("muq", rows)
    assert vector_store.search("muq", axis(0, 4), field="mulan", limit=1)[0].track_id == "d"
    assert vector_store.get_vectors("muq", ["a"], "mulan")["a"].shape == (1, 4)


def test_rows_that_do_not_fit_the_collection_are_refused_before_writing(store):
    with pytest.raises(StoreError, match="must be 8 finite"):
        store.upsert("dsp", [row("a"), row("b", vector=np.ones(5, np.float32))])
    with pytest.raises(StoreError, match="finite"):
        store.upsert("dsp", [row("c", vector=np.full(DIM, np.nan, np.float32))])
    with pytest.raises(StoreError, match="expects"):
        store.upsert("dsp", [row("d", extra={"mulan": axis(0, 4)})])
    assert store.count("dsp") == 0


def test_ensure_collection_is_idempotent_and_refuses_other_dimensions(vector_store):
    first = vector_store.ensure_collection("dsp", FIELDS)
    assert vector_store.ensure_collection("dsp", FIELDS) == first
    with pytest.raises(StoreError, match="re-embed everything"):
        vector_store.ensure_collection("dsp", {"embedding": 16})


def test_failures_are_recorded_per_model_replaced_and_cleared(vector_store):
    vector_store.record_failures("dsp", [("a", "decode failed"), ("b", "too short")])
    vector_store.record_failures("muq", [("a", "out of memory")])
    vector_store.record_failures("dsp", [("a", "file missing")])
    assert vector_store.failed_tracks("dsp") == {"a": "file missing", "b": "too short"}
    vector_store.clear_failures("dsp", ["a"])
    assert vector_store.failed_tracks("dsp") == {"b": "too short"}
    assert vector_store.failed_tracks("muq") == {"a": "out of memory"}


def test_a_rebuild_keeps_answering_with_the_old_vectors_until_it_commits(store):
    store.upsert("dsp", [row("old", vector=axis(0))])
    staging = store.begin_rebuild("dsp", FIELDS)
    store.upsert("dsp", [row("new", vector=axis(0))], collection=staging)
    assert [h.track_id for h in store.search("dsp", axis(0))] == ["old"]
    assert store.pending_rebuilds("dsp") == [staging]
    store.commit_rebuild("dsp", staging)
    assert [h.track_id for h in store.search("dsp", axis(0))] == ["new"]
    assert store.pending_rebuilds("dsp") == []


def test_an_aborted_rebuild_leaves_the_old_vectors_intact(store):
    store.upsert("dsp", [row("old", vector=axis(0))])
    staging = store.begin_rebuild("dsp", FIELDS)
    store.upsert("dsp", [row("new", vector=axis(0))], collection=staging)
    assert store.abort_rebuild("dsp", staging) == [staging]
    assert [h.track_id for h in store.search("dsp", axis(0))] == ["old"]
    assert store.pending_rebuilds("dsp") == []


def test_a_rebuild_can_change_the_dimension(store):
    store.upsert("dsp", [row("old")])
    staging = store.begin_rebuild("dsp", {"embedding": 4})
    store.upsert("dsp", [row("new", vector=axis(1, 4))], collection=staging)
    store.commit_rebuild("dsp", staging)
    assert store.ensure_collection("dsp", {"embedding": 4}) == staging
    assert store.all_track_ids("dsp") == {"new"}


def test_a_rebuild_replaces_a_plain_collection_from_an_older_install(vector_store, milvus_uri):
    legacy = MilvusClient(uri=milvus_uri)
    legacy.create_collection("dsp_embedding", schema=embedding_schema(FIELDS))
    legacy.create_index("dsp_embedding", embedding_index(legacy, FIELDS), sync=False)
    legacy.load_collection("dsp_embedding")
    legacy.close()
    staging = vector_store.begin_rebuild("dsp", FIELDS)
    vector_store.upsert("dsp", [row("new")], collection=staging)
    vector_store.commit_rebuild("dsp", staging)
    assert vector_store.all_track_ids("dsp") == {"new"}


def test_staging_names_of_other_models_are_refused(store):
    staging = store.begin_rebuild("muq", MUQ_FIELDS)
    with pytest.raises(StoreError, match="not a physical collection"):
        store.upsert("dsp", [row("a")], collection=staging)


def test_a_rejected_operation_names_the_uri_and_the_operation(store):
    store.upsert("dsp", [row("a")])
    with pytest.raises(StoreError, match=rf"{store.uri}: search on 'dsp_embedding' failed"):
        store.search("dsp", axis(0), filter="no_such_field ==")


def test_an_unreachable_store_fails_fast_with_its_uri():
    started = time.monotonic()
    unreachable = VectorStore("http://127.0.0.1:9", connect_timeout=1.0)
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        unreachable.count("dsp")
    assert time.monotonic() - started < 5
