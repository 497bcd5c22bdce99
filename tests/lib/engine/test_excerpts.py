"""Excerpts in the engine: a long track is decoded as dsp's excerpts only, each by a seek (with its head
when its fingerprint is wanted), and gets the same vector as when it is decoded whole and cut."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.engine.fingerprinter import TrackFingerprinter
from navembed_pipeline.lib.engine.run import EmbeddingRun, RunOptions, group_by_bucket
from navembed_pipeline.lib.engine.decode import DecodeAhead
from navembed_pipeline.lib.duplicates.chromaprint import PRINT_SECONDS, capped_print, match, seconds_of
from navembed_pipeline.lib.engine.worker import HEAD_SECONDS, ModelFeed, decode_track
from navembed_pipeline.lib.library.audio import exact_length, load_audio
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.library.excerpts import ExcerptWave
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, Track
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.models.dsp.model import EXCERPTS
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from navembed_pipeline.sample_data.synth import render_song

RATE = 22_050
FILE_RATE = 44_100  # decoded to the model's rate: the excerpts go through the resampler as a whole decode does
LONG_SECONDS = EXCERPTS.above_seconds + 20.0


def long_library(root: Path, lengths: list[float]) -> list[Track]:
    """FLAC tracks of generated songs (a header with an exact length) and their navidrome.db."""
    music = root / "music"
    music.mkdir(parents=True)
    fixtures = []
    for i, seconds in enumerate(lengths):
        name = f"{i:03d} song.flac"
        write_audio(music / name, render_song(seconds=seconds, sample_rate=FILE_RATE, seed=i), FILE_RATE)
        fixtures.append(FixtureTrack(path=name, title=f"song {i}", artist="Excerpts", album="Long", duration=seconds))
    create_navidrome_db(root / "navidrome.db", libraries=[FixtureLibrary(1, "Long", str(music))], tracks=fixtures)
    return list(NavidromeLibrary(root / "navidrome.db").tracks())


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> list[Track]:
    return long_library(tmp_path_factory.mktemp("excerpts"), [LONG_SECONDS, 30.0])


@pytest.fixture(scope="module")
def dsp() -> DspModel:
    model = DspModel(ModelOptions(device="cpu"))
    yield model
    model.shutdown()


def test_a_long_track_is_decoded_as_its_excerpts_and_they_are_the_slices_of_a_whole_decode(library) -> None:
    track = library[0]
    assert exact_length(track.path) == pytest.approx(LONG_SECONDS, abs=0.01)
    decoded = decode_track(track, RATE, False, EXCERPTS)
    assert decoded.error is None and len(decoded.waves) == 1
    excerpts = decoded.waves[0]
    assert isinstance(excerpts, ExcerptWave) and len(excerpts.parts) == EXCERPTS.count
    assert excerpts.samples == EXCERPTS.count * int(EXCERPTS.seconds * RATE)  # 120 s of 200 decoded
    whole = load_audio(track.path, RATE)
    cut = EXCERPTS.cut(whole, RATE)
    for seeked, sliced in zip(excerpts.parts, cut.parts, strict=True):
        assert len(seeked) == len(sliced)
        assert np.max(np.abs(seeked - sliced)) < 1e-3  # the same samples, to the resampler's float rounding


def test_a_fingerprint_decodes_a_long_track_s_head_and_the_excerpts_past_it(library) -> None:
    track = library[0]
    with_print = decode_track(track, RATE, True, EXCERPTS)
    excerpts = with_print.waves[0]
    assert isinstance(excerpts, ExcerptWave) and len(excerpts.parts) == EXCERPTS.count
    whole = load_audio(track.path, RATE)
    inside = [start + seconds <= HEAD_SECONDS for start, seconds in EXCERPTS.spans(LONG_SECONDS)]
    assert 0 < sum(inside) < EXCERPTS.count  # some cut from the head, some sought past it
    for part, sliced in zip(excerpts.parts, EXCERPTS.cut(whole, RATE).parts, strict=True):
        assert len(part) == len(sliced) and np.max(np.abs(part - sliced)) < 1e-3
    [(index, _, words, seconds)] = with_print.prints
    reference, whole_seconds = capped_print(whole, RATE)
    assert index == 1 and seconds == pytest.approx(whole_seconds, abs=0.5)  # the whole track's length
    assert len(words) == len(reference) and seconds_of(words) == pytest.approx(PRINT_SECONDS, abs=3.0)
    found = match(words, reference, a_seconds=seconds, b_seconds=whole_seconds)
    assert found.score > 0.99 and found.offset_seconds == 0.0 and found.overlap_fraction > 0.99


def test_a_short_track_or_no_plan_decodes_the_whole_track(library) -> None:
    long_track, short_track = library
    assert isinstance(decode_track(long_track, RATE, False).waves[0], np.ndarray)
    short = decode_track(short_track, RATE, True, EXCERPTS)
    assert isinstance(short.waves[0], np.ndarray) and len(short.waves[0]) == pytest.approx(30.0 * RATE, abs=2)
    [(_, _, words, seconds)] = short.prints
    assert seconds == seconds_of(words) and 25.0 < seconds <= 30.0  # within the cap: the whole print, as before


def test_dsp_gives_the_same_vector_for_the_excerpts_alone_and_for_the_whole_wave(library, dsp) -> None:
    track = library[0]
    whole = load_audio(track.path, RATE)
    alone = decode_track(track, RATE, False, EXCERPTS).waves[0]
    by_whole, by_excerpts = dsp.embed([whole, alone])
    assert by_whole.window_count == by_excerpts.window_count == EXCERPTS.count  # 12 windows, not the 7 of 30 s
    assert float(by_whole.embedding @ by_excerpts.embedding) > 0.9999
    short = load_audio(library[1].path, RATE)
    assert dsp.embed([short])[0].window_count == 1  # 30 s: analysed whole, as before


def test_a_file_truncated_before_its_declared_end_fails_as_it_does_whole(tmp_path: Path) -> None:
    track = long_library(tmp_path, [LONG_SECONDS])[0]
    data = track.path.read_bytes()
    track.path.write_bytes(data[: int(len(data) * 0.97)])  # the last excerpt's audio is cut off
    whole = decode_track(track, RATE, True, EXCERPTS)
    alone = decode_track(track, RATE, False, EXCERPTS)
    assert whole.waves is None and "truncated" in whole.error
    assert alone.waves is None and "truncated" in alone.error


@pytest.mark.parametrize("processes", [False, True])
def test_a_run_stores_the_same_vectors_whether_it_decodes_whole_or_excerpts(tmp_path, library, vector_store, dsp,
                                                                           processes: bool) -> None:
    prints = FingerprintStore(tmp_path / "prints.sqlite")
    vectors = []
    for _ in range(2):  # first run: fingerprints wanted, heads and excerpts; second (forced): excerpts alone
        run = EmbeddingRun(model=dsp, store=vector_store, fingerprinter=TrackFingerprinter(prints),
                           options=RunOptions(force=True, decode_workers=2, decode_processes=processes))
        reports = list(run.run(group_by_bucket(library)))
        assert sum(r.embedded for r in reports) == len(library) and sum(r.failed for r in reports) == 0
        rows = vector_store.rows_in_buckets("dsp", sorted(group_by_bucket(library)), ["track_id", "embedding"])
        vectors.append({row["track_id"]: np.asarray(row["embedding"]) for row in rows})
        decode_cpu = run.stage_seconds["decode_cpu"]
        assert decode_cpu > 0
    assert set(vectors[0]) == set(vectors[1]) == {t.id for t in library}
    assert len(prints.versions([t.id for t in library])) == len(library)
    for track_id, first in vectors[0].items():
        assert float(first @ vectors[1][track_id]) > 0.9999


@pytest.mark.parametrize("processes", [False, True])
def test_decode_ahead_decodes_a_long_track_as_excerpts_whether_or_not_it_prints_it(tmp_path, library,
                                                                                  processes: bool) -> None:
    prints = FingerprintStore(tmp_path / "prints.sqlite")
    fingerprinter = TrackFingerprinter(prints)
    kinds, printed = [], []
    for _ in range(2):  # first: no fingerprint yet (head + excerpts, printed); then: excerpts alone
        decoder = DecodeAhead(RATE, 1, 2, lambda *_: None, fingerprinter, processes=processes, excerpts=EXCERPTS)
        decoded = [d for batch in decoder.batches([("b", t) for t in library]) for _, d in batch]
        kinds.append([type(d.waves[0]).__name__ for d in decoded])
        printed.append(sorted(prints.versions([t.id for t in library])))
    assert kinds == [["ExcerptWave", "ndarray"]] * 2  # the 30 s track is always whole
    assert printed == [sorted(t.id for t in library)] * 2  # both printed by the first pass
    [long_print] = prints.prints(library[0].id)
    assert long_print.seconds > LONG_SECONDS - 5.0 > PRINT_SECONDS  # the whole track's length beside a capped print


def test_a_shared_decode_uses_excerpts_only_when_every_model_it_feeds_reads_them() -> None:
    decoder = DecodeAhead(RATE, 1, 2, lambda *_: None, feeds=(ModelFeed("dsp", RATE), ModelFeed("musicnn", 16_000)),
                          feed_excerpts={"dsp": EXCERPTS, "musicnn": None})
    assert decoder._plan(decoder.feeds) is None
    assert decoder._plan(decoder.feeds[:1]) == EXCERPTS
