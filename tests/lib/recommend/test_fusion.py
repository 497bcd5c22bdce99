"""Fusion math on hand-made similarities: z-scores, weights, reciprocal ranks, penalties, explanations."""

import math

import numpy as np
import pytest

from navembed_pipeline.lib.recommend.fusion import Probe, fuse, make_term

NAN = float("nan")


def term(model: str, similarity: list[float], baseline=(0.5, 0.1), *, fusion="weighted", source="seed", ref="s"):
    probe = Probe(model, "embedding", source, ref, np.zeros((1, 2)))
    return make_term(probe, np.asarray(similarity, dtype=float), baseline, fusion=fusion, rrf_k=60)


def test_weighted_fusion_mixes_z_scores_by_model_weight():
    a = term("a", [0.9, 0.1, 0.5], baseline=(0.5, 0.2))  # z = 2, -2, 0
    b = term("b", [0.3, 0.7, 0.6], baseline=(0.5, 0.1))  # z = -2, 2, 1
    scores = fuse([a, b], [], {"a": 0.75, "b": 0.25}, strength=1.0)
    assert scores.total.tolist() == pytest.approx([1.0, -1.0, 0.25])


def test_a_model_without_vectors_for_a_track_does_not_vote_on_it():
    a = term("a", [0.9, NAN], baseline=(0.5, 0.2))
    b = term("b", [0.3, 0.7], baseline=(0.5, 0.1))
    scores = fuse([a, b], [], {"a": 0.75, "b": 0.25}, strength=1.0)
    assert scores.total[1] == pytest.approx(2.0)  # b alone, at full weight
    assert [c.model for c in scores.explain(1)[1].contributions] == ["b"]
    assert scores.explain(1)[1].contributions[0].weight == pytest.approx(1.0)


def test_several_inputs_in_one_model_share_its_weight():
    first = term("a", [0.7], baseline=(0.5, 0.1), ref="s1")  # z = 2
    second = term("a", [0.5], baseline=(0.5, 0.1), ref="s2")  # z = 0
    other = term("b", [0.9], baseline=(0.5, 0.1))  # z = 4
    scores = fuse([first, second, other], [], {"a": 0.5, "b": 0.5}, strength=1.0)
    assert scores.total[0] == pytest.approx(0.5 * (2 + 0) / 2 + 0.5 * 4)


def test_a_track_no_model_has_vectors_for_cannot_be_ranked():
    scores = fuse([term("a", [NAN, 0.6])], [], {"a": 1.0}, strength=1.0)
    assert scores.total[0] == -np.inf


def test_reciprocal_rank_fusion_sums_weighted_reciprocal_ranks():
    a = term("a", [0.9, 0.1, 0.5], fusion="rrf")  # ranks 1, 3, 2
    b = term("b", [0.2, 0.8, 0.1], fusion="rrf")  # ranks 2, 1, 3
    scores = fuse([a, b], [], {"a": 0.5, "b": 0.5}, strength=1.0)
    expected = [0.5 / 61 + 0.5 / 62, 0.5 / 63 + 0.5 / 61, 0.5 / 62 + 0.5 / 63]
    assert scores.total.tolist() == pytest.approx(expected)
    assert [c.rank for c in scores.explain(0)[1].contributions] == [1, 2]


def test_the_nearest_negative_costs_strength_times_its_normalised_similarity():
    positive = term("a", [0.5, 0.5, 0.5])  # z = 0 everywhere
    drums = [term("a", [0.8, 0.4, 0.55], source="negative_prompt", ref="drums")]  # z = 3, -1, 0.5
    noise = [term("a", [0.6, 0.3, 0.7], source="negative_prompt", ref="noise")]  # z = 1, -2, 2
    scores = fuse([positive], [drums, noise], {"a": 1.0}, strength=0.5)
    assert scores.total.tolist() == pytest.approx([-1.5, 0.0, -1.0])
    penalty = scores.explain(0)[1].penalty
    assert (penalty.ref, penalty.source, penalty.value) == ("drums", "negative_prompt", pytest.approx(-1.5))
    assert scores.explain(2)[1].penalty.ref == "noise"
    assert scores.explain(1)[1].penalty is None  # farther than average from every negative: no bonus either


def test_a_negative_input_is_mixed_over_models_like_the_positives():
    positive = [term("a", [0.5]), term("b", [0.5])]
    negative = [term("a", [0.8], source="negative_track", ref="n"), term("b", [0.6], source="negative_track", ref="n")]
    scores = fuse(positive, [negative], {"a": 0.25, "b": 0.75}, strength=1.0)
    assert scores.total[0] == pytest.approx(-(0.25 * 3 + 0.75 * 1))
    assert scores.explain(0)[1].penalty.similarity == {"a": pytest.approx(0.8), "b": pytest.approx(0.6)}


def test_zero_strength_ignores_negatives():
    scores = fuse([term("a", [0.5])], [[term("a", [0.9], source="negative_prompt")]], {"a": 1.0}, strength=0.0)
    assert scores.total[0] == pytest.approx(0.0)
    assert scores.explain(0)[1].penalty is None


def test_explanations_add_up_exactly_to_the_score():
    rng = np.random.default_rng(3)
    terms = [term(m, rng.uniform(-1, 1, 50).tolist(), baseline=(0.1, 0.3), ref=f"s{i}")
             for i, m in enumerate("aabc")]
    groups = [[term(m, rng.uniform(-1, 1, 50).tolist(), source="negative_track", ref="n") for m in "abc"]]
    scores = fuse(terms, groups, {"a": 0.2, "b": 0.3, "c": 0.5}, strength=0.7)
    for index in range(50):
        score, why = scores.explain(index)
        assert math.fsum(why.values()) == score
        assert score == pytest.approx(scores.total[index], abs=1e-12)
        assert all(c.value == c.weight * c.normalized for c in why.contributions)
