"""The engine's modes on a hand-made library of two clearly different groups (piano and drums).

``dsp`` hears the audio; ``muq`` has an audio field and the ``mulan`` joint text-audio field,
where prompts land through a stand-in ``embed_text`` that returns vectors we chose.
"""

import math

import numpy as np
import pytest

from navembed_pipeline.lib.recommend import (InvalidRequestError, NoVectorsError, PathSpec, PlaylistRules,
                                             RecommendRequest, UnknownTrackError, VectorSeed)
from tests.lib.recommend.helpers import field, grouped_vectors, recommender, track, unit

PIANO, DRUMS = unit(1, 0, 0, 0, 0, 0, 0, 0), unit(0, 1, 0, 0, 0, 0, 0, 0)
# Alike within a group (cosine ~0.85), unlike across; never near-identical (that would be a duplicate).
# The rest of the library ("x") is spread over the other directions.
OTHERS = {f"x{i}": np.eye(8)[2 + i] for i in range(6)}
DSP = grouped_vectors({"p": PIANO, "d": DRUMS, **OTHERS}, 6, spread=0.15, seed=1)
MULAN = grouped_vectors({"p": PIANO, "d": DRUMS, **OTHERS}, 6, spread=0.15, seed=2)
TRACKS = [track(t, artist=f"Artist {t}") for t in DSP] + [track("unembedded")]
PROMPTS = {"piano": PIANO, "drums": DRUMS, "music": unit(1, 1, 0, 0, 0, 0, 0, 0.1),
           "ambient": unit(0, 0, 1, 0, 0, 0, 0, 0)}


def embed_text(texts):
    return np.stack([PROMPTS[t] for t in texts])


def engine(**options):
    fields = [field("dsp", DSP), field("muq", DSP), field("muq", MULAN, "mulan")]
    return recommender(options.pop("fields", fields), TRACKS, **{"embed_text": embed_text, **options})


def ask(**request) -> list[str]:
    rules = PlaylistRules(size=request.pop("size", 6))
    return [t.id for t in engine().recommend(RecommendRequest(rules=rules, **request)).tracks]


def groups(ids: list[str]) -> set[str]:
    return {i[0] for i in ids}


def test_similar_finds_the_seeds_group():
    assert groups(ask(mode="similar", seeds=("p0",), models=("dsp",), size=5)) == {"p"}


def test_text_finds_the_prompts_group_through_the_joint_space_only():
    answer = engine().recommend(RecommendRequest(mode="text", prompts=("drums",), models=("muq", "dsp"),
                                                 rules=PlaylistRules(size=5)))
    assert groups([t.id for t in answer.tracks]) == {"d"}
    parts = {(c.model, c.field, c.source) for t in answer.tracks for c in t.why.contributions}
    assert parts == {("muq", "mulan", "prompt")}  # dsp has no text tower: it does not vote on a prompt


def test_mixed_combines_seed_tracks_and_prompts():
    answer = engine().recommend(RecommendRequest(mode="mixed", seeds=("d0",), prompts=("piano",), models=("muq",),
                                                 rules=PlaylistRules(size=10)))
    assert groups([t.id for t in answer.tracks]) == {"p", "d"}
    sources = {c.source for c in answer.tracks[0].why.contributions}
    assert sources == {"seed", "prompt"}


def test_a_negative_prompt_removes_its_group_from_the_top():
    assert groups(ask(mode="text", prompts=("music",), models=("muq",), size=10)) == {"p", "d"}
    steered = ask(mode="text", prompts=("music",), negative_prompts=("drums",), models=("muq",), size=6)
    assert groups(steered) == {"p"}


def test_a_negative_track_removes_its_group_from_the_top():
    vectors = {**DSP, "between": unit(1, 1, 0, 0, 0, 0, 0, 0)}
    tracks = [*TRACKS, track("between")]
    picks = recommender([field("dsp", vectors)], tracks).recommend(
        RecommendRequest(mode="similar", seeds=("between",), negative_tracks=("d0",), rules=PlaylistRules(size=6)))
    assert groups([t.id for t in picks.tracks]) == {"p"}


def test_weights_decide_between_models_that_disagree():
    swap = {"p": "d", "d": "p"}
    flipped = {t: DSP[swap.get(t[0], t[0]) + t[1:]] for t in DSP}  # muq hears piano as drums and back
    fields = [field("dsp", {**DSP, "seed": PIANO}), field("muq", {**flipped, "seed": PIANO})]
    request = dict(mode="similar", seeds=("seed",), models=("dsp", "muq"), rules=PlaylistRules(size=4))
    by_dsp = engine(fields=fields).recommend(RecommendRequest(**request, weights={"dsp": 0.9, "muq": 0.1}))
    by_muq = engine(fields=fields).recommend(RecommendRequest(**request, weights={"dsp": 0.1, "muq": 0.9}))
    assert groups([t.id for t in by_dsp.tracks]) == {"p"} and groups([t.id for t in by_muq.tracks]) == {"d"}
    assert by_dsp.weights == pytest.approx({"dsp": 0.9, "muq": 0.1})


def test_reciprocal_rank_fusion_ranks_and_explains_by_rank():
    answer = engine().recommend(RecommendRequest(mode="similar", seeds=("p0",), models=("dsp", "muq"), fusion="rrf",
                                                 rules=PlaylistRules(size=3)))
    assert groups([t.id for t in answer.tracks]) == {"p"}
    assert all(c.rank >= 1 and c.normalized == pytest.approx(1 / (60 + c.rank))
               for t in answer.tracks for c in t.why.contributions)


def test_uploaded_vectors_work_like_a_seed_track():
    seed = VectorSeed(label="upload.flac", model="dsp", vectors=DRUMS)
    answer = engine().recommend(RecommendRequest(mode="similar", seed_vectors=(seed,), models=("dsp",),
                                                 rules=PlaylistRules(size=4)))
    assert groups([t.id for t in answer.tracks]) == {"d"}
    assert answer.tracks[0].why.contributions[0].ref == "upload.flac"


@pytest.mark.parametrize("request_", [
    RecommendRequest(mode="similar", seeds=("p0", "d1"), negative_prompts=("drums",)),
    RecommendRequest(mode="text", prompts=("music", "ambient"), negative_tracks=("d2",), fusion="rrf"),
    RecommendRequest(mode="mixed", seeds=("d0",), prompts=("piano",), negative_prompts=("drums",),
                     negative_strength=0.4, weights={"dsp": 2.0}),
    RecommendRequest(mode="path", path=PathSpec("p0", "d0", steps=3), negative_prompts=("ambient",)),
])
def test_every_explanation_adds_up_to_its_score(request_):
    answer = engine(default_models=("muq", "dsp")).recommend(request_)
    assert answer.tracks
    for item in answer.tracks:
        assert math.fsum(item.why.values()) == item.score
    if request_.mode != "path":  # without diversity or artist rules, the playlist is in score order
        assert [t.score for t in answer.tracks] == sorted((t.score for t in answer.tracks), reverse=True)


def test_default_models_are_those_with_vectors():
    answer = engine(fields=[field("dsp", DSP)]).recommend(RecommendRequest(mode="similar", seeds=("p0",)))
    assert answer.models == ("dsp",) and answer.weights == {"dsp": 1.0}


def test_a_seed_one_model_lacks_is_noted_and_searched_in_the_others():
    fields = [field("dsp", DSP), field("muq", {t: v for t, v in DSP.items() if t != "p0"})]
    answer = engine(fields=fields).recommend(RecommendRequest(mode="similar", seeds=("p0",), models=("dsp", "muq")))
    assert answer.notes == ("track p0 has no muq vectors yet; muq does not use it",)
    assert groups([t.id for t in answer.tracks[:4]]) == {"p"}


def test_path_goes_from_a_to_b_moving_closer_to_b_at_every_step():
    rng = np.random.default_rng(5)
    angles = rng.uniform(0, np.pi / 2, 80)
    vectors = {f"t{i}": np.concatenate([[np.cos(a), np.sin(a)], 0.15 * rng.standard_normal(6)])
               for i, a in enumerate(angles)}
    vectors |= {"A": np.eye(8)[0], "B": np.eye(8)[1]}
    tracks = [track(t) for t in vectors]
    answer = recommender([field("dsp", vectors)], tracks).recommend(
        RecommendRequest(mode="path", path=PathSpec("A", "B", steps=6)))
    ids = [t.id for t in answer.tracks]
    assert ids[0] == "A" and ids[-1] == "B" and len(ids) == 8
    assert [t.role for t in answer.tracks] == ["start", *["pick"] * 6, "end"]
    b = vectors["B"] / np.linalg.norm(vectors["B"])
    closeness = [float(vectors[i] @ b / np.linalg.norm(vectors[i])) for i in ids]
    assert all(later > earlier for earlier, later in zip(closeness, closeness[1:], strict=False))


def test_a_path_leaves_out_steps_it_cannot_take_forward():
    vectors = {"A": unit(1, 0, 0), "B": unit(0, 1, 0), "back": unit(1, -0.2, 0.1), "mid": unit(1, 1, 0.1)}
    answer = recommender([field("dsp", vectors)], [track(t) for t in vectors]).recommend(
        RecommendRequest(mode="path", path=PathSpec("A", "B", steps=3)))
    assert [t.id for t in answer.tracks] == ["A", "mid", "B"]


@pytest.mark.parametrize(("request_", "error", "message"), [
    (RecommendRequest(mode="similar", seeds=("nope",)), UnknownTrackError, "unknown track id"),
    (RecommendRequest(mode="similar", seeds=("unembedded",)), NoVectorsError, "no vectors"),
    (RecommendRequest(mode="path", path=PathSpec("p0", "nope")), UnknownTrackError, "nope"),
    (RecommendRequest(mode="similar", seeds=("p0",), models=("mert",)), NoVectorsError, "mert"),
    (RecommendRequest(mode="similar", seeds=("p0",), models=("jukebox",)), InvalidRequestError, "jukebox"),
    (RecommendRequest(mode="text", prompts=("piano",), models=("dsp",)), InvalidRequestError, "text tower"),
    (RecommendRequest(mode="text"), InvalidRequestError, "prompt"),
    (RecommendRequest(mode="similar", seeds=("p0",), weights={"dsp": 0.0}, models=("dsp",)), InvalidRequestError,
     "weighs 0"),
])
def test_requests_that_cannot_be_answered_say_why(request_, error, message):
    with pytest.raises(error, match=message):
        engine(default_models=("muq", "mert", "dsp")).recommend(request_)


def test_an_empty_library_is_a_clear_error():
    with pytest.raises(NoVectorsError, match="no model has any vectors"):
        recommender([], TRACKS).recommend(RecommendRequest(mode="similar", seeds=("p0",)))


def test_a_repeated_prompt_is_embedded_once():
    calls = []
    counting = engine(embed_text=lambda texts: calls.append(list(texts)) or embed_text(texts))
    for _ in range(2):
        counting.recommend(RecommendRequest(mode="text", prompts=("piano",), negative_prompts=("drums",)))
    assert calls == [["piano", "drums"]]


def test_prompts_need_a_text_embedder():
    with pytest.raises(InvalidRequestError, match="text prompts are not available"):
        recommender([field("muq", DSP), field("muq", MULAN, "mulan")], TRACKS).recommend(
            RecommendRequest(mode="text", prompts=("piano",)))
