"""Two models in one run: each file is decoded once, at the highest rate the models that want it need,
and every model gets the same vectors it gets in a run of its own (planned, written, skipped and
reported per model)."""

import dataclasses
from collections import Counter

import numpy as np
import pytest

from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.lib.library.navidrome import Track
from tests.lib.engine.test_run import GOOD_SECONDS, write_library


class DspAt16k(DspModel):
    """A second model at another rate (as musicnn's 16 kHz): the real dsp computation fed 16 kHz audio,
    under its own name; its waves travel back from worker processes (it does not embed in them)."""

    name = "dsp16k"
    sample_rate = 16_000
    embeds_in_workers = False


@pytest.fixture
def models():
    built = [DspModel(ModelOptions(device="cpu")), DspAt16k(ModelOptions(device="cpu"))]
    try:
        yield built
    finally:
        for model in built:
            model.shutdown()


def stored(store, model: str, tracks: list[Track]) -> dict[str, np.ndarray]:
    rows = store.rows_in_buckets(model, sorted(group_by_bucket(tracks)), ["track_id", "embedding"])
    return {row["track_id"]: np.asarray(row["embedding"]) for row in rows}


def run(store, models, tracks, **options) -> list:
    engine = EmbeddingRun(models=models, store=store, options=RunOptions(decode_workers=2, **options))
    return list(engine.run(group_by_bucket(tracks)))


def test_two_models_decode_each_file_once_and_get_the_vectors_of_runs_of_their_own(
        tmp_path, vector_store, models, decodes) -> None:
    tracks = write_library(tmp_path, [GOOD_SECONDS] * 4)
    alone = {}
    for model in models:
        run(vector_store, [model], tracks, force=True, decode_processes=False)
        alone[model.name] = stored(vector_store, model.name, tracks)
    decodes.clear()

    reports = run(vector_store, models, tracks, force=True, decode_processes=False)

    # one decode per file, at dsp's 22.05 kHz (the highest); the 16 kHz model is fed a resampled copy
    assert decodes == Counter({(t.path.name, 22_050): 1 for t in tracks})
    assert {r.model for r in reports} == {"dsp", "dsp16k"}
    for model in ("dsp", "dsp16k"):
        assert sum(r.embedded for r in reports if r.model == model) == len(tracks)
    together = {m.name: stored(vector_store, m.name, tracks) for m in models}
    for tid, vector in alone["dsp"].items():  # dsp decodes at its own rate either way: the very same audio
        np.testing.assert_allclose(together["dsp"][tid], vector, rtol=0, atol=1e-6)
    for tid, vector in alone["dsp16k"].items():  # resampled from 22.05 kHz vs decoded at 16 kHz: near equal
        assert float(np.dot(together["dsp16k"][tid], vector)) > 0.999


def test_a_track_current_for_one_model_is_decoded_only_for_the_other_at_its_rate(
        tmp_path, vector_store, models, decodes) -> None:
    tracks = write_library(tmp_path, [GOOD_SECONDS] * 3)
    dsp, slow = models
    run(vector_store, [dsp], tracks, decode_processes=False)  # dsp is current for every track
    run(vector_store, [slow], tracks[:1], decode_processes=False)  # the 16 kHz model for the first only
    decodes.clear()

    reports = run(vector_store, models, tracks, decode_processes=False)

    assert decodes == Counter({(t.path.name, 16_000): 1 for t in tracks[1:]})
    assert sum(r.embedded for r in reports if r.model == "dsp") == 0
    assert sum(r.skipped for r in reports if r.model == "dsp") == 3
    assert sum(r.embedded for r in reports if r.model == "dsp16k") == 2
    assert set(stored(vector_store, "dsp16k", tracks)) == {t.id for t in tracks}


def test_worker_processes_feed_both_models_what_threads_do_and_a_bad_file_fails_in_each(
        tmp_path, vector_store, models) -> None:
    tracks = write_library(tmp_path, [GOOD_SECONDS] * 4)
    broken = tmp_path / "music" / "009 broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    bad = dataclasses.replace(tracks[0], id="broken-track", path=broken)
    results = {}
    for processes in (False, True):
        reports = run(vector_store, models, [*tracks, bad], force=True, decode_processes=processes)
        for model in ("dsp", "dsp16k"):
            assert sum(r.failed for r in reports if r.model == model) == 1
            assert "not a readable audio file" in vector_store.failed_tracks(model)["broken-track"]
        results[processes] = {m.name: stored(vector_store, m.name, tracks) for m in models}
    for model in ("dsp", "dsp16k"):  # dsp embedded inside the workers, dsp16k from spooled waves
        assert set(results[True][model]) == {t.id for t in tracks}
        for tid, vector in results[False][model].items():
            np.testing.assert_allclose(results[True][model][tid], vector, rtol=0, atol=1e-5)
