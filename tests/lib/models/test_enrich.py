"""enrich(): [mean, IQR/1.349, mean of first differences], L2-normalised."""

import numpy as np
import pytest

from navembed_pipeline.lib.models.enrich import enrich, l2_normalise


def test_matches_hand_computed_values() -> None:
    frames = np.array([[1.0, 0.0], [2.0, 4.0], [3.0, 8.0], [4.0, 12.0], [5.0, 16.0]])
    # column 0: mean 3, q25 2, q75 4 → sigma 2/1.349, diffs all 1
    # column 1: mean 8, q25 4, q75 12 → sigma 8/1.349, diffs all 4
    raw = np.array([3.0, 8.0, 2 / 1.349, 8 / 1.349, 1.0, 4.0])
    np.testing.assert_allclose(enrich(frames), raw / np.linalg.norm(raw), rtol=1e-6)


def test_iqr_uses_linear_interpolation_between_frames() -> None:
    frames = np.array([[0.0], [1.0], [10.0], [11.0]])
    q25, q75 = 0.75, 10.25  # numpy/torch linear quantiles of [0, 1, 10, 11]
    raw = np.array([5.5, (q75 - q25) / 1.349, 11.0 / 3])
    np.testing.assert_allclose(enrich(frames), raw / np.linalg.norm(raw), rtol=1e-6)


def test_single_frame_has_zero_spread_and_zero_change() -> None:
    vector = enrich(np.array([[3.0, 4.0]]))
    np.testing.assert_allclose(vector, [0.6, 0.8, 0, 0, 0, 0], atol=1e-7)


def test_output_is_unit_length_float32() -> None:
    vector = enrich(np.random.default_rng(0).normal(size=(50, 7)))
    assert vector.dtype == np.float32 and vector.shape == (21,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_zero_input_stays_zero_instead_of_nan() -> None:
    assert not np.any(np.isnan(enrich(np.zeros((4, 3)))))
    assert np.all(l2_normalise(np.zeros(3)) == 0)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (4,)])
def test_rejects_empty_or_non_matrix_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        enrich(np.zeros(shape))
