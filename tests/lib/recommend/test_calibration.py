"""Calibration: library statistics that standardise vectors, and a 0..1 similarity with a meaning."""

import json

import numpy as np
import pytest

from navembed_pipeline.lib.recommend.calibration import (CalibrationError, FieldCalibration, LibraryStats,
                                                         ScoreCalibration, load_calibration, save_calibration)


def clustered(rows: int = 400, dim: int = 24, *, offset: float = 3.0, seed: int = 0) -> np.ndarray:
    """Vectors like a real model's: a large shared direction (every song "looks like music") plus
    eight clusters, so raw cosines between unrelated rows are high, as dsp's are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, dim))
    shared = np.full(dim, offset)
    return shared + centres[rng.integers(0, 8, rows)] + 0.3 * rng.standard_normal((rows, dim))


def test_standardised_vectors_are_unit_rows_centred_on_the_library():
    vectors = clustered()
    stats = LibraryStats.fit(vectors)
    standardised = stats.apply(vectors)
    assert np.allclose(np.linalg.norm(standardised, axis=1), 1.0, atol=1e-5)
    raw = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert float(np.mean(raw @ raw.T)) > 0.8  # the shared direction dominates raw cosines
    assert abs(float(np.mean(standardised @ standardised.T))) < 0.1  # and is gone after standardising


def test_a_dead_dimension_is_not_blown_up_to_the_weight_of_a_live_one():
    vectors = clustered()
    vectors[:, 0] = 1e-9 * np.random.default_rng(3).standard_normal(len(vectors))  # ~constant noise
    standardised = LibraryStats.fit(vectors).apply(vectors)
    share = float(np.mean(standardised[:, 0] ** 2))  # of each unit row's squared norm
    assert share < 0.01


def test_library_stats_survive_json():
    stats = LibraryStats.fit(clustered())
    again = LibraryStats.from_json(json.loads(json.dumps(stats.to_json())))
    vectors = clustered(seed=5)
    assert np.allclose(again.apply(vectors), stats.apply(vectors))
    with pytest.raises(CalibrationError):
        LibraryStats.from_json({"mean": [0.0, 1.0], "scale": [1.0], "count": 2})


def test_the_same_recording_scores_one_and_a_typical_unrelated_pair_about_zero():
    calibration = ScoreCalibration.fit(clustered())
    assert float(calibration.similarity(1.0)) == 1.0
    assert float(calibration.similarity(calibration.median)) == pytest.approx(0.0, abs=0.01)


def test_random_pairs_average_well_under_one_half():
    vectors = clustered()
    calibration = ScoreCalibration.fit(vectors, seed=1)
    rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(9)
    a, b = rng.integers(0, len(rows), 5000), rng.integers(0, len(rows), 5000)
    keep = a != b
    cosines = np.einsum("ij,ij->i", rows[a[keep]], rows[b[keep]])
    assert float(np.mean(calibration.similarity(cosines))) <= 0.5
    assert float(np.mean((1 + cosines) / 2)) > 0.9  # what the old (1 + cos) / 2 showed clients


def test_similarity_never_reorders_and_stays_within_zero_and_one():
    calibration = ScoreCalibration.fit(clustered())
    cosines = np.linspace(-1.0, 1.0, 401)
    values = calibration.similarity(cosines)
    assert np.all(np.diff(values) >= 0)
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert np.isnan(calibration.similarity(np.nan))


def test_pairs_within_one_group_do_not_calibrate():
    vectors = clustered(rows=50)
    with pytest.raises(CalibrationError):
        ScoreCalibration.fit(vectors, groups=np.zeros(len(vectors)))
    with pytest.raises(CalibrationError):
        ScoreCalibration.fit(vectors[:1])


def test_a_field_calibration_is_written_and_read_back(tmp_path):
    calibration = FieldCalibration.fit("dsp", "embedding", clustered(), signature="c1:400 rows")
    path = save_calibration(tmp_path, calibration)
    assert path.name == "dsp.embedding.json" and json.loads(path.read_text())["model"] == "dsp"
    again = load_calibration(tmp_path, "dsp", "embedding")
    assert again is not None and again.signature == "c1:400 rows" and not again.standardised
    assert np.array_equal(again.scores.quantiles, calibration.scores.quantiles)
    assert load_calibration(tmp_path, "mert", "embedding") is None
    path.write_text("{not json")
    assert load_calibration(tmp_path, "dsp", "embedding") is None
