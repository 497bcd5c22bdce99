"""The deletion guard on a real Navidrome-schema database: tombstones, the grace period, mass deletions."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from navembed_pipeline.lib.store.missing_tracks import DeletionGuard, DeletionPolicy, MissingLog, read_refusals
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.sample_data.navidrome_fixture import (FixtureLibrary, FixtureTrack, create_navidrome_db,
                                                              delete_track, mark_missing, touch_track)

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def library_db(tmp_path: Path, tracks_per_library: int = 20) -> tuple[Path, list[str], list[str]]:
    """Two libraries ("Music", "NAS") of ``tracks_per_library`` tracks each."""
    db = tmp_path / "navidrome.db"
    music = [FixtureTrack(f"a/{i:02d}.flac", title=f"m{i}") for i in range(tracks_per_library)]
    nas = [FixtureTrack(f"b/{i:02d}.flac", title=f"n{i}", library_id=2) for i in range(tracks_per_library)]
    ids = create_navidrome_db(db, libraries=[FixtureLibrary(1, "Music", "/music"), FixtureLibrary(2, "NAS", "/nas")],
                              tracks=music + nas)
    return db, ids[:tracks_per_library], ids[tracks_per_library:]


def guard_for(db: Path, log: MissingLog, clock: Clock, **policy: float) -> DeletionGuard:
    return DeletionGuard(NavidromeLibrary(db), log, DeletionPolicy(**policy), clock=clock)


def test_a_missing_file_is_kept_through_the_grace_period_then_deleted(tmp_path: Path) -> None:
    db, music, nas = library_db(tmp_path)
    log, clock = MissingLog(tmp_path / "missing.sqlite"), Clock()
    mark_missing(db, music[0])
    verdict = guard_for(db, log, clock, grace_seconds=3 * DAY).judge("dsp", music + nas)
    assert verdict.deletable == frozenset() and verdict.kept == {music[0]: clock.now} and verdict.refused is None
    clock.now += 2 * DAY  # still within the grace period: its first sighting counts, not this one
    assert guard_for(db, log, clock, grace_seconds=3 * DAY).judge("dsp", music + nas).deletable == frozenset()
    clock.now += 1.5 * DAY
    verdict = guard_for(db, log, clock, grace_seconds=3 * DAY).judge("dsp", music + nas)
    assert verdict.deletable == {music[0]} and not verdict.kept


def test_a_track_whose_row_is_gone_is_deleted_at_once(tmp_path: Path) -> None:
    db, music, nas = library_db(tmp_path)
    delete_track(db, nas[3])
    verdict = guard_for(db, MissingLog(":memory:"), Clock()).judge("dsp", music + nas)
    assert verdict.deletable == {nas[3]} and verdict.refused is None


def test_a_whole_library_folder_missing_deletes_nothing_and_is_recorded(tmp_path: Path) -> None:
    db, music, nas = library_db(tmp_path)
    data = tmp_path / "data"
    log, clock = MissingLog(data / "missing.sqlite"), Clock()
    delete_track(db, music[0])  # a real deletion in the same run is held back too
    for track_id in nas:
        mark_missing(db, track_id)
    guard_for(db, log, clock, grace_seconds=DAY).judge("dsp", music + nas)  # first seen missing now
    clock.now += 10 * DAY  # even past the grace period
    verdict = guard_for(db, log, clock, grace_seconds=DAY).judge("dsp", music + nas)
    assert verdict.due == {music[0], *nas} and verdict.deletable == frozenset()
    assert "'NAS'" in verdict.refused and "missing" in verdict.refused
    assert [(r.model, r.would_delete) for r in read_refusals(data)] == [("dsp", 21)]
    # The NAS comes back: the next judgement deletes the one real deletion and the refusal is lifted.
    for track_id in nas:
        mark_missing(db, track_id, missing=False)
    verdict = guard_for(db, log, clock, grace_seconds=DAY).judge("dsp", music + nas)
    assert verdict.deletable == {music[0]} and read_refusals(data) == []


def test_more_than_the_allowed_share_at_once_deletes_nothing_unless_confirmed(tmp_path: Path) -> None:
    db, music, nas = library_db(tmp_path)
    for track_id in music[:6] + nas[:6]:  # 12 of 40 = 30 %
        delete_track(db, track_id)
    library, log = NavidromeLibrary(db), MissingLog(":memory:")
    refused = DeletionGuard(library, log, DeletionPolicy(max_share=0.10), clock=Clock()).judge("dsp", music + nas)
    assert refused.deletable == frozenset() and "12 of 40" in refused.refused
    assert [r.would_delete for r in log.refusals()] == [12]
    allowed = DeletionGuard(library, log, DeletionPolicy(max_share=0.5), clock=Clock()).judge("dsp", music + nas)
    assert len(allowed.deletable) == 12 and log.refusals() == []
    confirmed = DeletionGuard(library, log, DeletionPolicy(max_share=0.10), clock=Clock(),
                              confirmed=True).judge("dsp", music + nas)
    assert len(confirmed.deletable) == 12


def test_uploads_are_never_judged(tmp_path: Path) -> None:
    db, music, nas = library_db(tmp_path)
    verdict = guard_for(db, MissingLog(":memory:"), Clock()).judge("dsp", [*music, *nas, "upload:abc"])
    assert verdict.due == frozenset()


@pytest.mark.parametrize(("size", "adopted"), [(None, 1), (123, 0)])
def test_a_file_back_unchanged_is_adopted_and_a_changed_one_is_not(tmp_path: Path, size: int | None,
                                                                   adopted: int) -> None:
    db, music, nas = library_db(tmp_path)
    log = MissingLog(":memory:")
    mark_missing(db, music[1])
    guard_for(db, log, Clock()).judge("dsp", music + nas)
    mark_missing(db, music[1], missing=False)  # Navidrome stamps updated_at: the fingerprint changes
    if size is not None:
        touch_track(db, music[1], updated_at=datetime(2026, 5, 1, tzinfo=UTC), size=size)
    restamped: list[dict[str, str]] = []
    tracks = list(NavidromeLibrary(db).tracks())
    count = guard_for(db, log, Clock()).adopt_returned(tracks, restamped.append, lambda t: f"fp-{t.id}")
    assert count == adopted
    assert restamped == ([{music[1]: f"fp-{music[1]}"}] if adopted else [])
    assert log.tombstones() == {}  # back: no longer tombstoned either way
