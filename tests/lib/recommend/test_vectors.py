"""FieldVectors: exact cosines per track, best segment wins, and an inverted file that finds the same tracks."""

import numpy as np
import pytest

from navembed_pipeline.lib.recommend import FieldVectors
from tests.lib.recommend.helpers import field, unit


def test_similarity_is_the_cosine_and_nan_for_tracks_without_vectors():
    vectors = field("dsp", {"a": unit(1, 0, 0), "b": unit(1, 1, 0)})
    found = vectors.similarity(vectors.local_indices(["b", "missing", "a"]), np.array([2.0, 0.0, 0.0]))
    assert found[0] == pytest.approx(np.sqrt(0.5))
    assert np.isnan(found[1])
    assert found[2] == pytest.approx(1.0)


def test_a_track_with_several_segments_is_as_near_as_its_nearest_segment():
    vectors = field("dsp", {"cue": np.stack([unit(1, 0, 0), unit(0, 1, 0)]), "plain": unit(0, 0, 1)})
    assert vectors.vectors_of("cue").shape == (2, 3)
    near = vectors.similarity(vectors.local_indices(["cue", "plain"]), unit(0, 1, 0))
    assert near.tolist() == pytest.approx([1.0, 0.0])


def test_candidates_of_a_small_field_are_exactly_the_nearest():
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((300, 8)).astype(np.float32)
    vectors = field("dsp", {f"t{i}": row for i, row in enumerate(rows)})
    query = rows[7]
    exact = np.argsort(-(rows / np.linalg.norm(rows, axis=1, keepdims=True)) @ (query / np.linalg.norm(query)))[:10]
    assert vectors.ann is None
    found = {vectors.track_ids[i] for i in vectors.candidates(query, 10)}
    assert {f"t{i}" for i in exact} <= found


def test_the_inverted_file_finds_nearly_all_of_the_true_nearest_tracks():
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((40, 32))
    rows = (centres[rng.integers(0, 40, 4000)] + 0.6 * rng.standard_normal((4000, 32))).astype(np.float32)
    ids = [f"t{i}" for i in range(len(rows))]
    approximate = FieldVectors("dsp", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=1000)
    exact = FieldVectors("dsp", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=10**9)
    assert approximate.ann is not None and exact.ann is None
    recalls = []
    for query in rows[:20]:
        truth = set(exact.candidates(query, 50).tolist())
        recalls.append(len(truth & set(approximate.candidates(query, 50).tolist())) / len(truth))
    assert np.mean(recalls) >= 0.9


def test_the_baseline_is_the_spread_of_cosines_over_the_library():
    vectors = field("dsp", {"a": unit(1, 0), "b": unit(0, 1), "c": unit(-1, 0), "d": unit(0, -1)})
    mean, deviation = vectors.baseline(unit(1, 0))
    assert mean == pytest.approx(0.0, abs=1e-7)
    assert deviation == pytest.approx(np.sqrt(0.5))


def test_a_library_of_identical_tracks_has_unit_spread_instead_of_zero():
    vectors = field("dsp", {"a": unit(1, 0), "b": unit(1, 0)})
    assert vectors.baseline(unit(1, 0)) == pytest.approx((1.0, 1.0))


def test_vectors_must_match_the_ids():
    with pytest.raises(ValueError, match="2 ids"):
        FieldVectors("dsp", "embedding", ["a", "b"], [1, 1], np.ones((3, 4)))


def test_an_hnsw_search_for_more_candidates_than_its_ef_explores_as_many(monkeypatch):
    """faiss does not raise efSearch to k by itself: asked for 400 with efSearch 16, the far end was poor."""
    import navembed_pipeline.lib.recommend.ann as ann_module

    monkeypatch.setattr(ann_module, "HNSW_EF_SEARCH", 16)
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((3000, 24)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = ann_module.build_ann(rows, kind="hnsw")
    assert type(index.index).__name__.startswith("IndexHNSW") and index.kind == "hnsw"
    recalls = []
    for query in rows[:10]:
        truth = set(np.argsort(-(rows @ query))[:400].tolist())
        recalls.append(len(truth & set(index.search(query[None, :], 400)[0].tolist())) / 400)
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_over_fetched_candidates_are_the_exact_nearest_of_the_proposals(monkeypatch, kind):
    """With ``overfetch`` the index proposes more rows and exact cosines keep ``k``: never more than ``k``
    tracks per query, and here (a small library) the exact search's (HNSW) or nearly all of them (IVF, which
    only looks into the lists it probes)."""
    import navembed_pipeline.lib.recommend.ann as ann_module

    monkeypatch.setattr(ann_module, "INDEX_KIND", kind)
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((3000, 16)).astype(np.float32)
    ids = [f"t{i}" for i in range(len(rows))]
    approximate = FieldVectors("dsp", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=1000)
    exact = FieldVectors("dsp", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=10**9)
    assert approximate.ann is not None and approximate.ann.kind == kind
    for query in rows[:5]:
        found = approximate.candidates(query, 100, overfetch=2)
        truth = set(exact.candidates(query, 100).tolist())
        assert len(found) == 100
        if kind == "hnsw":
            assert set(found.tolist()) == truth
        else:
            assert len(truth & set(found.tolist())) >= 80  # random 16-d rows: the hard case for lists


def test_the_graph_up_to_hnsw_max_rows_and_the_inverted_file_above(monkeypatch):
    """The default picks the index by size: HNSW's rebuild after each run grows too costly past its limit."""
    import navembed_pipeline.lib.recommend.ann as ann_module

    monkeypatch.setattr(ann_module, "INDEX_KIND", "auto")
    monkeypatch.setattr(ann_module, "HNSW_MAX_ROWS", 2000)
    rng = np.random.default_rng(3)
    kinds = {}
    for count in (1500, 3000):
        rows = rng.standard_normal((count, 16)).astype(np.float32)
        ids = [f"t{i}" for i in range(count)]
        kinds[count] = FieldVectors("dsp", "embedding", ids, [1] * count, rows, ivf_min_rows=1000).ann.kind
    assert kinds == {1500: "hnsw", 3000: "ivf"}
    assert ann_module.index_kind(10**6, "hnsw") == "hnsw" and ann_module.index_kind(10, "ivf") == "ivf"
