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
    assert vectors.clusters is None
    found = {vectors.track_ids[i] for i in vectors.candidates(query, 10)}
    assert {f"t{i}" for i in exact} <= found


def test_the_inverted_file_finds_nearly_all_of_the_true_nearest_tracks():
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((40, 32))
    rows = (centres[rng.integers(0, 40, 4000)] + 0.6 * rng.standard_normal((4000, 32))).astype(np.float32)
    ids = [f"t{i}" for i in range(len(rows))]
    approximate = FieldVectors("dsp", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=1000)
    exact = FieldVectors("dsp", "embedding", ids, [1] * len(ids), rows, ivf_min_rows=10**9)
    assert approximate.clusters is not None and exact.clusters is None
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
