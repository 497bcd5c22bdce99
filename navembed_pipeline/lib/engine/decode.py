"""Decode ahead: workers decode the next tracks while the model embeds the current batch.

The second part of the engine (``run.py``). ``workers`` threads, or worker processes
(``processes=True``, see ``worker.py`` for why), keep up to ``2 × batch_tracks`` tracks decoded
ahead of the model; a batch is the next track in order and those after it already decoded. Each track
is decoded once, to mono float32 at the model's rate (segments of a CUE album each by a seek), and
fingerprinted from those waves when its file version has no fingerprint yet (stored on a thread of
its own, off the model's);
a file that cannot be decoded comes back as a ``Decoded`` with its error, not as an exception. A worker
process that dies (a decoder crash on a damaged file) costs only the track it was on: that track is
tried once more in a fresh worker and, if it kills that one too, recorded as failed. Wall and CPU
seconds of decoding are reported to ``on_time``.

Several models (``feeds``): each track is still decoded once, at the highest rate among the models that
want it (``wanted``), and each of those models gets its share (``Decoded.for_model``): the waves at its
rate, or the vectors a worker process embedded for it.

Excerpts (a model's ``ExcerptPlan``, dsp's: ``lib/library/excerpts.py``): a long track that no fingerprint
and no other model needs whole is decoded as the excerpts its model analyses, each by a seek
(``worker.decode_track``); otherwise it is decoded whole and the model cuts the same excerpts from it.
"""

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from navembed_pipeline.lib.engine.fingerprinter import TrackFingerprinter
from navembed_pipeline.lib.engine.pool import WorkerDied, WorkerPool
from navembed_pipeline.lib.engine.worker import (DecodedTrack, ModelFeed, decode_and_embed, decode_for_models,
                                                 decode_in_process, decode_track, discard, run_worker, spool_folder,
                                                 unspool)
from navembed_pipeline.lib.library.excerpts import ExcerptPlan, ExcerptWave
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import TrackSegment


@dataclass(frozen=True)
class Decoded:
    """One track's decoded segments, or why it could not be decoded; embedded already when the worker
    processes embed (``vectors`` one per segment, or ``model_error``)."""

    track: Track
    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray | ExcerptWave, ...] | None
    error: str | None
    vectors: tuple | None = None
    model_error: str | None = None
    feeds: dict[str, "Decoded"] | None = None  # decoded once for several models: each one's share
    model_unloadable: bool = False  # ``model_error`` is the model failing to load in the worker

    @property
    def readable(self) -> bool:
        return self.waves is not None or self.vectors is not None or self.model_error is not None

    def for_model(self, name: str) -> "Decoded":
        """What model ``name`` embeds: its share of a decode for several models, else this (an error too)."""
        return self if self.feeds is None else self.feeds[name]


@dataclass
class DecodeAhead:
    """Decodes a queue of (bucket, track) on ``workers`` threads or processes, ``batch_tracks`` at a time, in order."""

    sample_rate: int
    workers: int
    batch_tracks: int
    on_time: Callable[[str, float], None]  # (stage, seconds): "decode", "decode_cpu", "decode_wait"
    fingerprinter: TrackFingerprinter | None = None  # fingerprints tracks from the waves decoded here
    processes: bool = False
    embed_with: tuple[str, object] | None = None  # (model name, options): worker processes embed too
    worker: Callable[..., DecodedTrack] = decode_track  # module-level, for processes; (track, rate, print[, plan])
    feeds: tuple[ModelFeed, ...] = ()  # several models from one decode (``sample_rate`` and ``embed_with`` unused)
    wanted: Mapping[str, tuple[str, ...]] | None = None  # track id -> the feeds it is decoded for (None: all)
    excerpts: ExcerptPlan | None = None  # the model's excerpt plan (with ``feeds``: that of each feed, see _plan)
    feed_excerpts: Mapping[str, ExcerptPlan | None] | None = None  # with ``feeds``: each feed's plan
    _pool: ThreadPoolExecutor | WorkerPool | None = field(default=None, init=False, repr=False)
    _spool: str = field(default="", init=False, repr=False)  # where worker processes leave decoded waves
    _saver: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _saves: list[tuple[Track, Future[None]]] = field(default_factory=list, init=False, repr=False)

    def batches(self, queue: list[tuple[str, Track]]) -> Iterator[list[tuple[str, Decoded]]]:
        """Batches of decoded tracks in queue order; the next ones decode while the caller works."""
        size = self.batch_tracks
        lookahead = max(2 * size, self.workers)
        self._pool = self._new_pool(self.workers)
        if self.processes:
            self._spool = spool_folder(os.getpid())
        if self.fingerprinter is not None:  # the store's duplicate search: off the model's thread
            self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="navembed-fingerprints")
        futures: list[tuple[str, Track, Future[DecodedTrack]]] = []
        try:
            position = 0
            while position < len(queue) or futures:
                while position < len(queue) and len(futures) < lookahead:
                    bucket, track = queue[position]
                    futures.append((bucket, track, self._submit(track)))
                    position += 1
                # The next track in order, and those after it already decoded (up to a batch): the model
                # starts as soon as one track is ready instead of waiting for a whole batch.
                ready = 1
                while ready < min(size, len(futures)) and futures[ready][2].done():
                    ready += 1
                batch, futures = futures[:ready], futures[ready:]
                waiting = time.perf_counter()
                decoded = [(bucket, self._finish(track, future)) for bucket, track, future in batch]
                self.on_time("decode_wait", time.perf_counter() - waiting)
                yield decoded
        finally:
            self._pool.shutdown(cancel_futures=True)  # waits for the running ones
            self._pool = None
            if self._saver is not None:
                self._saver.shutdown(wait=True)
                self._saver = None
                self._check_saves()
            for _, _, future in futures:  # a run that stopped early: drop what was decoded for it
                if future.done() and not future.cancelled() and future.exception() is None:
                    discard(future.result())

    def _check_saves(self, *, done_only: bool = False) -> None:
        """Read the fingerprint saves' outcomes: an error escaping ``record`` is recorded for its track."""
        pending = []
        for track, future in self._saves:
            if done_only and not future.done():
                pending.append((track, future))
                continue
            error = future.exception() if not future.cancelled() else None
            if error is not None and self.fingerprinter is not None:
                self.fingerprinter.failed(track, f"{type(error).__name__}: {error}")
        self._saves = pending

    # ----- internals ------------------------------------------------------------------------
    def _new_pool(self, workers: int) -> ThreadPoolExecutor | WorkerPool:
        if self.processes:
            return WorkerPool(workers, name="navembed-decode")
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="navembed-decode")

    def _submit(self, track: Track) -> Future[DecodedTrack]:
        wants_print = self._wants_print(track)
        if self.feeds:
            names = None if self.wanted is None else set(self.wanted[track.id])
            feeds = tuple(f for f in self.feeds if names is None or f.name in names)
            return self._pool.submit(decode_for_models, self.worker, track, wants_print, feeds,
                                     self._spool if self.processes else None, os.getpid(), self._plan(feeds))
        if not self.processes:
            return self._pool.submit(run_worker, self.worker, track, self.sample_rate, wants_print, self.excerpts)
        if self.embed_with is not None:
            return self._pool.submit(decode_and_embed, self.worker, track, self.sample_rate, wants_print,
                                     *self.embed_with, self.excerpts)
        return self._pool.submit(decode_in_process, self.worker, track, self.sample_rate, wants_print,
                                 self._spool, os.getpid(), self.excerpts)

    def _plan(self, feeds: tuple[ModelFeed, ...]) -> ExcerptPlan | None:
        """The excerpt plan a track decoded for ``feeds`` may be decoded by: the one they all share, if any."""
        plans = {(self.feed_excerpts or {}).get(f.name) for f in feeds}
        return plans.pop() if len(plans) == 1 else None

    def _wants_print(self, track: Track) -> bool:
        return self.fingerprinter is not None and self.fingerprinter.wants(track)

    def _finish(self, track: Track, future: Future[DecodedTrack]) -> Decoded:
        try:
            result = unspool(future.result())
        except WorkerDied:  # once more, in a fresh worker: a second death is the track's own doing
            try:
                result = unspool(self._submit(track).result())
            except WorkerDied as exc:
                result = DecodedTrack((), None, None, f"{track.path}: the decoder process died on this file "
                                      f"(a crash in FFmpeg on damaged audio?): {exc}", None, 0.0, 0.0)
        self.on_time("decode", result.seconds)
        self.on_time("decode_cpu", result.cpu_seconds)
        for share in (result, *(result.feeds or {}).values()):
            for stage, seconds in share.model_seconds.items():  # embedded in the worker
                self.on_time(stage, seconds)
                if stage == "model_cpu":
                    self.on_time("worker_model_cpu", seconds)
        if self._saver is not None:
            self._saves.append((track, self._saver.submit(self.fingerprinter.record, track, result.prints,
                                                          result.print_error)))
            self._check_saves(done_only=True)
        feeds = None if result.feeds is None else {name: _decoded(track, share) for name, share in result.feeds.items()}
        return dataclasses.replace(_decoded(track, result), feeds=feeds)


def _decoded(track: Track, result: DecodedTrack) -> Decoded:
    return Decoded(track, result.segments, result.waves, result.error, result.vectors, result.model_error,
                   model_unloadable=result.model_unloadable)
