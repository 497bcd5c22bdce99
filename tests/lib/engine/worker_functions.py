"""Functions for worker-process tests (module-level, so worker processes can import them): a decode
worker that dies on files named ``*crash*`` (as a decoder crashing on damaged audio would take its
process down) and decodes every other track normally, and a few plain jobs."""

import os

from navembed_pipeline.lib.engine.worker import DecodedTrack, decode_track
from navembed_pipeline.lib.library.navidrome import Track


def dies_on_crash_files(track: Track, sample_rate: int, fingerprint: bool) -> DecodedTrack:
    if "crash" in track.path.name:
        os._exit(70)  # no exception, no cleanup: the process is simply gone
    return decode_track(track, sample_rate, fingerprint)


def square(x: int) -> int:
    return x * x


def refuse(reason: str) -> None:
    raise ValueError(reason)


def exit_now(code: int) -> None:
    os._exit(code)


def parent_and_torch() -> tuple[int, bool]:
    """The worker's parent pid, and whether torch was imported before this job."""
    import sys

    return os.getppid(), "torch" in sys.modules


def niceness() -> int:
    return os.nice(0)
