"""The pipeline's side of fingerprints: library tracks, once per file version, from waves already decoded.

The engine's decode workers fingerprint the waves they decode for the model (``worker.decode_track``,
no second decode) and the engine ``record``s the result; tracks a run skips because their vectors are
current but that have no fingerprint yet (a library embedded before fingerprints existed) are decoded
once by ``backfill``. A library track that matches an
upload gets a duplicate edge to it in the store: that edge is the link between the upload and the
track Navidrome later scanned.
"""

import logging
from collections.abc import Sequence

from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.engine.worker import Prints, decode_track
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.library.upload_ids import is_upload_id

LOGGER = logging.getLogger("navembed.fingerprints")
BACKFILL_RATE = 11025  # Chromaprint's own working rate: the cheapest decode for it
FINGERPRINT_FAILURES = "fingerprint"  # the failure log's key for tracks whose fingerprint could not be stored


class TrackFingerprinter:
    """Keeps the fingerprints of library tracks current; never fails a track's embedding, but every
    fingerprint it cannot compute or store is recorded in ``failures`` (key ``FINGERPRINT_FAILURES``)
    with the reason, whatever the error."""

    def __init__(self, store: FingerprintStore, failures: FailureLog | None = None) -> None:
        self.store = store
        self.failures = failures

    def wants(self, track: Track) -> bool:
        """Whether ``track``'s current file version has no fingerprint yet."""
        try:
            return self.store.versions([track.id]).get(track.id) != track_fingerprint(track)
        except NavembedError as exc:
            LOGGER.warning("fingerprint database unavailable: %s", exc)
            return False

    def record(self, track: Track, prints: Prints | None, print_error: str | None) -> None:
        """Store what ``decode_track`` computed for ``track``: its fingerprints, or why there are none."""
        try:
            if prints is not None:
                self.save(track, prints)
            elif print_error is not None:
                self.failed(track, print_error)
        except Exception as exc:  # noqa: BLE001 - any error is recorded with the track, never dropped
            self.failed(track, f"{type(exc).__name__}: {exc}")

    def failed(self, track: Track, reason: str) -> None:
        """Log and record (in the failure log) why ``track`` has no fingerprint."""
        LOGGER.warning("no fingerprint for %s (%s): %s", track.display_name, track.path, reason)
        if self.failures is not None:
            try:
                self.failures.record(FINGERPRINT_FAILURES, [(track.id, f"fingerprint not stored: {reason}")])
            except NavembedError as exc:
                LOGGER.error("cannot record the fingerprint failure of %s: %s", track.display_name, exc)

    def save(self, track: Track, prints: Prints) -> None:
        """Store ``track``'s fingerprints (one per segment, computed elsewhere) and log what they link to."""
        try:
            linked = self.store.put(track.id, track_fingerprint(track), list(prints))
        except NavembedError as exc:
            self.failed(track, str(exc))
            return
        if self.failures is not None:
            self.failures.clear(FINGERPRINT_FAILURES, [track.id])
        for duplicate in linked:
            if is_upload_id(duplicate.owner):
                LOGGER.info("%s is the upload %s (%s), fingerprint score %.3f", track.display_name,
                            duplicate.owner, duplicate.name, duplicate.match.score)

    def forget(self, track_ids: Sequence[str]) -> None:
        """Drop the fingerprints (and any fingerprint failure) of tracks whose vectors a run deleted: their
        row is gone from Navidrome or their file stayed missing past the grace period (the deletion guard's
        rule); a missing file within its grace period keeps its fingerprint as it keeps its vectors."""
        try:
            for track_id in track_ids:
                self.store.forget(track_id)
            if self.failures is not None:
                self.failures.clear(FINGERPRINT_FAILURES, track_ids)
        except NavembedError as exc:
            LOGGER.error("cannot forget the fingerprints of %d deleted track(s): %s", len(track_ids), exc)

    def backfill(self, tracks: Sequence[Track]) -> int:
        """Fingerprint the ``tracks`` that have none for their current file; returns how many were done."""
        try:
            known = self.store.versions([t.id for t in tracks])
        except NavembedError as exc:
            LOGGER.warning("fingerprint database unavailable: %s", exc)
            return 0
        done = 0
        for track in tracks:
            if known.get(track.id) == track_fingerprint(track):
                continue
            decoded = decode_track(track, BACKFILL_RATE, fingerprint=True)
            if decoded.error is not None:
                LOGGER.warning("cannot decode %s for its fingerprint: %s", track.display_name, decoded.error)
                continue
            self.record(track, decoded.prints, decoded.print_error)
            done += 1
        return done
