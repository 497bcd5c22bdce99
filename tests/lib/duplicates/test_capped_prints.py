"""Capped prints (the pipeline's: a track's first two minutes, and the length of the audio they stand for):
two copies of a long song still match, an excerpt of it still does not, and prints stored whole (before
the cap, or an upload's) still meet capped ones."""

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
SECONDS = 240.0  # twice the cap


@pytest.fixture(scope="module")
def waves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Decoded real files: a 4-minute song, its 96 kbps MP3 with 3 s cut off, an 80 s and a 30 s excerpt."""
    folder = tmp_path_factory.mktemp("capped")
    song = render_song(seconds=SECONDS, sample_rate=FILE_RATE, seed=7)
    files = {"song": write_audio(folder / "song.flac", song, FILE_RATE),
             "copy": write_audio(folder / "copy.mp3", song[3 * FILE_RATE:], FILE_RATE, bit_rate=96_000),
             "excerpt": write_audio(folder / "excerpt.ogg", song[:80 * FILE_RATE], FILE_RATE),
             "clip": write_audio(folder / "clip.ogg", song[60 * FILE_RATE:90 * FILE_RATE], FILE_RATE)}
    return {name: load_audio(path, RATE) for name, path in files.items()}


@pytest.fixture(scope="module")
def capped(waves: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, float]]:
    return {name: capped_print(wave, RATE) for name, wave in waves.items()}


def test_a_capped_print_covers_two_minutes_and_stands_for_the_whole_track(waves, capped) -> None:
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
    # The excerpt's whole 80 s is inside the song's capped print: only the lengths tell it from a copy.
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
