"""Decode ahead: workers decode the next tracks while the model embeds the current batch.

The second part of the engine (``embedding_run.py``). ``workers`` threads, or worker processes
(``processes=True``, see ``decode_worker.py`` for why), keep up to ``2 × batch_tracks`` tracks decoded
ahead of the model. Each track is decoded once, to mono float32 at the model's rate (segments of a CUE
album each by a seek), and fingerprinted from those waves when its file version has no fingerprint yet;
a file that cannot be decoded comes back as a ``Decoded`` with its error, not as an exception. A worker
process that dies (a decoder crash on a damaged file) costs only the track it was on: the tracks it
took down with it are decoded again one at a time, each in a fresh process, and the one that kills
its process again is recorded as failed. Wall and CPU seconds of decoding are reported to ``on_time``.
"""

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from navembed_pipeline.lib.decode_worker import (
    DecodedTrack,
    decode_in_process,
    decode_track,
    discard,
    spool_folder,
    unspool,
)
from navembed_pipeline.lib.navidrome import Track
from navembed_pipeline.lib.segments import TrackSegment
from navembed_pipeline.lib.track_fingerprints import TrackFingerprinter

WORKER_MODULES = ["navembed_pipeline.lib.decode_worker"]  # what the worker processes import once, up front


@dataclass(frozen=True)
class Decoded:
    """One track's decoded segments, or why it could not be decoded."""

    track: Track
    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray, ...] | None
    error: str | None


@dataclass
class DecodeAhead:
    """Decodes a queue of (bucket, track) on ``workers`` threads or processes, ``batch_tracks`` at a time, in order."""

    sample_rate: int
    workers: int
    batch_tracks: int
    on_time: Callable[[str, float], None]  # (stage, seconds): "decode", "decode_cpu", "decode_wait"
    fingerprinter: TrackFingerprinter | None = None  # fingerprints tracks from the waves decoded here
    processes: bool = False
    worker: Callable[[Track, int, bool], DecodedTrack] = decode_track  # a module-level function (processes pickle it)
    _pool: Executor | None = field(default=None, init=False, repr=False)
    _spool: str = field(default="", init=False, repr=False)  # where worker processes leave decoded waves

    def batches(self, queue: list[tuple[str, Track]]) -> Iterator[list[tuple[str, Decoded]]]:
        """Batches of decoded tracks in queue order; the next ones decode while the caller works."""
        size = self.batch_tracks
        lookahead = max(2 * size, self.workers)
        self._pool = self._new_pool(self.workers)
        if self.processes:
            self._spool = spool_folder(os.getpid())
        futures: list[tuple[str, Track, Future[DecodedTrack]]] = []
        try:
            position = 0
            while position < len(queue) or futures:
                while position < len(queue) and len(futures) < lookahead:
                    bucket, track = queue[position]
                    futures.append((bucket, track, self._submit(track)))
                    position += 1
                batch, futures = futures[:size], futures[size:]
                waiting = time.perf_counter()
                decoded = [(bucket, self._finish(track, future)) for bucket, track, future in batch]
                self.on_time("decode_wait", time.perf_counter() - waiting)
                yield decoded
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            for _, _, future in futures:  # a run that stopped early: drop what was decoded for it
                if future.done() and not future.cancelled() and future.exception() is None:
                    discard(future.result())

    # ----- internals ------------------------------------------------------------------------
    def _new_pool(self, workers: int) -> Executor:
        if not self.processes:
            return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="navembed-decode")
        # forkserver, not fork: the run's process has threads (Dagster, the model, gRPC) a fork would copy mid-flight.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(WORKER_MODULES)
        return ProcessPoolExecutor(max_workers=workers, mp_context=context)

    def _submit(self, track: Track, pool: Executor | None = None) -> Future[DecodedTrack]:
        wants_print = self._wants_print(track)
        pool = pool or self._pool
        if not self.processes:
            return pool.submit(self.worker, track, self.sample_rate, wants_print)
        try:
            return pool.submit(decode_in_process, self.worker, track, self.sample_rate, wants_print,
                               self._spool, os.getpid())
        except BrokenProcessPool:  # a worker died since the last submission: carry on with a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool(self.workers)
            return self._submit(track)

    def _wants_print(self, track: Track) -> bool:
        return self.fingerprinter is not None and self.fingerprinter.wants(track)

    def _finish(self, track: Track, future: Future[DecodedTrack]) -> Decoded:
        try:
            result = unspool(future.result())
        except BrokenProcessPool:
            result = self._isolated(track)
        self.on_time("decode", result.seconds)
        self.on_time("decode_cpu", result.cpu_seconds)
        if self.fingerprinter is not None:
            if result.prints is not None:
                self.fingerprinter.save(track, result.prints)
            elif result.print_error is not None:
                self.fingerprinter.failed(track, result.print_error)
        return Decoded(track, result.segments, result.waves, result.error)

    def _isolated(self, track: Track) -> DecodedTrack:
        """``track`` again, alone in a fresh process: a second death there is the track's own doing."""
        with self._new_pool(1) as alone:
            try:
                return unspool(self._submit(track, alone).result())
            except BrokenProcessPool:
                return DecodedTrack((), None, None, f"{track.path}: the decoder process died on this file "
                                    "(a crash in FFmpeg on damaged audio?)", None, 0.0, 0.0)
