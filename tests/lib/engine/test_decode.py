"""Decoding in worker processes: the same tracks, vectors and fingerprints as in threads, and a worker
process that dies costs only the track it died on."""

import dataclasses
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.engine.decode import DecodeAhead
from navembed_pipeline.lib.engine.fingerprinter import TrackFingerprinter
from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.models.options import ModelOptions
from tests.lib.engine.worker_functions import dies_on_crash_files
from tests.lib.engine.test_run import GOOD_SECONDS, write_library

RATE = 22_050


def vectors_of(store, tracks: list[Track]) -> dict[str, np.ndarray]:
    rows = store.rows_in_buckets("dsp", sorted(group_by_bucket(tracks)), ["track_id", "embedding"])
    return {row["track_id"]: np.asarray(row["embedding"]) for row in rows}


def test_processes_embed_and_fingerprint_what_threads_do(tmp_path: Path, vector_store) -> None:
    tracks = write_library(tmp_path, [GOOD_SECONDS] * 5)
    (tmp_path / "music" / "000 broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    broken = dataclasses.replace(tracks[0], id="broken-track", path=tmp_path / "music" / "000 broken.wav")
    model = DspModel(ModelOptions(device="cpu"))
    results = {}
    try:
        for processes in (False, True):
            prints = FingerprintStore(tmp_path / f"prints-{processes}.sqlite")
            run = EmbeddingRun(model=model, store=vector_store, fingerprinter=TrackFingerprinter(prints),
                               options=RunOptions(force=True, decode_workers=2, decode_processes=processes))
            reports = list(run.run(group_by_bucket([*tracks, broken])))
            assert sum(r.embedded for r in reports) == 5 and sum(r.failed for r in reports) == 1
            assert "not a readable audio file" in vector_store.failed_tracks("dsp")["broken-track"]
            assert run.stage_seconds["decode_cpu"] > 0 and run.utilisation.cores_busy > 0
            results[processes] = (vectors_of(vector_store, tracks), prints.versions([t.id for t in tracks]))
    finally:
        model.shutdown()
    threads, processes = results[False], results[True]
    assert set(processes[0]) == {t.id for t in tracks}
    # (batches may group tracks differently: float sums in another order, so equal to float32 precision)
    assert all(np.allclose(threads[0][tid], processes[0][tid], rtol=0, atol=1e-5) for tid in threads[0])
    assert processes[1] == threads[1] and len(processes[1]) == 5  # every track fingerprinted, same versions


def test_a_worker_process_that_dies_fails_only_its_track(tmp_path: Path) -> None:
    tracks = write_library(tmp_path, [GOOD_SECONDS] * 6)
    crash = tracks[2].path.with_name("002 crash.wav")
    tracks[2].path.rename(crash)
    tracks[2] = dataclasses.replace(tracks[2], path=crash)
    times: dict[str, float] = {}
    decoder = DecodeAhead(RATE, workers=2, batch_tracks=2, processes=True, worker=dies_on_crash_files,
                          on_time=lambda stage, seconds: times.__setitem__(stage, times.get(stage, 0) + seconds))
    decoded = [d for batch in decoder.batches([("00", t) for t in tracks]) for _, d in batch]
    assert [d.track.id for d in decoded] == [t.id for t in tracks]  # every track, in order
    assert [d.error is None for d in decoded] == [True, True, False, True, True, True]
    assert "decoder process died" in decoded[2].error
    assert all(len(d.waves[0]) == int(GOOD_SECONDS * RATE) for d in decoded if d.error is None)
    assert times["decode"] > 0


def test_waves_a_killed_run_left_behind_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    import os

    from navembed_pipeline.lib.engine.worker import SPOOL_PREFIX, spool_folder

    folder = Path(spool_folder(os.getpid()))
    dead_pid = 2**22 + 12345  # above Linux's pid_max: never a live process
    dead = folder / f"{SPOOL_PREFIX}{dead_pid}-left.f32"
    mine = folder / f"{SPOOL_PREFIX}{os.getpid()}-live.f32"
    other = folder / "not-ours.f32"
    for path in (dead, mine, other):
        path.write_bytes(b"\0" * 16)
    try:
        assert spool_folder(os.getpid()) == str(folder)
        assert not dead.exists() and mine.exists() and other.exists()
    finally:
        for path in (dead, mine, other):
            path.unlink(missing_ok=True)
