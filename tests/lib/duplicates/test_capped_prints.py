"""Capped prints (the pipeline's: a track's first ``PRINT_SECONDS``, and the length of the audio they stand
for): two copies of a long song still match, an excerpt of it still does not, and prints stored whole (before
the cap, or an upload's) or under the earlier two-minute cap still meet capped ones."""

from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.duplicates.chromaprint import (PRINT_SECONDS, capped_print, fingerprint_pcm, is_duplicate,
                                                          match, seconds_of)
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.sample_data.synth import render_song

RATE = 22050
FILE_RATE = 44100
SECONDS = 240.0  # longer than any cap, the earlier two-minute one too


@pytest.fixture(scope="module")
def waves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Decoded real files: a 4-minute song, its 96 kbps MP3 with 3 s cut off, an 80 s and a 30 s excerpt (their prints
    cover audio the song's capped print covers too: only the lengths tell them from copies)."""
    folder = tmp_path_factory.mktemp("capped")
    song = render_song(seconds=SECONDS, sample_rate=FILE_RATE, seed=7)
    files = {"song": write_audio(folder / "song.flac", song, FILE_RATE),
             "copy": write_audio(folder / "copy.mp3", song[3 * FILE_RATE:], FILE_RATE, bit_rate=96_000),
             "excerpt": write_audio(folder / "excerpt.ogg", song[:80 * FILE_RATE], FILE_RATE),
             "clip": write_audio(folder / "clip.ogg", song[20 * FILE_RATE:50 * FILE_RATE], FILE_RATE)}
    return {name: load_audio(path, RATE) for name, path in files.items()}


@pytest.fixture(scope="module")
def capped(waves: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, float]]:
    return {name: capped_print(wave, RATE) for name, wave in waves.items()}


def test_a_capped_print_covers_print_seconds_and_stands_for_the_whole_track(waves, capped) -> None:
    words, seconds = capped["song"]
    whole = fingerprint_pcm(waves["song"], RATE)
    assert seconds_of(words) == pytest.approx(PRINT_SECONDS, abs=3.0)
    assert seconds == pytest.approx(seconds_of(whole), abs=0.5)  # the length a whole print would have
    assert np.array_equal(words, whole[: len(words)])
    head_words, head_seconds = capped_print(waves["song"][: int(130 * RATE)], RATE, total_seconds=SECONDS)
    assert np.array_equal(head_words, words) and head_seconds == pytest.approx(seconds, abs=3.0)


def test_capped_prints_of_two_copies_match_and_an_excerpt_does_not(capped) -> None:
    song, copy, excerpt, clip = (capped[k] for k in ("song", "copy", "excerpt", "clip"))
    found = match(song[0], copy[0], a_seconds=song[1], b_seconds=copy[1])
    assert is_duplicate(found) and found.offset_seconds == pytest.approx(3.0, abs=0.2)
    assert found.overlap_fraction > 0.9
    # The excerpt's print covers what the song's capped print covers: only the lengths tell it from a copy.
    of_excerpt = match(song[0], excerpt[0], a_seconds=song[1], b_seconds=excerpt[1])
    assert of_excerpt.score > 0.9 and not is_duplicate(of_excerpt)
    assert is_duplicate(match(song[0], excerpt[0]))  # what lengths-blind matching of capped prints would say
    of_clip = match(song[0], clip[0], a_seconds=song[1], b_seconds=clip[1])
    assert of_clip.score > 0.9 and not is_duplicate(of_clip)


def test_whole_prints_match_as_before(waves) -> None:
    song, excerpt = fingerprint_pcm(waves["song"], RATE), fingerprint_pcm(waves["excerpt"], RATE)
    found = match(song, excerpt)
    assert found.overlap_fraction == pytest.approx(len(excerpt) / len(song), abs=0.01)  # overlap over the longer
    assert not is_duplicate(found)
    assert match(song, excerpt, a_seconds=seconds_of(song), b_seconds=seconds_of(excerpt)) == found


def test_the_store_matches_capped_prints_with_whole_prints_stored_before_the_cap(tmp_path: Path, waves,
                                                                                capped) -> None:
    store = FingerprintStore(tmp_path / "fingerprints.sqlite")
    whole = fingerprint_pcm(waves["song"], RATE)
    store.put("t-old", "v1", [(1, "Song (fingerprinted whole, before the cap)", whole)])
    assert store.prints("t-old")[0].seconds == pytest.approx(seconds_of(whole))
    copy_words, copy_seconds = capped["copy"]
    linked = store.put("t-copy", "v1", [(1, "Song (MP3)", copy_words, copy_seconds)])
    assert [d.owner for d in linked] == ["t-old"]
    assert store.prints("t-copy")[0].seconds == pytest.approx(copy_seconds)
    assert store.recording_groups(["t-old", "t-copy"]) == {"t-old": "t-copy", "t-copy": "t-copy"}
    excerpt_words, excerpt_seconds = capped["excerpt"]
    assert store.duplicates_of(excerpt_words, seconds=excerpt_seconds) == []
    # An upload's print (whole, no length given) finds the capped library print by its stored length.
    upload = fingerprint_pcm(waves["copy"], RATE)
    assert {d.owner for d in store.duplicates_of(upload)} == {"t-old", "t-copy"}
    assert store.duplicates_of(fingerprint_pcm(waves["clip"], RATE)) == []


def test_prints_stored_under_the_earlier_two_minute_cap_still_match_capped_ones(tmp_path: Path, waves,
                                                                               capped) -> None:
    assert PRINT_SECONDS < 120.0
    store = FingerprintStore(tmp_path / "fingerprints.sqlite")
    earlier = fingerprint_pcm(waves["song"], RATE, max_seconds=120.0)  # what a run before this cap stored
    store.put("t-old", "v1", [(1, "Song (two-minute print)", earlier, capped["song"][1])])
    copy_words, copy_seconds = capped["copy"]
    assert seconds_of(copy_words) < seconds_of(earlier) - 30.0
    linked = store.put("t-copy", "v1", [(1, "Song (MP3)", copy_words, copy_seconds)])
    assert [d.owner for d in linked] == ["t-old"]
    excerpt_words, excerpt_seconds = capped["excerpt"]
    assert store.duplicates_of(excerpt_words, seconds=excerpt_seconds) == []
