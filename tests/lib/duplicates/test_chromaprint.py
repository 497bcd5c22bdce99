"""Chromaprint fingerprints of decoded audio: near-copies written by real encoders match, other songs don't."""

from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.duplicates.chromaprint import (DUPLICATE_SCORE, Match, fingerprint_pcm, from_blob,
                                                          is_duplicate, match, seconds_of, to_blob, to_fingerprint_rate)
from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.sample_data.synth import _Groove, render_song

RATE = 22050  # the dsp model's decode rate: fingerprints come from the pipeline's own waves
SECONDS = 32
SONG_SEED, OTHER_SEED = 32, 25  # same instruments, same key mode, tempos 92.33 and 92.36 BPM


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fingerprints")
    return write_audio(folder / "song.flac", render_song(seconds=SECONDS, sample_rate=44100, seed=SONG_SEED), 44100)


@pytest.fixture(scope="module")
def original_print(original: Path) -> np.ndarray:
    return fingerprint_pcm(load_audio(original, RATE), RATE)


def copy_print(original: Path, name: str, wave_of, rate: int = 44100, **encode) -> np.ndarray:
    """Write a variant of the original through a real encoder, decode it like the pipeline, fingerprint it."""
    wave = wave_of(load_audio(original, rate))
    written = write_audio(original.with_name(name), wave, rate, **encode)
    return fingerprint_pcm(load_audio(written, RATE), RATE)


@pytest.mark.parametrize(("name", "wave_of", "rate", "encode", "offset"), [
    ("gain.ogg", lambda w: w * 10 ** (-6 / 20), 44100, {}, 0.0),
    ("silence.flac", lambda w: np.concatenate([np.zeros(5 * 44100, np.float32), w]), 44100, {}, 0.0),
    ("trimmed.ogg", lambda w: w[10 * 44100:], 44100, {}, 10.0),
    ("reencoded.mp3", lambda w: w, 44100, {"bit_rate": 96_000}, 0.0),
    ("resampled.flac", lambda w: w, 22050, {}, 0.0),
], ids=["gain -6 dB", "5 s leading silence", "first 10 s trimmed", "96 kbps MP3", "22.05 kHz resample"])
def test_a_near_copy_is_a_duplicate(original: Path, original_print: np.ndarray, name: str, wave_of, rate: int,
                                    encode: dict, offset: float) -> None:
    found = match(original_print, copy_print(original, name, wave_of, rate, **encode))
    assert is_duplicate(found), found
    # Leading silence is skipped by Chromaprint itself, so it aligns at 0 like the untouched copies.
    assert found.offset_seconds == pytest.approx(offset, abs=0.5)


def test_a_different_song_with_the_same_instruments_and_tempo_is_not_a_duplicate(original_print: np.ndarray) -> None:
    song, other = _Groove.from_seed(SONG_SEED), _Groove.from_seed(OTHER_SEED)
    assert abs(60 / song.beat_seconds - 60 / other.beat_seconds) < 0.1 and song.scale == other.scale
    different = fingerprint_pcm(render_song(seconds=SECONDS, sample_rate=RATE, seed=OTHER_SEED), RATE)
    found = match(original_print, different)
    assert not is_duplicate(found) and found.score < DUPLICATE_SCORE - 0.1, found


@pytest.mark.parametrize("rate", [22050, 44100])
def test_whole_multiples_of_11025_hz_are_averaged_down_to_it_and_fingerprint_the_same(original: Path, rate: int) -> None:
    wave = load_audio(original, rate)
    reduced, reduced_rate = to_fingerprint_rate(wave, rate)
    assert reduced_rate == 11025 and len(reduced) == len(wave) // (rate // 11025)
    assert reduced[10] == pytest.approx(wave[10 * rate // 11025 : 11 * rate // 11025].mean(), abs=1e-6)
    # Chromaprint resampling 11025 Hz audio decoded as such: the averaged copy scores as the same recording.
    found = match(fingerprint_pcm(load_audio(original, 11025), 11025), fingerprint_pcm(wave, rate))
    assert found.score > 0.97 and found.offset_seconds == 0.0, found


def test_other_rates_are_left_to_chromaprint() -> None:
    wave = np.ones(48000, np.float32)
    assert to_fingerprint_rate(wave, 48000) == (wave, 48000) and to_fingerprint_rate(wave, 11025)[1] == 11025


def test_the_offset_says_which_copy_starts_later(original_print: np.ndarray) -> None:
    shifted = original_print[40:]  # b starts 40 words (~5 s) into the recording
    assert match(original_print, shifted).offset_seconds == pytest.approx(40 * 0.1238, abs=0.01)
    assert match(shifted, original_print).offset_seconds == pytest.approx(-40 * 0.1238, abs=0.01)


def test_an_excerpt_is_not_a_copy_of_the_whole_recording(original_print: np.ndarray) -> None:
    excerpt = original_print[: int(len(original_print) * 0.4)]  # ~13 s of 32
    found = match(original_print, excerpt)
    assert found.score == 1.0 and not is_duplicate(found)


def test_a_fingerprint_covers_the_audio_at_about_eight_words_a_second(original_print: np.ndarray) -> None:
    assert seconds_of(original_print) == pytest.approx(SECONDS, abs=3)
    assert original_print.dtype == np.uint32


def test_silence_and_empty_input_give_no_match() -> None:
    assert match(np.zeros(0, np.uint32), np.arange(100, dtype=np.uint32)) == Match(0.0, 0.0, 0.0, 0.0)
    assert len(fingerprint_pcm(np.zeros(RATE * 5, np.float32), RATE)) == 0


def test_fingerprints_round_trip_through_bytes(original_print: np.ndarray) -> None:
    assert np.array_equal(from_blob(to_blob(original_print)), original_print)
