"""The pipeline's side of fingerprints: library tracks, once per file version, from waves already decoded.

The engine hands every track it decodes to ``TrackFingerprinter.add`` (no second decode); tracks a
run skips because their vectors are current but that have no fingerprint yet (a library embedded
before fingerprints existed) are decoded once by ``backfill``. A library track that matches an
upload gets a duplicate edge to it in the store: that edge is the link between the upload and the
track Navidrome later scanned.
"""

import logging
from collections.abc import Sequence

import numpy as np

from navembed_pipeline.lib.audio import load_audio
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.fingerprints import fingerprint_pcm
from navembed_pipeline.lib.navidrome import Track
from navembed_pipeline.lib.segments import TrackSegment, segments_for, track_fingerprint
from navembed_pipeline.lib.upload_ids import is_upload_id

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

    def add(self, track: Track, segments: Sequence[TrackSegment], waves: Sequence[np.ndarray],
            sample_rate: int) -> None:
        """Fingerprint ``track`` from its decoded ``waves`` (one per segment), unless already current."""
        if not self.wants(track):
            return
        try:
            prints = [(s.index, s.title, fingerprint_pcm(w, sample_rate)) for s, w in zip(segments, waves, strict=True)]
        except NavembedError as exc:
            self.failed(track, str(exc))
            return
        self.save(track, prints)

    def failed(self, track: Track, reason: str) -> None:
        LOGGER.warning("no fingerprint for %s (%s): %s", track.display_name, track.path, reason)

    def save(self, track: Track, prints: Sequence[tuple[int, str, np.ndarray]]) -> None:
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
            try:
                segments = segments_for(track)
                waves = [load_audio(track.path, BACKFILL_RATE, offset_seconds=s.offset_seconds,
                                    duration_seconds=s.duration_seconds) for s in segments]
            except NavembedError as exc:
                LOGGER.warning("cannot decode %s for its fingerprint: %s", track.display_name, exc)
                continue
            self.add(track, segments, waves, BACKFILL_RATE)
            done += 1
        return done
