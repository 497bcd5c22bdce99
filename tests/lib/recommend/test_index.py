"""VectorCache against a real Milvus Lite server: loads each field once, follows the store's changes."""

import numpy as np
import pytest

from navembed_pipeline.lib.recommend import VectorCache
from navembed_pipeline.lib.recommend.calibration import load_calibration
from navembed_pipeline.lib.store import VectorRow, VectorStore

DIM = 8


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def axis(i: int, dim: int = DIM) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[i] = 1.0
    return vector


def rows(vectors: dict[str, np.ndarray], *, mulan: bool = False) -> list[VectorRow]:
    return [VectorRow(track_id=t, segment=1, name=f"A - {t}", offset_seconds=0.0, duration_seconds=30.0,
                      model_id="muq" if mulan else "dsp", model_version="1", fingerprint="fp", bucket="00",
                      vectors={"embedding": v, **({"mulan": v[:4]} if mulan else {})})
            for t, v in vectors.items()]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(vector_store: VectorStore, clock: Clock) -> VectorCache:
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({"a": axis(0), "b": axis(1)}))
    return VectorCache(vector_store, check_interval_s=10.0, min_reload_interval_s=30.0, max_age_s=1000.0,
                       background=False, clock=clock)


def test_a_field_is_loaded_from_the_store(cache: VectorCache):
    vectors = cache.field("dsp")
    assert sorted(vectors.track_ids) == ["a", "b"]
    assert vectors.vectors_of("b")[0].tolist() == axis(1).tolist()


def test_every_vector_field_of_a_model_loads_on_its_own(vector_store: VectorStore, clock: Clock):
    vector_store.ensure_collection("muq", {"embedding": DIM, "mulan": 4})
    vector_store.upsert("muq", rows({"a": axis(2)}, mulan=True))
    cache = VectorCache(vector_store, background=False, clock=clock)
    assert cache.field("muq", "mulan").dimension == 4
    assert cache.field("muq").dimension == DIM


def test_a_model_without_a_collection_has_no_vectors(cache: VectorCache):
    assert len(cache.field("mert")) == 0


def test_new_tracks_show_once_the_reload_interval_has_passed(cache: VectorCache, vector_store: VectorStore,
                                                            clock: Clock):
    first = cache.field("dsp")
    vector_store.upsert("dsp", rows({"c": axis(2)}))
    clock.now = 5.0
    assert cache.field("dsp") is first  # within the check interval the store is not asked
    clock.now = 11.0
    assert "c" not in cache.field("dsp").track_ids  # changed, but full scans are rate-limited (30 s)
    clock.now = 31.0
    assert "c" in cache.field("dsp").track_ids


def test_an_unchanged_store_is_not_reloaded(cache: VectorCache, clock: Clock):
    first = cache.field("dsp")
    clock.now = 11.0
    assert cache.field("dsp") is first


def test_a_committed_rebuild_is_followed_even_with_the_same_count(cache: VectorCache, vector_store: VectorStore,
                                                                  clock: Clock):
    cache.field("dsp")
    staging = vector_store.begin_rebuild("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({"a": axis(3), "b": axis(4)}), collection=staging)
    vector_store.commit_rebuild("dsp", staging)
    clock.now = 11.0
    assert cache.field("dsp").vectors_of("a")[0].tolist() == axis(3).tolist()


def test_rewritten_vectors_are_reloaded_once_the_copy_is_too_old(cache: VectorCache, vector_store: VectorStore,
                                                                 clock: Clock):
    cache.field("dsp")
    vector_store.upsert("dsp", rows({"a": axis(5)}))  # same rows, new vectors: the signature cannot tell
    clock.now = 11.0
    assert cache.field("dsp").vectors_of("a")[0].tolist() == axis(0).tolist()
    clock.now = 1001.0
    assert cache.field("dsp").vectors_of("a")[0].tolist() == axis(5).tolist()


def test_invalidate_makes_the_next_access_check(cache: VectorCache, vector_store: VectorStore):
    cache.field("dsp")
    vector_store.delete_tracks("dsp", ["b"])
    cache.invalidate("dsp")
    assert cache.field("dsp").track_ids == ("a",)


def test_warm_loads_fields_in_the_background(vector_store: VectorStore, clock: Clock):
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({"a": axis(0)}))
    cache = VectorCache(vector_store, clock=clock)
    cache.warm(["dsp"]).join(timeout=60)
    vector_store.upsert("dsp", rows({"b": axis(1)}))
    assert cache.field("dsp").track_ids == ("a",)  # the warmed copy, not a load made now


def test_each_loaded_field_writes_its_calibration_and_refits_after_a_change(vector_store: VectorStore, clock: Clock,
                                                                            tmp_path):
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({"a": axis(0), "b": axis(1), "c": axis(2)}))
    cache = VectorCache(vector_store, check_interval_s=10.0, min_reload_interval_s=30.0, max_age_s=1000.0,
                        background=False, clock=clock, calibration_dir=tmp_path)
    cache.field("dsp")
    first = load_calibration(tmp_path, "dsp", "embedding")
    assert first is not None and first.signature.endswith(":3 rows")
    assert first.scores.median == pytest.approx(0.0)  # orthogonal tracks: unrelated pairs have cosine 0
    vector_store.upsert("dsp", rows({"d": axis(0) + 0.1 * axis(1)}))
    clock.now += 100.0
    cache.field("dsp")
    again = load_calibration(tmp_path, "dsp", "embedding")
    assert again is not None and again.signature.endswith(":4 rows")


def test_a_new_cache_starts_from_the_snapshot_while_the_store_is_unchanged(vector_store: VectorStore, clock: Clock,
                                                                           tmp_path, caplog):
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({"a": axis(0), "b": axis(1)}))

    def new_cache() -> VectorCache:
        return VectorCache(vector_store, background=False, clock=clock, snapshot_dir=tmp_path)

    first = new_cache().field("dsp")
    assert (tmp_path / "dsp.embedding.npz").exists()
    with caplog.at_level("INFO", logger="navembed.recommend"):
        again = new_cache().field("dsp")
    assert "from the snapshot" in caplog.text
    assert again.track_ids == first.track_ids and np.array_equal(again.rows, first.rows)
    vector_store.upsert("dsp", rows({"c": axis(2)}))  # the store moved on: the snapshot no longer fits
    caplog.clear()
    with caplog.at_level("INFO", logger="navembed.recommend"):
        assert sorted(new_cache().field("dsp").track_ids) == ["a", "b", "c"]
    assert "from the store" in caplog.text
