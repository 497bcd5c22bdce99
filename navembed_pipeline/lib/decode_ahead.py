"""Decode ahead: worker threads decode the next tracks while the model embeds the current batch.

The second part of the engine (``embedding_run.py``). PyAV/FFmpeg release the GIL while they
decode, so ``workers`` threads keep up to ``2 × batch_tracks`` tracks decoded ahead of the model.
Each track is decoded once, to mono float32 at the model's rate (segments of a CUE album each by a
seek); a file that cannot be decoded comes back as a ``Decoded`` with its error, not as an exception.
Wall seconds spent decoding and the CPU seconds of the decode threads are reported to ``on_time``.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.audio import load_audio
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.navidrome import Track
from navembed_pipeline.lib.segments import TrackSegment, segments_for
from navembed_pipeline.lib.track_fingerprints import TrackFingerprinter


@dataclass(frozen=True)
class Decoded:
    """One track's decoded segments, or why it could not be decoded."""

    track: Track
    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray, ...] | None
    error: str | None


@dataclass(frozen=True)
class DecodeAhead:
    """Decodes a queue of (bucket, track) on ``workers`` threads, ``batch_tracks`` at a time, in order."""

    sample_rate: int
    workers: int
    batch_tracks: int
    on_time: Callable[[str, float], None]  # (stage, seconds): "decode", "decode_cpu", "decode_wait"
    fingerprinter: TrackFingerprinter | None = None  # fingerprints tracks from the waves decoded here

    def batches(self, queue: list[tuple[str, Track]]) -> Iterator[list[tuple[str, Decoded]]]:
        """Batches of decoded tracks in queue order; the next ones decode while the caller works."""
        size = self.batch_tracks
        lookahead = max(2 * size, self.workers)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="navembed-decode") as pool:
            futures: list[tuple[str, Future[Decoded]]] = []
            position = 0
            while position < len(queue) or futures:
                while position < len(queue) and len(futures) < lookahead:
                    bucket, track = queue[position]
                    futures.append((bucket, pool.submit(self.decode, track)))
                    position += 1
                batch, futures = futures[:size], futures[size:]
                waiting = time.perf_counter()
                decoded = [(bucket, future.result()) for bucket, future in batch]
                self.on_time("decode_wait", time.perf_counter() - waiting)
                yield decoded

    def decode(self, track: Track) -> Decoded:
        """``track``'s segments at ``sample_rate``; an unreadable file gives its error instead."""
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            segments = tuple(segments_for(track))
            waves = tuple(load_audio(track.path, self.sample_rate, offset_seconds=s.offset_seconds,
                                     duration_seconds=s.duration_seconds) for s in segments)
            if self.fingerprinter is not None:
                self.fingerprinter.add(track, segments, waves, self.sample_rate)
            return Decoded(track, segments, waves, None)
        except NavembedError as exc:
            return Decoded(track, (), None, str(exc))
        finally:
            self.on_time("decode", time.perf_counter() - started)
            self.on_time("decode_cpu", time.thread_time() - cpu)
