"""A decode worker that dies on files named ``*crash*`` (as a decoder crashing on damaged audio would
take its process down); every other track is decoded normally. Module-level so worker processes can
import it."""

import os

from navembed_pipeline.lib.decode_worker import DecodedTrack, decode_track
from navembed_pipeline.lib.navidrome import Track


def dies_on_crash_files(track: Track, sample_rate: int, fingerprint: bool) -> DecodedTrack:
    if "crash" in track.path.name:
        os._exit(70)  # no exception, no cleanup: the process is simply gone
    return decode_track(track, sample_rate, fingerprint)
