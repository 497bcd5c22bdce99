"""Fingerprints that cannot be stored are recorded with their track and the reason, whatever the error:
the engine's saves are read back, not fired and forgotten."""

from pathlib import Path

import numpy as np

from navembed_pipeline.lib.engine.decode import DecodeAhead
from navembed_pipeline.lib.engine.worker import DecodedTrack, decode_track
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, Track
from navembed_pipeline.lib.engine.fingerprinter import FINGERPRINT_FAILURES, TrackFingerprinter


def garbled_prints(track: Track, sample_rate: int, fingerprint: bool) -> DecodedTrack:
    """A real decode whose fingerprints come back malformed (words that are not integers)."""
    decoded = decode_track(track, sample_rate, fingerprint)
    if decoded.prints is None:
        return decoded
    bad = [(index, title, np.array([["not", "words"]]), seconds) for index, title, _, seconds in decoded.prints]
    return DecodedTrack(decoded.segments, decoded.waves, bad, decoded.error, decoded.print_error,
                        decoded.seconds, decoded.cpu_seconds)


def decode_all(tracks: list[Track], fingerprinter: TrackFingerprinter, worker=decode_track) -> None:
    decoder = DecodeAhead(22050, 1, 2, lambda *_: None, fingerprinter, worker=worker)
    for _ in decoder.batches([("00", t) for t in tracks]):
        pass


def readable_tracks(sample_library) -> list[Track]:
    tracks = [t for t in NavidromeLibrary(sample_library.db_path).tracks() if t.path.suffix == ".flac"]
    return tracks[:2]


def test_an_error_storing_a_fingerprint_is_recorded_with_the_track(sample_library, tmp_path: Path) -> None:
    failures = FailureLog(tmp_path / "failures.sqlite")
    fingerprinter = TrackFingerprinter(FingerprintStore(tmp_path / "fingerprints.sqlite"), failures)
    tracks = readable_tracks(sample_library)
    decode_all(tracks, fingerprinter, worker=garbled_prints)
    recorded = failures.failed(FINGERPRINT_FAILURES)
    assert set(recorded) == {t.id for t in tracks}
    assert all(reason.startswith("fingerprint not stored: ") for reason in recorded.values()), recorded
    # Fixed: the next decode stores them and the records are cleared.
    decode_all(tracks, fingerprinter)
    assert failures.failed(FINGERPRINT_FAILURES) == {}
    assert set(fingerprinter.store.versions(t.id for t in tracks)) == {t.id for t in tracks}


def test_a_locked_fingerprint_database_is_recorded_not_only_logged(sample_library, tmp_path: Path,
                                                                   monkeypatch) -> None:
    import sqlite3

    from navembed_pipeline.lib.duplicates import fingerprint_store

    failures = FailureLog(tmp_path / "failures.sqlite")
    db = tmp_path / "fingerprints.sqlite"
    fingerprinter = TrackFingerprinter(FingerprintStore(db), failures)
    track = readable_tracks(sample_library)[0]
    assert fingerprinter.wants(track)  # the database is created and readable
    decoded = decode_track(track, 11025, True)
    assert decoded.prints
    monkeypatch.setattr(fingerprint_store, "BUSY_TIMEOUT_S", 0.2)  # do not wait 30 s for the lock below
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database for writing
    try:
        fingerprinter.record(track, decoded.prints, decoded.print_error)
    finally:
        holder.close()
    (reason,) = failures.failed(FINGERPRINT_FAILURES).values()
    assert "fingerprints.sqlite" in reason and "locked" in reason, reason
