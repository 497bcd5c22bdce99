"""The weight-free dsp model: fast, deterministic, and useful for similarity."""

import numpy as np
import pytest

from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.dsp import DspModel, raw_vector
from navembed_pipeline.lib.models.dsp.features import (COLUMNS, FRAMES_PER_SECOND, SAMPLE_RATE, FrameFeatures,
                                                       chroma_filterbank, pitch_filterbank)
from navembed_pipeline.lib.models.dsp.pooling import estimate_tempo
from navembed_pipeline.sample_data.synth import render
from tests.lib.models.helpers import cosine

SR = 44100


@pytest.fixture(scope="module")
def dsp():
    model = DspModel(ModelOptions(device="cpu"))
    yield model
    model.shutdown()


def embed_file(model: DspModel, path) -> np.ndarray:
    return model.embed([load_audio(path, model.sample_rate)])[0].embedding


def test_vector_is_unit_length_with_the_documented_dimension(dsp: DspModel) -> None:
    vector = dsp.embed([render("piano", seconds=3, sample_rate=dsp.sample_rate)])[0].embedding
    assert vector.shape == (dsp.dimension,) == (273,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_a_re_encode_is_nearer_than_any_different_track(dsp: DspModel, tmp_path) -> None:
    original = write_audio(tmp_path / "song.flac", render("piano", seconds=8, seed=1), SR)
    reencode = write_audio(tmp_path / "song.mp3", load_audio(original, SR), SR)
    others = [write_audio(tmp_path / f"{style}{seed}.flac", render(style, seconds=8, seed=seed), SR)
              for style, seed in [("piano", 2), ("drums", 1), ("chords", 1), ("bass", 1), ("noise", 1)]]
    base = embed_file(dsp, original)
    duplicate = float(base @ embed_file(dsp, reencode))
    nearest_other = max(float(base @ embed_file(dsp, p)) for p in others)
    assert duplicate > 0.97
    assert duplicate > nearest_other + 0.02


def test_same_style_is_nearer_than_other_styles(dsp: DspModel) -> None:
    vectors = {(style, seed): dsp.embed([render(style, seconds=6, sample_rate=dsp.sample_rate, seed=seed)])[0].embedding
               for style in ("piano", "drums", "noise") for seed in (1, 2)}
    for (style, seed), vector in vectors.items():
        ranked = sorted(((float(vector @ other), key) for key, other in vectors.items() if key != (style, seed)),
                        reverse=True)
        assert ranked[0][1][0] == style, f"{style}/{seed} nearest is {ranked[0][1]}"


def test_long_tracks_are_processed_in_bounded_windows(dsp: DspModel) -> None:
    result = dsp.embed([np.zeros(SR // 2 * 65, np.float32) + 0.01])[0]
    assert result.window_count == 3  # 65 s in 30 s windows: 0-30, 30-60, tail 35-65


def test_deterministic(dsp: DspModel) -> None:
    wave = render("chords", seconds=3, sample_rate=dsp.sample_rate, seed=4)
    np.testing.assert_array_equal(dsp.embed([wave])[0].embedding, dsp.embed([wave])[0].embedding)


def test_shorter_than_one_fft_frame_still_embeds(dsp: DspModel) -> None:
    assert np.isfinite(dsp.embed([np.full(100, 0.1, np.float32)])[0].embedding).all()


# ----- dsp v2 ---------------------------------------------------------------------------------


def frames_of(wave: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return FrameFeatures()(torch.from_numpy(np.asarray(wave, np.float32))[None])[0].numpy()


def test_version_two_is_stored_so_the_sensor_re_embeds(dsp: DspModel) -> None:
    assert dsp.version.startswith("dsp:v2-")


def test_no_dimension_is_near_constant_across_varied_music(dsp: DspModel) -> None:
    from navembed_pipeline.sample_data.synth import render_song

    waves = [render(style, seconds=8 + seed, sample_rate=dsp.sample_rate, seed=seed)
             for style in ("piano", "drums", "chords", "bass", "pad", "noise") for seed in (1, 2)]
    waves += [render_song(seconds=10, sample_rate=dsp.sample_rate, seed=seed) for seed in (1, 2, 3)]
    vectors = np.stack([v.embedding for v in dsp.embed(waves)])
    spread = vectors.std(axis=0)
    assert spread.min() > 0.02 * np.median(spread), f"dead dimensions: {np.flatnonzero(spread < 0.02 * np.median(spread))}"


def test_silence_is_left_out_of_pooling(dsp: DspModel) -> None:
    song = render("chords", seconds=12, sample_rate=dsp.sample_rate, seed=3)
    silence = np.zeros(6 * dsp.sample_rate, np.float32)
    padded = np.concatenate([silence, song, silence, song, silence])
    plain, with_gaps = (v.embedding for v in dsp.embed([np.concatenate([song, song]), padded]))
    assert cosine(plain, with_gaps) > 0.985  # dsp v1 scored this pair 0.60: it pooled the silence too


def test_a_gain_change_moves_nothing(dsp: DspModel) -> None:
    song = render("piano", seconds=10, sample_rate=dsp.sample_rate, seed=5)
    loud, quiet = (v.embedding for v in dsp.embed([song, song * 10 ** (-12 / 20)]))
    assert cosine(loud, quiet) > 0.999


def test_chroma_filterbank_sees_every_semitone_once_and_weighs_pitch_classes_equally() -> None:
    cells = pitch_filterbank()
    np.testing.assert_allclose(cells.sum(axis=0), 1.0, rtol=1e-6)  # no semitone without a bin, none doubled
    low = cells[:, :24]  # A1..G#3 (55-220 Hz), where one FFT bin spans up to three semitones
    assert (low > 0).sum(axis=0).min() >= 1
    flat = np.ones(cells.shape[0]) @ chroma_filterbank()  # a flat spectrum
    np.testing.assert_allclose(flat, flat.mean(), rtol=1e-6)


@pytest.mark.parametrize("midi", [33, 38, 45, 46, 52, 57, 63, 69, 76, 84])  # A1 .. C6, low notes included
def test_a_pure_tone_lands_in_its_pitch_class(midi: int) -> None:
    hz = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    chroma = frames_of(0.3 * np.sin(2 * np.pi * hz * t))[:, COLUMNS["chroma"]].mean(axis=0)
    assert int(np.argmax(chroma)) == midi % 12  # column 0 is C


def click_track(bpm: float, seconds: float) -> np.ndarray:
    wave = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    click = (np.random.default_rng(0).standard_normal(300) * np.exp(-np.arange(300) / 60)).astype(np.float32)
    for start in np.arange(0, seconds - 0.1, 60.0 / bpm):
        at = int(start * SAMPLE_RATE)
        wave[at : at + 300] += 0.5 * click
    return wave


@pytest.mark.parametrize("bpm", [72.0, 100.0, 128.0, 150.0])
def test_tempo_descriptor_finds_a_click_tracks_tempo(bpm: float) -> None:
    onset = frames_of(click_track(bpm, 20.0))[:, COLUMNS["onset"]][:, 0]
    assert estimate_tempo(onset) == pytest.approx(bpm, rel=0.03)


def test_tempo_separates_otherwise_identical_rhythms(dsp: DspModel) -> None:
    slow, slow2, fast = (v.embedding for v in dsp.embed([click_track(90, 20), click_track(90, 24), click_track(140, 20)]))
    assert cosine(slow, slow2) > cosine(slow, fast)
    assert FRAMES_PER_SECOND == pytest.approx(43.07, abs=0.01)


def test_output_is_finite_unit_length_and_deterministic_for_odd_inputs(dsp: DspModel) -> None:
    odd = [np.zeros(3 * SAMPLE_RATE, np.float32), np.full(SAMPLE_RATE, 0.5, np.float32),
           render("noise", seconds=2, sample_rate=SAMPLE_RATE, seed=1), np.full(10, 0.1, np.float32)]
    first, second = dsp.embed(odd), dsp.embed(odd)
    for a, b in zip(first, second, strict=True):
        assert np.isfinite(a.embedding).all()
        assert np.linalg.norm(a.embedding) == pytest.approx(1.0, abs=1e-5) or not a.embedding.any()
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_raw_vector_layout_matches_the_dimension(dsp: DspModel) -> None:
    frames = frames_of(render("bass", seconds=5, sample_rate=SAMPLE_RATE, seed=2))
    assert raw_vector([frames]).shape == (dsp.dimension,)
