"""Text search through MusiCNN's tags when MuQ-MuLan is absent, and tags in every ``why``.

A hand-made library over the real MSD vocabulary: each track's ``tags`` are raw 0..1 scores
(as the musicnn collection stores them), its ``embedding`` a vector of its own.
"""

import math

import numpy as np
import pytest

from navembed_pipeline.lib.models.musicnn import tag_names
from navembed_pipeline.lib.recommend import InvalidRequestError, PlaylistRules, RecommendRequest
from navembed_pipeline.lib.recommend.tag_text import UnknownTagError
from navembed_pipeline.lib.recommend.tags import TagScores, tag_distribution, top_tags
from tests.lib.recommend.helpers import field, recommender, track

NAMES = tag_names("MSD_musicnn")
BASE = 0.05


def scores(**wanted: float) -> np.ndarray:
    vector = np.full(len(NAMES), BASE, dtype=np.float32)
    for name, value in wanted.items():
        vector[NAMES.index(name.replace("_", " "))] = value
    return vector


TAGS = {
    "chill_electro": scores(chill=0.7, electronic=0.8),
    "electro_only": scores(electronic=0.85),
    "chill_only": scores(chill=0.75, acoustic=0.3),
    "rock": scores(rock=0.9),
    "rock_metal": scores(rock=0.8, metal=0.75),
    "singer": scores(female_vocalists=0.8, pop=0.4),
    "jazz": scores(jazz=0.8),
    "folk": scores(folk=0.6, acoustic=0.5),
}
RNG = np.random.default_rng(3)
EMBEDDING = {t: RNG.standard_normal(8).astype(np.float32) for t in TAGS}
TRACKS = [track(t) for t in TAGS]


def engine(**options):
    fields = [field("musicnn", EMBEDDING), field("musicnn", TAGS, "tags"), field("dsp", EMBEDDING)]
    return recommender(fields, TRACKS, tag_names=NAMES, default_models=("dsp", "musicnn"), **options)


def text(prompts, negative=(), size=3, **options):
    request = RecommendRequest(mode="text", prompts=tuple(prompts), negative_prompts=tuple(negative),
                               rules=PlaylistRules(size=size))
    return engine(**options).recommend(request)


def test_a_two_tag_prompt_ranks_the_track_with_both_first():
    playlist = text(["chill electronic"])
    assert playlist.text_model == "musicnn-tags"
    assert [t.id for t in playlist.tracks][0] == "chill_electro"
    assert {t.id for t in playlist.tracks[1:]} == {"electro_only", "chill_only"}


def test_but_not_pushes_the_avoided_tag_down():
    ranked = [t.id for t in text(["rock but not metal"], size=8).tracks]
    assert ranked[0] == "rock"
    plain = [t.id for t in text(["rock"], size=8).tracks]
    assert plain.index("rock_metal") == 1 and ranked.index("rock_metal") > 1
    penalty = next(t for t in text(["rock but not metal"], size=8).tracks if t.id == "rock_metal").why.penalty
    assert penalty.ref == "metal" and penalty.value < 0


def test_negative_prompts_are_read_as_tags_too():
    ranked = [t.id for t in text(["rock"], negative=["metal"], size=8).tracks]
    assert ranked.index("rock_metal") > ranked.index("rock")


def test_the_why_adds_up_and_says_the_tag_score():
    playlist = text(["female vocalists"], size=2)
    first = playlist.tracks[0]
    assert first.id == "singer"
    part = first.why.contributions[0]
    assert (part.model, part.field, part.source, part.ref) == ("musicnn", "tags", "prompt", "female vocalists")
    assert part.similarity == pytest.approx(0.8)  # the raw tag score
    assert math.isclose(first.score, math.fsum(first.why.values()))


def test_every_recommended_track_shows_its_top_tags():
    playlist = engine().recommend(RecommendRequest(mode="similar", seeds=("rock",), models=("dsp",),
                                                   rules=PlaylistRules(size=3)))
    for item in playlist.tracks:
        assert item.why.tags[0] == top_tags(TAGS[item.id], NAMES)[0]
        assert len(item.why.tags) == 5
    assert playlist.text_model is None


def test_mulan_stays_the_path_when_its_weights_are_here():
    mulan = {t: np.eye(4)[i % 4] for i, t in enumerate(TAGS)}
    fields = [field("muq", EMBEDDING), field("muq", mulan, "mulan"), field("musicnn", EMBEDDING),
              field("musicnn", TAGS, "tags")]
    engine_ = recommender(fields, TRACKS, tag_names=NAMES, default_models=("muq", "musicnn"),
                          embed_text=lambda texts: np.stack([np.eye(4)[0] for _ in texts]))
    playlist = engine_.recommend(RecommendRequest(mode="text", prompts=("anything at all",)))
    assert playlist.text_model == "muq"
    absent = recommender(fields, TRACKS, tag_names=NAMES, default_models=("muq", "musicnn"),
                         embed_text=lambda texts: 1 / 0, text_ready=lambda: False)
    assert absent.recommend(RecommendRequest(mode="text", prompts=("jazz",))).text_model == "musicnn-tags"


def test_an_unknown_word_is_refused_never_an_empty_playlist():
    with pytest.raises(UnknownTagError, match="'vaporwave'"):
        text(["vaporwave"])


def test_without_tags_or_mulan_prompts_are_refused():
    plain = recommender([field("dsp", EMBEDDING)], TRACKS, default_models=("dsp",))
    with pytest.raises(InvalidRequestError, match="need muq .* or musicnn"):
        plain.recommend(RecommendRequest(mode="text", prompts=("jazz",)))


def test_tag_scores_undo_the_normalisation_and_average_segments():
    two = {"a": np.stack([scores(rock=0.9), scores(rock=0.5)]), "b": scores(jazz=0.4)}
    table = TagScores(field("musicnn", two, "tags"))
    assert table.of("a")[NAMES.index("rock")] == pytest.approx(0.7)
    assert table.of("b")[NAMES.index("jazz")] == pytest.approx(0.4)
    assert table.of("c") is None


def test_the_library_distribution_counts_top_three_tags():
    library = [scores(rock=0.9, pop=0.5, indie=0.4), scores(rock=0.8, metal=0.7, punk=0.6),
               scores(jazz=0.8, soul=0.6, pop=0.3)]
    assert tag_distribution(library, NAMES) == {"pop": 2, "rock": 2, "indie": 1, "jazz": 1, "metal": 1,
                                                "punk": 1, "soul": 1}
