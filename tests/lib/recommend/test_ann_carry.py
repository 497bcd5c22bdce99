"""A reload keeps its approximate index when few rows changed (``AnnIndex.carried``): the kept entries point
at the right rows, the rows outside the index are still found, a restart maps the carried index, and too
many changes build a new one. The cache does it on a real Milvus Lite server's reload."""

import numpy as np
import pytest

import navembed_pipeline.lib.recommend.ann as ann_module
import navembed_pipeline.lib.recommend.vectors as vectors_module
from navembed_pipeline.lib.recommend import FieldVectors
from navembed_pipeline.lib.recommend.snapshot import read_snapshot, write_snapshot
from navembed_pipeline.lib.store import VectorStore
from tests.lib.recommend.test_index import DIM, rows
from tests.lib.recommend.test_snapshot import filled, new_cache  # noqa: F401 - the fixture is used below

COUNT, WIDTH = 4000, 16


def library(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"t{i:05d}": rng.standard_normal(WIDTH).astype(np.float32) for i in range(COUNT)}


def build(vectors: dict[str, np.ndarray], previous: FieldVectors | None = None) -> FieldVectors:
    ids = list(vectors)
    return FieldVectors("dsp", "embedding", ids, [1] * len(ids), np.stack(list(vectors.values())),
                        ivf_min_rows=1000, previous=previous)


def changed(vectors: dict[str, np.ndarray], *, removed: int, altered: int, added: int,
            seed: int = 2) -> tuple[dict[str, np.ndarray], list[str]]:
    """A library after a run: ``removed`` tracks gone, ``altered`` re-embedded, ``added`` new; the ids whose
    vectors are new."""
    rng = np.random.default_rng(seed)
    ids = list(vectors)
    picked = rng.choice(len(ids), removed + altered, replace=False)
    out = dict(vectors)
    for i in picked[:removed]:
        del out[ids[i]]
    fresh = [ids[i] for i in picked[removed:]]
    fresh += [f"n{seed}-{i:04d}" for i in range(added)]
    for track in fresh:
        out[track] = rng.standard_normal(WIDTH).astype(np.float32)
    return out, fresh


def exact_of(field: FieldVectors) -> FieldVectors:
    return FieldVectors.restore(field.model, field.field, field.track_ids, field.row_track, field.rows, field.norms,
                                ann=None, calibration=field.calibration)


@pytest.fixture
def hnsw(monkeypatch):
    monkeypatch.setattr(ann_module, "INDEX_KIND", "hnsw")


def test_a_reload_with_few_changes_keeps_the_index_and_its_entries_point_at_the_right_rows(hnsw):
    before = library()
    old = build(before)
    after, fresh = changed(before, removed=30, altered=20, added=25)
    new = build(after, previous=old)
    assert new.ann.index is old.ann.index  # not rebuilt
    assert new.ann.gone == 50 and len(new.ann.extra) == 45  # 30 removed + 20 altered; 20 altered + 25 added
    kept = new.ann.labels >= 0
    built_over = new.ann.index.reconstruct_n(0, new.ann.entries)  # the flat rows the graph holds
    assert np.array_equal(built_over[kept], np.asarray(new.rows)[new.ann.labels[kept]])
    assert sorted(new.track_ids[new.row_track[r]] for r in new.ann.extra) == sorted(fresh)
    exact = exact_of(new)
    for track in fresh[:15] + [new.track_ids[i] for i in range(0, len(new), 400)]:
        query = new.vectors_of(track)[0]
        found = set(new.candidates(query, 30).tolist())
        assert new.track_index[track] in found
        assert found == set(exact.candidates(query, 30).tolist())  # a small library: HNSW finds the exact ones


def test_reloads_carry_the_index_further_and_a_restart_maps_the_carried_index(hnsw, tmp_path):
    first = build(library())
    second_rows, _ = changed(dict(zip(first.track_ids, np.asarray(first.rows))), removed=10, altered=10,
                             added=10, seed=3)
    second = build(second_rows, previous=first)
    write_snapshot(tmp_path, ("c", len(second.rows), "g1"), second)
    mapped = read_snapshot(tmp_path, "dsp", "embedding", ("c", len(second.rows), "g1"))
    assert mapped.ann.labels is not None and np.array_equal(mapped.ann.labels, second.ann.labels)
    assert np.array_equal(mapped.ann.extra, second.ann.extra) and mapped.ann.gone == second.ann.gone
    third_rows, fresh = changed(dict(zip(mapped.track_ids, np.asarray(mapped.rows))), removed=10, altered=5,
                                added=5, seed=4)
    third = build(third_rows, previous=mapped)  # from the mapped snapshot, as after a restart and a run
    assert third.ann.index is mapped.ann.index and third.ann.gone >= second.ann.gone  # carried once more
    kept = third.ann.labels >= 0
    built_over = third.ann.index.reconstruct_n(0, third.ann.entries)
    # the rows were fed back normalised, so normalising them again may move the last bit
    assert np.abs(built_over[kept] - np.asarray(third.rows)[third.ann.labels[kept]]).max() <= 1e-6
    outside = {third.track_ids[third.row_track[r]] for r in third.ann.extra}
    assert set(fresh) <= outside and len(outside) == len(third.ann.extra)
    exact = exact_of(third)
    for track in fresh:
        query = third.vectors_of(track)[0]
        assert set(third.candidates(query, 20).tolist()) == set(exact.candidates(query, 20).tolist())


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_too_many_changes_build_a_new_index(monkeypatch, kind):
    monkeypatch.setattr(ann_module, "INDEX_KIND", kind)
    before = library()
    old = build(before)
    new_tracks, _ = changed(before, removed=0, altered=0, added=int(ann_module.CARRY_MAX_EXTRA * COUNT) + 10)
    grown = build(new_tracks, previous=old)
    assert grown.ann.index is not old.ann.index and grown.ann.labels is None
    many_gone, _ = changed(before, removed=int(ann_module.CARRY_MAX_GONE * COUNT) + 10, altered=0, added=0)
    shrunk = build(many_gone, previous=old)
    assert shrunk.ann.index is not old.ann.index and shrunk.ann.labels is None
    few, _ = changed(before, removed=5, altered=5, added=5)
    assert build(few, previous=old).ann.index is old.ann.index  # the inverted file is carried over as well


def test_the_cache_keeps_its_index_when_a_run_changed_a_few_rows(filled: VectorStore, tmp_path,  # noqa: F811
                                                                 monkeypatch, hnsw):
    cache = new_cache(filled, tmp_path)
    first = cache.field("dsp")
    assert first.ann is not None

    def rebuilt(*_args, **_kwargs):
        raise AssertionError("the index was built again for a run that changed two rows")

    monkeypatch.setattr(vectors_module, "build_ann", rebuilt)
    rng = np.random.default_rng(9)
    new = {"t005": rng.standard_normal(DIM).astype(np.float32), "zz-new": rng.standard_normal(DIM).astype(np.float32)}
    filled.upsert("dsp", rows(new))
    filled.publish_writes()
    assert cache.sync("dsp") == [("dsp", "embedding")]
    second = cache.field("dsp")
    assert second is not first and second.ann.index is first.ann.index
    assert sorted(second.track_ids[second.row_track[r]] for r in second.ann.extra) == ["t005", "zz-new"]
    for track, vector in new.items():
        assert second.track_ids[second.candidates(vector, 1)[0]] == track


def test_a_first_scan_serves_exact_search_at_once_and_its_index_when_built(filled: VectorStore, tmp_path,  # noqa: F811
                                                                           monkeypatch, hnsw):
    """A large first load from the store does not wait minutes for its graph: exact search answers meanwhile,
    ``status()`` says the index is being built, then the indexed copy serves and is the snapshot."""
    import threading

    from navembed_pipeline.lib.recommend import VectorCache
    from navembed_pipeline.lib.recommend.snapshot import read_snapshot as read

    release = threading.Event()
    real_build = ann_module.build_ann

    def slow_build(rows):
        assert release.wait(60)
        return real_build(rows)

    import navembed_pipeline.lib.recommend.index as index_module

    monkeypatch.setattr(index_module, "build_ann", slow_build)
    cache = VectorCache(filled, background=True, snapshot_dir=tmp_path / "snap", ivf_min_rows=100,
                        deferred_index_rows=100)
    first = cache.field("dsp")
    assert first.ann is None  # answered by exact search while the graph is built
    (status,) = cache.status()
    assert status["index"] == "exact" and status["index_building"]["rows"] == len(first.rows)
    query = first.rows[3]
    exact_answer = set(first.candidates(query, 10).tolist())
    release.set()
    for _ in range(600):
        if cache.field("dsp").ann is not None:
            break
        threading.Event().wait(0.05)
    indexed = cache.field("dsp")
    assert indexed.ann is not None and set(indexed.candidates(query, 10).tolist()) == exact_answer
    for _ in range(200):  # the snapshot is written after the swap
        if "index_building" not in cache.status()[0]:
            break
        threading.Event().wait(0.05)
    assert "index_building" not in cache.status()[0]
    signature = cache.status()[0]
    mapped = read(tmp_path / "snap", "dsp", "embedding", (signature["collection"], len(indexed.rows),
                                                          signature["generation"]))
    assert mapped is not None and mapped.ann is not None  # the snapshot holds the index


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_prefaulting_a_mapped_index_leaves_its_answers_as_they_were(monkeypatch, tmp_path, kind, caplog):
    """``prefault`` (run on a thread after every snapshot read) touches a mapped graph's rows and links through
    faiss's own arrays; the answers do not change, and nothing is logged as failed."""
    from navembed_pipeline.lib.recommend.snapshot import prefault

    monkeypatch.setattr(ann_module, "INDEX_KIND", kind)
    built = build(library())
    write_snapshot(tmp_path, ("c", len(built.rows), "g"), built)
    mapped = read_snapshot(tmp_path, "dsp", "embedding", ("c", len(built.rows), "g"))
    queries = np.asarray(mapped.rows[:5])
    before = mapped.ann.search(queries, 20)
    with caplog.at_level("WARNING", logger="navembed.recommend"):
        prefault(mapped)
    assert np.array_equal(mapped.ann.search(queries, 20), before)
    assert not [r for r in caplog.records if "prefault" in r.getMessage()]
