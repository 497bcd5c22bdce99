"""Generated music: deterministic, one timbre per style, seeds that vary the music but not the sound."""

import numpy as np
import pytest

from navembed_pipeline.sample_data import synth

SR = 22050


@pytest.mark.parametrize("style", synth.STYLES)
def test_every_style_is_mono_float32_of_the_asked_length_and_peak(style):
    wave = synth.render(style, seconds=1.5, sample_rate=SR, seed=2)
    assert wave.dtype == np.float32 and wave.shape == (round(1.5 * SR),)
    assert np.isfinite(wave).all() and np.abs(wave).max() == pytest.approx(synth.PEAK)


def test_the_same_seed_gives_the_same_audio_and_another_seed_other_music():
    first = synth.render("piano", seconds=2, sample_rate=SR, seed=5)
    assert np.array_equal(first, synth.render("piano", seconds=2, sample_rate=SR, seed=5))
    assert not np.allclose(first, synth.render("piano", seconds=2, sample_rate=SR, seed=6), atol=0.05)


def test_an_unknown_style_is_rejected():
    with pytest.raises(ValueError, match="unknown style"):
        synth.render("kazoo", seconds=1)


def _timbre(wave: np.ndarray) -> np.ndarray:
    """Mean and spread over time of log energy in 24 log-spaced bands: a crude timbre descriptor."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 2048)[::1024] * np.hanning(2048)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs, edges = np.fft.rfftfreq(2048, 1 / SR), np.geomspace(25, 11000, 25)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges, edges[1:])], axis=1)
    level = 10 * np.log10(bands + 1e-12)
    level = np.maximum(level, level.max() - 70)
    vector = np.concatenate([level.mean(axis=0), level.std(axis=0)])
    vector -= vector.mean()
    return vector / np.linalg.norm(vector)


def test_the_nearest_neighbour_of_every_rendering_is_the_same_style():
    keys = [(style, seed) for style in synth.STYLES for seed in range(3)]
    vectors = np.stack([_timbre(synth.render(style, seconds=4, sample_rate=SR, seed=seed)) for style, seed in keys])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = [keys[i][0] for i in similarity.argmax(axis=1)]
    assert nearest == [style for style, _ in keys]


def test_a_song_mixes_styles_of_one_seed():
    song = synth.render_song(seconds=2, sample_rate=SR, seed=1, styles=("bass", "drums"))
    parts = sum(synth.render(style, seconds=2, sample_rate=SR, seed=1) for style in ("bass", "drums"))
    np.testing.assert_allclose(song, parts * (synth.PEAK / np.abs(parts).max()), atol=1e-6)
