"""The same-recording rule on real audio: four songs of one artist and album (Sectoid, shipped excerpts,
licence beside them), real re-encodes of each (MP3 64 kbps, AAC, Opus) and 8 s clips with their MP3 copy.

Full songs are told apart by fingerprint groups (the pipeline's ``FingerprintStore`` and the
``RecordingGroupIndex`` the API reads); the clips are too short for a fingerprint to decide, so they
rest on the dsp vectors and the measured per-model threshold. In playlists (``collapse_duplicates``)
and the plugin's ``eliminate_duplicates``: every copy merged, no two different songs merged.
The measurement on 200+ real recordings is ``benchmarks/same_recording.py``.
"""

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.duplicates import NO_GROUP, FingerprintStore, RecordingGroupIndex, fingerprint_pcm
from navembed_pipeline.lib.library import load_audio, write_audio
from navembed_pipeline.lib.models.dsp import DspModel
from navembed_pipeline.lib.recommend import (COPY_SIMILARITY, PlaylistRules, RecommendRequest, RecordingIdentity,
                                             SonicService)
from tests.lib.recommend.helpers import field, recommender, track

FIXTURES = Path(__file__).parent / "fixtures" / "identity"
RATE = 44100
CLIP_SECONDS = 8.0
COPIES = {"mp3_64k": (".mp3", 64_000), "aac_96k": (".m4a", 96_000), "opus_48k": (".opus", 48_000)}


def recording_of(track_id: str) -> str:
    """``feelings/full/mp3_64k`` → ``feelings/full``: the recording a file is a copy of."""
    return track_id.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Track id → (dsp vector, fingerprint) for every original, copy, clip and clip copy."""
    work = tmp_path_factory.mktemp("identity")
    files: dict[str, Path] = {}
    for source in sorted(FIXTURES.glob("sectoid_*_20s.opus")):
        song = source.stem.removeprefix("sectoid_").removesuffix("_20s")
        wave = load_audio(source, RATE)
        files[f"{song}/full/original"] = source
        for name, (suffix, rate) in COPIES.items():
            files[f"{song}/full/{name}"] = write_audio(work / f"{song}.{name}{suffix}", wave, RATE, bit_rate=rate)
        clip = wave[int(6 * RATE): int((6 + CLIP_SECONDS) * RATE)]
        files[f"{song}/clip/original"] = write_audio(work / f"{song}.clip.flac", clip, RATE)
        files[f"{song}/clip/mp3_96k"] = write_audio(work / f"{song}.clip.mp3", clip, RATE, bit_rate=96_000)
    model = DspModel()
    out = {}
    for track_id, path in files.items():
        wave = load_audio(path, model.sample_rate)
        out[track_id] = (model.embed([wave])[0].embedding, fingerprint_pcm(wave, model.sample_rate))
    assert len({recording_of(t) for t in out}) == 8 and len(out) == 4 * 6
    return out


@pytest.fixture(scope="module")
def groups(library: dict, tmp_path_factory: pytest.TempPathFactory) -> RecordingGroupIndex:
    store = FingerprintStore(tmp_path_factory.mktemp("prints") / "fingerprints.sqlite")
    for track_id, (_, words) in library.items():  # as the pipeline writes them, one by one
        store.put(track_id, "v1", [(1, track_id, words)])
    return RecordingGroupIndex(store, check_interval_s=0.0)


@pytest.fixture(scope="module")
def engine(library: dict, groups: RecordingGroupIndex):
    vectors = {t: v for t, (v, _) in library.items()}
    tracks = [track(t, artist="Sectoid", album="Sectoid") for t in vectors]
    return recommender([field("dsp", vectors)], tracks, default_models=("dsp",),
                       identity=RecordingIdentity(groups=groups))


def song_of(track_id: str) -> str:
    return track_id.split("/")[0]


def related(a: str, b: str) -> bool:
    """A clip and the full song it was cut from: neither a copy nor a different song (left out)."""
    return a.split("/")[0] == b.split("/")[0] and a.split("/")[1] != b.split("/")[1]


def test_full_songs_get_fingerprint_groups_and_clips_none(groups: RecordingGroupIndex, library: dict) -> None:
    ids = sorted(library)
    numbers = dict(zip(ids, groups.ids_for(ids).tolist(), strict=True))
    assert all((n == NO_GROUP) == ("/clip/" in t) for t, n in numbers.items())
    full = [t for t in ids if "/full/" in t]
    for a, b in itertools.combinations(full, 2):
        assert (numbers[a] == numbers[b]) == (recording_of(a) == recording_of(b)), (a, b)


def test_the_identity_merges_every_copy_and_no_two_different_songs(engine, library: dict) -> None:
    ids = sorted(library)
    same_as = engine.identity.matcher(ids, {"dsp": engine.vectors.field("dsp")})
    for a in ids:
        verdict = dict(zip(ids, same_as(a).tolist(), strict=True))
        for b in ids:
            if not related(a, b):
                assert verdict[b] == (recording_of(a) == recording_of(b)), (a, b)


def test_a_clips_copy_rests_on_the_measured_vector_threshold(engine, library: dict) -> None:
    vectors = engine.vectors.field("dsp")
    a, b = vectors.vectors_of("feelings/clip/original"), vectors.vectors_of("feelings/clip/mp3_96k")
    cosine = float(a[0] @ b[0])
    assert cosine >= COPY_SIMILARITY["dsp"].cosine and vectors.calibrated(cosine) >= COPY_SIMILARITY["dsp"].similarity
    without_vectors = RecordingIdentity(groups=engine.identity.groups, thresholds={})
    assert not without_vectors.matcher(["feelings/clip/mp3_96k"], {"dsp": vectors})("feelings/clip/original")[0]


def test_playlists_hold_one_copy_of_each_other_recording_and_none_of_the_seed(engine, library: dict) -> None:
    for seed in sorted(library):
        answer = engine.recommend(RecommendRequest(mode="similar", seeds=(seed,),
                                                   rules=PlaylistRules(size=len(library) - 1)))
        picked = [t.id for t in answer.tracks]
        recordings = [recording_of(t) for t in picked]
        assert recording_of(seed) not in recordings, (seed, picked)  # never a copy of the seed
        assert len(recordings) == len(set(recordings)), (seed, picked)  # every copy merged
        # no different song merged away (a clip and the song it was cut from may be, either way)
        assert {song_of(t) for t in library} - {song_of(seed)} <= {song_of(t) for t in picked}, (seed, picked)


def test_the_plugins_eliminate_duplicates_keeps_one_of_each_other_recording(engine, library: dict) -> None:
    tracks = [track(t, artist="Sectoid") for t in library]
    sonic = SonicService(engine, lambda: tracks)
    for seed in ("feelings/full/aac_96k", "war_of_freedom/clip/original"):
        found = [n.track.id for n in sonic.similar_tracks(seed, len(library))]
        recordings = [recording_of(t) for t in found]
        assert recording_of(seed) not in recordings and len(recordings) == len(set(recordings)), found
        assert {song_of(t) for t in library} - {song_of(seed)} <= {song_of(t) for t in found}, found
        everything = [n.track.id for n in sonic.similar_tracks(seed, len(library), eliminate_duplicates=False)]
        assert len(everything) == len(library) - 1  # the copies were there to be removed


def test_artist_radio_representative_songs_are_one_copy_of_each_recording(engine, library: dict) -> None:
    # Two "artists" over the real library: the full songs and their copies, and the clips with theirs.
    tracks = [dataclasses.replace(track(t, artist="Full" if "/full/" in t else "Clips"),
                                  artist_id="full" if "/full/" in t else "clips") for t in library]
    sonic = SonicService(engine, lambda: tracks)
    _, matches = sonic.similar_artists("full", 1)
    assert matches and matches[0].artist.id == "clips"
    for songs in (matches[0].own_songs, matches[0].their_songs):
        recordings = [recording_of(t) for t in songs]
        assert songs and len(recordings) == len(set(recordings)), songs
    raw = sonic.artists().similar(sonic.artists().find("full"), 1)[0].own_songs  # before the identity
    assert len({recording_of(t) for t in raw}) < len(raw)  # the copies were there to be removed


def test_the_pairwise_matrix_and_the_per_track_matcher_agree(engine, library: dict) -> None:
    ids = sorted(library)
    fields = {"dsp": engine.vectors.field("dsp")}
    same = engine.identity.same_matrix(ids, fields)
    same_as = engine.identity.matcher(ids, fields)
    assert np.array_equal(same, np.stack([same_as(t) for t in ids]))
    assert np.array_equal(same, same.T) and same.diagonal().all()
