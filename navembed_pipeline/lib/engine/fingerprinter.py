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
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.library.upload_ids import is_upload_id

LOGGER = logging.getLogger("navembed.fingerprints")
BACKFILL_RATE = 11025  # Chromaprint's own working rate: the cheapest decode for it


class TrackFingerprinter:
    """Keeps the fingerprints of library tracks current; never fails a track (a warning at most)."""

    def __init__(self, store: FingerprintStore) -> None:
        self.store = store

    def wants(self, track: Track) -> bool:
        """Whether ``track``'s current file version has no fingerprint yet."""
        try:
            return self.store.versions([track.id]).get(track.id) != track_fingerprint(track)
        except NavembedError as exc:
            LOGGER.warning("fingerprint database unavailable: %s", exc)
            return False

    def record(self, track: Track, prints: Prints | None, print_error: str | None) -> None:
        """Store what ``decode_track`` computed for ``track``: its fingerprints, or why there are none."""
        if prints is not None:
            self.save(track, prints)
        elif print_error is not None:
            self.failed(track, print_error)

    def failed(self, track: Track, reason: str) -> None:
        LOGGER.warning("no fingerprint for %s (%s): %s", track.display_name, track.path, reason)

    def save(self, track: Track, prints: Prints) -> None:
        """Store ``track``'s fingerprints (one per segment, computed elsewhere) and log what they link to."""
        try:
            linked = self.store.put(track.id, track_fingerprint(track), list(prints))
        except NavembedError as exc:
            self.failed(track, str(exc))
            return
        for duplicate in linked:
            if is_upload_id(duplicate.owner):
                LOGGER.info("%s is the upload %s (%s), fingerprint score %.3f", track.display_name,
                            duplicate.owner, duplicate.name, duplicate.match.score)

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
