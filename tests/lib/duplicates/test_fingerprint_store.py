"""The fingerprint store: durable per file version, index candidates verified, recording groups, uploads apart."""

from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.duplicates.chromaprint import fingerprint_pcm
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.sample_data.synth import render

RATE = 22050
SECONDS = 30


@pytest.fixture(scope="module")
def prints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Real fingerprints: two pieces, and a 96 kbps MP3 re-encode of the first with 4 s cut off."""
    folder = tmp_path_factory.mktemp("store-audio")
    song = render("piano", seconds=SECONDS, sample_rate=44100, seed=1)
    other = render("piano", seconds=SECONDS, sample_rate=44100, seed=2)
    files = {"album": write_audio(folder / "album.flac", song, 44100),
             "compilation": write_audio(folder / "compilation.mp3", song[4 * 44100:], 44100, bit_rate=96_000),
             "other": write_audio(folder / "other.flac", other, 44100)}
    return {name: fingerprint_pcm(load_audio(path, RATE), RATE) for name, path in files.items()}


@pytest.fixture
def store(tmp_path: Path, prints: dict[str, np.ndarray]) -> FingerprintStore:
    store = FingerprintStore(tmp_path / "fingerprints.sqlite")
    store.put("t-album", "v1", [(1, "Piano - Song", prints["album"])])
    store.put("t-comp", "v1", [(1, "Piano - Song (compilation)", prints["compilation"])])
    store.put("t-other", "v1", [(1, "Piano - Other", prints["other"])])
    return store


def test_album_and_compilation_copies_form_one_recording_group(store: FingerprintStore) -> None:
    assert store.recording_groups() == {"t-album": "t-album", "t-comp": "t-album", "t-other": "t-other"}
    assert store.recording_groups(["t-comp", "t-other", "unknown"]) == {"t-comp": "t-album", "t-other": "t-other"}


def test_a_query_finds_its_copies_with_the_offset_and_not_the_other_piece(
        store: FingerprintStore, prints: dict[str, np.ndarray]) -> None:
    found = store.duplicates_of(prints["album"])
    assert [d.owner for d in found] == ["t-album", "t-comp"]  # the identical one first
    assert found[1].match.offset_seconds == pytest.approx(4.0, abs=0.3)


def test_versions_say_which_file_a_fingerprint_was_computed_from(store: FingerprintStore,
                                                                 prints: dict[str, np.ndarray]) -> None:
    assert store.versions(["t-album", "t-other", "nope"]) == {"t-album": "v1", "t-other": "v1"}
    store.put("t-other", "v2", [(1, "Piano - Other", prints["other"])])
    assert store.versions(["t-other"]) == {"t-other": "v2"}
    assert len(store.prints("t-other")) == 1  # replaced, not added


def test_a_changed_file_that_is_no_longer_a_copy_leaves_the_group(store: FingerprintStore,
                                                                  prints: dict[str, np.ndarray]) -> None:
    store.put("t-comp", "v2", [(1, "Now something else", prints["other"])])
    groups = store.recording_groups()
    assert groups["t-comp"] == groups["t-other"] != groups["t-album"]


def test_uploads_are_searchable_apart_and_never_part_of_library_groups(
        store: FingerprintStore, prints: dict[str, np.ndarray]) -> None:
    store.put("upload:abc", "u1", [(1, "uploaded song", prints["album"])])
    assert [d.owner for d in store.duplicates_of(prints["album"], uploads=True)] == ["upload:abc"]
    assert "upload:abc" not in {d.owner for d in store.duplicates_of(prints["album"], uploads=False)}
    assert "upload:abc" not in store.recording_groups()
    assert {owner for owner, _, _ in store.links("upload:abc")} == {"t-album", "t-comp"}


def test_cue_segments_are_fingerprinted_separately(tmp_path: Path, prints: dict[str, np.ndarray]) -> None:
    store = FingerprintStore(tmp_path / "cue.sqlite")
    store.put("t-cue", "v1", [(1, "Song", prints["album"]), (2, "Other", prints["other"])])
    assert [(p.segment, p.name) for p in store.prints("t-cue")] == [(1, "Song"), (2, "Other")]
    assert [(d.owner, d.segment) for d in store.duplicates_of(prints["other"])] == [("t-cue", 2)]


def test_the_store_survives_reopening(store: FingerprintStore, prints: dict[str, np.ndarray]) -> None:
    reopened = FingerprintStore(store.path)
    assert reopened.recording_groups()["t-comp"] == "t-album"
    assert np.array_equal(reopened.prints("t-album")[0].words, prints["album"])


# ----- recording groups kept up to date as prints are written ---------------------------------------
def full_regroup(store: FingerprintStore) -> dict[str, str]:
    """What the groups must be: a union-find over every stored edge, from scratch (the reference)."""
    with store.connection() as db:
        owners = [o for (o,) in db.execute("SELECT owner FROM prints WHERE owner NOT LIKE 'upload:%' "
                                           "GROUP BY owner HAVING COUNT(*) = 1 AND MIN(seconds) >= 10")]
        edges = db.execute("SELECT a, b FROM pairs WHERE a_segment = 1 AND b_segment = 1").fetchall()
    parent = {o: o for o in owners}

    def root(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in edges:
        if a in parent and b in parent:
            low, high = sorted((root(a), root(b)))
            parent[high] = low
    return {o: root(o) for o in owners}


def test_every_write_and_removal_leaves_the_groups_a_full_regroup_would_give(
        tmp_path: Path, prints: dict[str, np.ndarray]) -> None:
    store = FingerprintStore(tmp_path / "groups.sqlite")
    steps = [("put", "c", "compilation"), ("put", "b", "other"), ("put", "a", "album"), ("put", "d", "album"),
             ("forget", "a", None), ("put", "c", "other"), ("put", "e", "compilation"), ("forget", "d", None),
             ("put", "a", "album")]
    generations = [store.group_generation()]
    for action, owner, piece in steps:
        if action == "put":
            store.put(owner, "v", [(1, owner, prints[piece])])
        else:
            store.forget(owner)
        assert store.recording_groups() == full_regroup(store), (action, owner)
        generations.append(store.group_generation())
    assert generations == sorted(generations) and len(set(generations)) == len(generations)  # each write counted
    assert store.recording_groups() == {"a": "a", "e": "a", "b": "b", "c": "b"}


def test_a_print_too_short_to_decide_has_no_group(tmp_path: Path, prints: dict[str, np.ndarray]) -> None:
    store = FingerprintStore(tmp_path / "short.sqlite")
    store.put("long", "v", [(1, "long", prints["album"])])
    store.put("clip", "v", [(1, "clip", prints["album"][:40])])  # ~5.5 s: fingerprints cannot decide
    assert store.recording_groups() == {"long": "long"}


def test_a_fingerprint_file_written_before_groups_were_kept_is_grouped_once_on_opening(
        tmp_path: Path, prints: dict[str, np.ndarray]) -> None:
    path = tmp_path / "old.sqlite"
    store = FingerprintStore(path)
    store.put("t-album", "v1", [(1, "Song", prints["album"])])
    store.put("t-comp", "v1", [(1, "Song", prints["compilation"])])
    with store.connection() as db:  # what an older navembed left: prints and edges, no groups
        db.execute("DROP TABLE groups")
        db.execute("DROP TABLE group_state")
    assert FingerprintStore(path).recording_groups() == {"t-album": "t-album", "t-comp": "t-album"}


def test_the_group_index_gives_numbers_and_reloads_only_when_the_groups_change(
        tmp_path: Path, prints: dict[str, np.ndarray]) -> None:
    from navembed_pipeline.lib.duplicates import NO_GROUP, RecordingGroupIndex

    store = FingerprintStore(tmp_path / "index.sqlite")
    index = RecordingGroupIndex(lambda: store if store.path.exists() else None, check_interval_s=0.0)
    assert index.ids_for(["a"]).tolist() == [NO_GROUP] and index.generation is None  # no file yet
    store.put("a", "v", [(1, "a", prints["album"])])
    store.put("b", "v", [(1, "b", prints["compilation"])])
    store.put("c", "v", [(1, "c", prints["other"])])
    a, b, c, unknown = index.ids_for(["a", "b", "c", "nope"]).tolist()
    assert a == b != c and NO_GROUP not in (a, c) and unknown == NO_GROUP
    seen = index.generation
    index.ids_for(["a"])
    assert index.generation == seen  # nothing written: nothing reloaded
    store.forget("b")
    assert index.ids_for(["b"]).tolist() == [NO_GROUP] and index.generation != seen
