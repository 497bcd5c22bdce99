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
    assert (tmp_path / "dsp.embedding.json").exists()
    with caplog.at_level("INFO", logger="navembed.recommend"):
        again = new_cache().field("dsp")
    assert "from the snapshot" in caplog.text
    assert again.track_ids == first.track_ids and np.array_equal(again.rows, first.rows)
    vector_store.upsert("dsp", rows({"c": axis(2)}))  # the store moved on: the snapshot no longer fits
    caplog.clear()
    with caplog.at_level("INFO", logger="navembed.recommend"):
        assert sorted(new_cache().field("dsp").track_ids) == ["a", "b", "c"]
    assert "from the store" in caplog.text


def test_the_snapshot_keeps_the_approximate_index_so_a_restart_does_not_train_it_again(
        vector_store: VectorStore, clock: Clock, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({f"t{i:03d}": rng.standard_normal(DIM).astype(np.float32) for i in range(400)}))

    def new_cache() -> VectorCache:
        return VectorCache(vector_store, background=False, clock=clock, snapshot_dir=tmp_path, ivf_min_rows=100)

    first = new_cache().field("dsp")
    assert first.ann is not None
    import navembed_pipeline.lib.recommend.vectors as vectors_module

    def no_training(_rows):
        raise AssertionError("the index was trained again instead of read from the snapshot")

    monkeypatch.setattr(vectors_module, "build_ann", no_training)
    again = new_cache().field("dsp")
    assert again.ann is not None and again.ann.index.ntotal == 400
    query = first.rows[17]
    assert set(again.candidates(query, 10).tolist()) == set(first.candidates(query, 10).tolist())


def test_a_damaged_index_in_the_snapshot_means_one_scan_not_a_crash(vector_store: VectorStore, clock: Clock,
                                                                    tmp_path):
    rng = np.random.default_rng(6)
    vector_store.ensure_collection("dsp", {"embedding": DIM})
    vector_store.upsert("dsp", rows({f"t{i:03d}": rng.standard_normal(DIM).astype(np.float32) for i in range(300)}))
    VectorCache(vector_store, background=False, clock=clock, snapshot_dir=tmp_path, ivf_min_rows=100).field("dsp")
    (index,) = tmp_path.glob("dsp.embedding.*/ann.faiss")
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])  # a truncated index
    again = VectorCache(vector_store, background=False, clock=clock, snapshot_dir=tmp_path, ivf_min_rows=100)
    assert len(again.field("dsp")) == 300


# ----- store generations: a finished writer's results are served at once, an unchanged store never rescanned -----
def test_a_published_rewrite_in_place_is_served_at_the_next_check(cache: VectorCache, vector_store: VectorStore,
                                                                   clock: Clock):
    cache.field("dsp")
    vector_store.upsert("dsp", rows({"a": axis(5)}))  # a forced re-embed: same rows, same count, new vectors
    assert vector_store.publish_writes() == ["dsp"]
    clock.now = 11.0  # one check interval, not the 1000 s age limit nor the 30 s reload limit
    assert cache.field("dsp").vectors_of("a")[0].tolist() == axis(5).tolist()


def test_sync_serves_published_writes_now_and_leaves_unpublished_ones_to_the_checks(
        cache: VectorCache, vector_store: VectorStore):
    first = cache.field("dsp")
    vector_store.upsert("dsp", rows({"c": axis(2)}))  # a run still writing: nothing published yet
    assert cache.sync() == [] and cache.field("dsp") is first
    vector_store.delete_tracks("dsp", ["b"])
    vector_store.publish_writes()
    assert cache.sync() == [("dsp", "embedding")]  # no clock moved: on the spot
    assert sorted(cache.field("dsp").track_ids) == ["a", "c"]
    assert cache.sync() == []  # caught up: nothing more to load


def test_a_store_with_generations_is_not_rescanned_when_unchanged(cache: VectorCache, vector_store: VectorStore,
                                                                  clock: Clock, caplog):
    vector_store.upsert("dsp", rows({"c": axis(2)}))
    vector_store.publish_writes()
    first = cache.field("dsp")
    clock.now = 5000.0  # far past max_age_s: only a store without generations expires copies
    with caplog.at_level("INFO", logger="navembed.recommend"):
        assert cache.field("dsp") is first
        cache.refresh()
        assert cache.field("dsp") is first
    assert "reloading" not in caplog.text


def test_a_generation_published_elsewhere_is_seen(cache: VectorCache, vector_store: VectorStore, milvus_uri: str):
    cache.field("dsp")
    worker = VectorStore(milvus_uri)  # another process's (a fanned-out worker's) connection
    try:
        worker.upsert("dsp", rows({"a": axis(6)}))
        worker.publish_writes()
    finally:
        worker.close()
    cache.sync()
    assert cache.field("dsp").vectors_of("a")[0].tolist() == axis(6).tolist()
