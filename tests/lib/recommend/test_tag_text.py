"""Prompts read as MusiCNN tags, on the real vocabularies of the MSD and MTT checkpoints."""

import numpy as np
import pytest

from navembed_pipeline.lib.models.musicnn import tag_names
from navembed_pipeline.lib.recommend.errors import InvalidRequestError
from navembed_pipeline.lib.recommend.tag_text import TagVocabulary, UnknownTagError

MSD = TagVocabulary(tag_names("MSD_musicnn"))
MTT = TagVocabulary(tag_names("MTT_musicnn"))


def read(text: str, vocabulary: TagVocabulary = MSD) -> tuple[tuple[str, ...], tuple[str, ...]]:
    query = vocabulary.parse(text)
    return query.positive, query.negative


def test_words_that_are_tags_are_wanted():
    assert read("chill electronic") == (("chill", "electronic"), ())


def test_multi_word_tags_match_whole_and_longest_first():
    assert read("female vocalists") == (("female vocalists",), ())
    assert read("hard rock and heavy metal") == (("hard rock", "heavy metal"), ())
    assert read("alternative rock") == (("alternative rock",), ())  # not "alternative" + "rock"


def test_but_not_steers_away_from_the_tags_after_it():
    assert read("rock but not metal") == (("rock",), ("metal",))
    assert read("jazz without female vocalists") == (("jazz",), ("female vocalists",))
    assert read("no metal or punk, but rock") == (("rock",), ("metal", "punk"))


def test_case_hyphens_and_an_unambiguous_plural_are_forgiven():
    assert read("Hip-Hop") == read("hip hop") == (("Hip-Hop",), ())
    assert read("MELLOW house") == (("Mellow", "House"), ())
    assert read("male vocalist") == (("male vocalists",), ())  # only one tag it can mean


def test_both_spellings_stay_distinct_where_the_model_has_both():
    assert read("female vocalist") == (("female vocalist",), ())
    assert read("beat", MTT) == (("beat",), ()) and read("beats", MTT) == (("beats",), ())


def test_a_tag_beginning_with_no_is_a_tag_not_a_negation():
    assert read("piano no vocals", MTT) == (("piano", "no vocals"), ())
    assert read("piano no drums", MTT) == (("piano",), ("drums",))


def test_known_spellings_and_filler_words():
    assert read("eighties pop songs") == (("80s", "pop"), ())
    assert read("some r&b music") == (("rnb",), ())


def test_an_unknown_word_is_refused_with_the_vocabulary():
    with pytest.raises(UnknownTagError) as caught:
        MSD.parse("chill vaporwave")
    assert caught.value.unknown == ("vaporwave",)
    assert caught.value.vocabulary == tag_names("MSD_musicnn")
    assert "'vaporwave'" in str(caught.value) and "female vocalists" in str(caught.value)


def test_a_prompt_without_tags_or_wanting_and_avoiding_one_tag_is_refused():
    with pytest.raises(InvalidRequestError, match="names no MusiCNN tag"):
        MSD.parse("the music")
    with pytest.raises(InvalidRequestError, match="both wants and avoids rock"):
        MSD.parse("rock but not rock")


def test_weights_average_the_named_tags():
    vector = MSD.weights(["rock", "pop"])
    assert vector.shape == (50,)
    assert vector[MSD.index["rock"]] == vector[MSD.index["pop"]] == pytest.approx(0.5)
    assert np.count_nonzero(vector) == 2
