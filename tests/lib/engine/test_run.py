"""The embedding engine on its own (no Dagster): live progress, and model errors that fail only their track."""

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from navembed_pipeline.lib.engine.run import (MAX_CONSECUTIVE_MODEL_FAILURES, MIN_TRACKS_FOR_ETA, EmbeddingRun,
                                              RunOptions, group_by_bucket)
from navembed_pipeline.lib.errors import ModelLoadError
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, Track
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.lib.runs import Progress
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from navembed_pipeline.sample_data.synth import STYLES, render

RATE = 22_050
GOOD_SECONDS = 3.0
BAD_SECONDS = 1.5  # the fault-injecting model below refuses audio this short


def write_library(root: Path, seconds: Sequence[float]) -> list[Track]:
    """Generated WAV tracks of the given lengths and their navidrome.db; the library's tracks."""
    music = root / "music"
    music.mkdir(parents=True)
    fixtures = []
    for i, length in enumerate(seconds):
        style = STYLES[i % len(STYLES)]
        relative = f"{i:03d} {style}.wav"
        write_audio(music / relative, render(style, seconds=length, sample_rate=RATE, seed=i), RATE)
        fixtures.append(FixtureTrack(path=relative, title=f"{style} {i}", artist="Engine", album="Run",
                                     duration=length))
    create_navidrome_db(root / "navidrome.db", libraries=[FixtureLibrary(1, "Run", str(music))], tracks=fixtures)
    return list(NavidromeLibrary(root / "navidrome.db").tracks())


class RefusesShortAudio(DspModel):
    """The real dsp model, with one injected fault: it raises a model error on audio under 2 s
    (as a real model does on input it cannot take — torch raises RuntimeError)."""

    def embed(self, waves, *args, **kwargs):  # type: ignore[override]
        if any(len(w) < 2.0 * self.sample_rate for w in waves):
            raise RuntimeError("input too short for this network")
        return super().embed(waves, *args, **kwargs)


@pytest.fixture
def dsp() -> Iterator[DspModel]:
    model = RefusesShortAudio(ModelOptions(device="cpu"))
    try:
        yield model
    finally:
        model.shutdown()


def run_all(model, store, tracks: list[Track], **options) -> tuple[list, list[Progress]]:
    seen: list[Progress] = []
    run = EmbeddingRun(model=model, store=store, options=RunOptions(decode_workers=1, **options))
    reports = list(run.run(group_by_bucket(tracks), on_progress=seen.append))
    return reports, seen


def test_progress_moves_as_tracks_finish_before_their_vectors_are_written(tmp_path, vector_store, dsp) -> None:
    tracks = write_library(tmp_path, [GOOD_SECONDS] * 12)
    _, seen = run_all(dsp, vector_store, tracks, batch_tracks=1, write_batch_tracks=32, progress_interval=0.005)
    mid = [p for p in seen if 0 < p.processed < p.total]
    assert mid, "no progress was observed strictly between 0 and the total"
    # nothing is written until the one write at the end (32 > 12), yet processed moves track by track
    assert all(p.written == 0 for p in mid)
    assert len({p.processed for p in mid}) >= 3  # it moves in steps, not one jump at the write
    assert all(p.eta_seconds is None for p in mid if p.processed < MIN_TRACKS_FOR_ETA)
    with_eta = [p for p in mid if p.processed >= MIN_TRACKS_FOR_ETA]
    assert with_eta and all(p.eta_seconds is not None and p.eta_seconds > 0 for p in with_eta)
    assert all(p.tracks_per_second > 0 for p in with_eta)
    final = seen[-1]
    assert (final.processed, final.embedded, final.written, final.eta_seconds) == (12, 12, 12, 0.0)
    assert vector_store.count("dsp") == 12


def test_a_model_error_fails_only_that_track_when_it_is_alone_in_its_batch(tmp_path, vector_store, dsp) -> None:
    lengths = [GOOD_SECONDS] * 4 + [BAD_SECONDS] * 4 + [GOOD_SECONDS] * 4
    tracks = write_library(tmp_path, lengths)
    reports, seen = run_all(dsp, vector_store, tracks, batch_tracks=1)
    bad = {t.id for t in tracks if t.duration_seconds < 2.0}
    assert len(bad) == 4
    assert set(vector_store.failed_tracks("dsp")) == bad
    assert all(reason == "model error: RuntimeError: input too short for this network"
               for reason in vector_store.failed_tracks("dsp").values())
    assert set(vector_store.stored("dsp", [t.id for t in tracks])) == {t.id for t in tracks} - bad
    assert sum(r.failed for r in reports) == 4 and sum(r.embedded for r in reports) == 8
    assert (seen[-1].failed, seen[-1].embedded, seen[-1].processed) == (4, 8, 12)


def test_a_batch_whose_every_track_fails_fails_only_those_tracks(tmp_path, vector_store, dsp) -> None:
    tracks = write_library(tmp_path, [BAD_SECONDS] * 4)
    reports, _ = run_all(dsp, vector_store, tracks, batch_tracks=4)  # one batch, every track in it fails
    assert set(vector_store.failed_tracks("dsp")) == {t.id for t in tracks}
    assert sum(r.failed for r in reports) == 4 and vector_store.count("dsp") == 0


def test_a_model_failing_on_track_after_track_ends_the_run(tmp_path, vector_store, dsp) -> None:
    tracks = write_library(tmp_path, [BAD_SECONDS] * (MAX_CONSECUTIVE_MODEL_FAILURES + 2))
    with pytest.raises(ModelLoadError, match="in a row"):
        run_all(dsp, vector_store, tracks, batch_tracks=1)
    # the tracks tried are recorded (the retry job picks them up), the rest are not blamed
    assert len(vector_store.failed_tracks("dsp")) == MAX_CONSECUTIVE_MODEL_FAILURES


def test_fewer_failures_in_a_row_than_the_limit_keep_the_run_going(tmp_path, vector_store, dsp) -> None:
    lengths = [BAD_SECONDS] * (MAX_CONSECUTIVE_MODEL_FAILURES - 1) + [GOOD_SECONDS] * 3
    reports, _ = run_all(dsp, vector_store, write_library(tmp_path, lengths), batch_tracks=1)
    assert sum(r.failed for r in reports) == MAX_CONSECUTIVE_MODEL_FAILURES - 1
    assert sum(r.embedded for r in reports) == 3


def test_the_rate_leaves_out_the_models_load_time_and_the_eta_waits_for_a_few_tracks() -> None:
    from navembed_pipeline.lib.engine.heartbeat import Tally

    now = [0.0]
    tally = Tally("muq", total=100, skipped=0, started=0.0, clock=lambda: now[0])
    assert tally.snapshot().eta_seconds is None and tally.snapshot().tracks_per_second == 0.0
    now[0] = 60.0  # the first batch took a minute: the model loaded first
    tally.count([False, False])
    assert tally.snapshot().eta_seconds is None  # 2 tracks are too few to judge
    now[0] = 64.0
    tally.count([False, True, False, False])  # 4 more tracks in 4 s: 1 track/s from here on
    snap = tally.snapshot()
    assert (snap.processed, snap.failed, snap.tracks_per_second, snap.eta_seconds) == (6, 1, 1.0, 94.0)


class CountsTorchThreads(DspModel):
    """The real dsp model, noting how many CPU threads torch had while it embedded."""

    seen: list[int]

    def embed(self, waves, *args, **kwargs):  # type: ignore[override]
        import torch

        self.seen.append(torch.get_num_threads())
        return super().embed(waves, *args, **kwargs)


def test_the_run_gives_dsp_one_torch_thread_and_restores_the_count_and_reports_utilisation(
        tmp_path, vector_store) -> None:
    import torch

    model = CountsTorchThreads(ModelOptions(device="cpu"))
    model.seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run = EmbeddingRun(model=model, store=vector_store, options=RunOptions(decode_workers=2, batch_tracks=2))
        reports = list(run.run(group_by_bucket(write_library(tmp_path, [GOOD_SECONDS] * 4))))
        assert sum(r.embedded for r in reports) == 4
        assert model.seen and set(model.seen) == {1}  # DspModel.cpu_threads, only while the run works
        assert torch.get_num_threads() == 2
        use = run.utilisation
        assert use is not None and use.decode_workers == 2 and use.wall_seconds > 0
        assert use.decode_cpu_seconds > 0 and use.model_cpu_seconds > 0 and use.cpu_seconds > 0
        assert 0 < use.decode_busy <= 1.0 and 0 < use.model_busy <= 1.0
        assert "decode threads" in use.line() and "cores busy" in use.line()
    finally:
        torch.set_num_threads(before)
        model.shutdown()


def test_a_stopped_run_writes_what_it_embedded_and_returns(tmp_path, vector_store, dsp) -> None:
    from navembed_pipeline.lib.engine.ahead import run_ahead

    tracks = write_library(tmp_path, [GOOD_SECONDS] * 8)
    run = EmbeddingRun(model=dsp, store=vector_store,
                       options=RunOptions(decode_workers=1, batch_tracks=1, write_batch_tracks=1))
    seen: list[Progress] = []
    reports = run_ahead(lambda stop: run.run(group_by_bucket(tracks), on_progress=seen.append, stop=stop))
    first = next(reports)
    reports.close()  # the consumer gives up (a cancelled Dagster step): the engine stops after its batch
    assert first.embedded == 1
    assert 1 <= seen[-1].written < 8  # stopped early, nothing embedded left unwritten
    assert seen[-1].written == seen[-1].embedded == vector_store.count("dsp")
