"""Tag phrases: text prompts read as MusiCNN tags, for text search without MuQ-MuLan's weights.

"chill electronic" → wants ``chill`` and ``electronic``; "rock but not metal" → wants ``rock``,
steers away from ``metal``; "female vocalists" is one tag (multi-word tags match longest first).
Matching ignores case, hyphens and a plural ``s`` where that names exactly one tag ("male vocalist"
→ ``male vocalists``); a few unambiguous spellings are known ("hip hop", "eighties", "r&b"). A word
that is neither a tag nor one of the connecting words below is refused with the vocabulary, never
guessed at.

Connecting words: ``and``, ``or``, ``with``, ``&`` and ``,`` join tags; ``not``, ``no``, ``without``,
``except``, ``nor`` steer away from the tags after them until ``but``, a comma or the end; filler words
(``music``, ``songs``, ``a``, ``the``, ...) are skipped.
"""

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.recommend.errors import InvalidRequestError

JOINERS = frozenset({"and", "or", "with", "&"})
NEGATIONS = frozenset({"not", "no", "without", "except", "nor"})
SCOPE_ENDS = frozenset({"but", ",", ";"})
FILLER = frozenset({"a", "an", "the", "some", "music", "song", "songs", "track", "tracks", "tune", "tunes"})
# Spellings that name one tag and only one; used only where the tag is in the vocabulary.
SYNONYMS: dict[str, str] = {
    "hiphop": "hip hop", "hip hop music": "hip hop", "r&b": "rnb", "r and b": "rnb", "rhythm and blues": "rnb",
    "chill out": "chillout", "prog rock": "progressive rock", "sixties": "60s", "1960s": "60s",
    "seventies": "70s", "1970s": "70s", "eighties": "80s", "1980s": "80s", "nineties": "90s", "1990s": "90s",
    "2000s": "00s", "noughties": "00s", "electro music": "electro", "new-age": "new age",
}
NOT_PLURALS = frozenset({"blues"})  # ends in s, yet "blue" is not one of it
_TOKEN = re.compile(r"[a-z0-9&']+|[,;]")


class UnknownTagError(InvalidRequestError):
    """A prompt holds words that are not tags; ``vocabulary`` lists the tags that are."""

    def __init__(self, message: str, *, unknown: Sequence[str], vocabulary: Sequence[str]) -> None:
        super().__init__(message)
        self.unknown = tuple(unknown)
        self.vocabulary = tuple(vocabulary)


@dataclass(frozen=True)
class TagQuery:
    """One prompt read as tags: the ones it wants and the ones it steers away from (vocabulary spelling)."""

    text: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]


def _words(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower().replace("-", " ").replace("_", " ").replace("’", "'"))
    return [word for token in tokens if (word := token.strip("'"))]


class TagVocabulary:
    """The tags of one MusiCNN variant (in the stored vector's order) and the phrases that name them."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        exact = {tuple(_words(name)): name for name in self.names}
        variants = Counter(key[:-1] + (_plural_twin(key[-1]),) for key in exact)
        keys = {key[:-1] + (_plural_twin(key[-1]),): name for key, name in exact.items()
                if variants[key[:-1] + (_plural_twin(key[-1]),)] == 1}
        keys.update({tuple(_words(spelling)): exact[tuple(_words(target))]
                     for spelling, target in SYNONYMS.items() if tuple(_words(target)) in exact})
        keys.update(exact)  # a tag's own spelling always wins
        self._keys = {key: name for key, name in keys.items() if key}
        self._longest = max(len(key) for key in self._keys)

    def parse(self, text: str) -> TagQuery:
        """The tags ``text`` names (see the module docstring); raises ``UnknownTagError`` for other words."""
        words = _words(text)
        positive: list[str] = []
        negative: list[str] = []
        unknown: list[str] = []
        steering_away = False
        i = 0
        while i < len(words):
            match = self._match(words, i)
            if match is not None:
                tag, i = match
                (negative if steering_away else positive).append(tag)
                continue
            word = words[i]
            if word in NEGATIONS:
                steering_away = True
            elif word in SCOPE_ENDS:
                steering_away = False
            elif word not in JOINERS and word not in FILLER:
                unknown.append(word)
            i += 1
        if unknown:
            raise self.unknown_words(text, unknown)
        both = sorted(set(positive) & set(negative))
        if both:
            raise InvalidRequestError(f"prompt {text[:80]!r} both wants and avoids {', '.join(both)}")
        if not positive and not negative:
            raise InvalidRequestError(f"prompt {text[:80]!r} names no MusiCNN tag; the tags are: "
                                      f"{', '.join(self.names)}")
        return TagQuery(text, tuple(dict.fromkeys(positive)), tuple(dict.fromkeys(negative)))

    def weights(self, tags: Sequence[str]) -> np.ndarray:
        """A vector over the vocabulary: 1/len(tags) on each of ``tags`` (their mean score, as a product)."""
        vector = np.zeros(len(self.names), dtype=np.float32)
        for tag in tags:
            vector[self.index[tag]] = 1.0 / len(tags)
        return vector

    def unknown_words(self, text: str, unknown: Sequence[str]) -> UnknownTagError:
        words = ", ".join(repr(w[:30]) for w in dict.fromkeys(unknown))
        return UnknownTagError(
            f"unknown word(s) {words} in prompt {text[:60]!r}: without MuQ-MuLan, text search understands "
            f"MusiCNN's tags (and 'not'/'no'/'without' before a tag to steer away): {', '.join(self.names)}",
            unknown=unknown, vocabulary=self.names)

    def _match(self, words: list[str], start: int) -> tuple[str, int] | None:
        """The longest tag spelling that begins at ``start``, and where it ends."""
        for length in range(min(self._longest, len(words) - start), 0, -1):
            tag = self._keys.get(tuple(words[start:start + length]))
            if tag is not None:
                return tag, start + length
        return None


def _plural_twin(word: str) -> str:
    """``vocalists`` ↔ ``vocalist``: the other number of a word (digits, e.g. ``80s``, stay as they are)."""
    if word[:1].isdigit() or word in NOT_PLURALS:
        return word
    return word[:-1] if word.endswith("s") else word + "s"
