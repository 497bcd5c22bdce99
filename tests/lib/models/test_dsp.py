"""The weight-free dsp model: fast, deterministic, and useful for similarity."""

import numpy as np
import pytest

from navembed_pipeline.lib.audio import load_audio
from navembed_pipeline.lib.encode import write_audio
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.synth import render

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
    assert vector.shape == (dsp.dimension,) == (327,)
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
