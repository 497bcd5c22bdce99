"""The embedding engine: bucket by bucket, skip what is current, decode ahead, embed, upsert.

Plain Python (no Dagster): the asset drives it and turns its events into materializations and
progress log lines; benchmarks and the CLI can drive it directly. Events come out as a stream:
``Progress`` at most every ``progress_interval`` seconds and a ``BucketReport`` as each bucket
finishes. Unreadable audio is recorded as a failed track and the run goes on; a systemic fault
(store down, model cannot load) propagates at once.
"""

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from navembed_pipeline.lib.audio import load_audio
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.models.base import EmbeddingModel
from navembed_pipeline.lib.navidrome import Track
from navembed_pipeline.lib.segments import TrackSegment, segments_for, track_fingerprint
from navembed_pipeline.lib.store import VectorRow, VectorStore

LOGGER = logging.getLogger("navembed.run")
FAILURE_SAMPLE = 10


@dataclass(frozen=True)
class Progress:
    """A snapshot of the run so far (tracks, not segments)."""

    model: str
    total: int
    processed: int
    embedded: int
    skipped: int
    failed: int
    current_track: str | None
    tracks_per_second: float
    eta_seconds: float | None


@dataclass(frozen=True)
class BucketReport:
    """What happened to one bucket."""

    bucket: str
    embedded: int
    skipped: int
    failed: int
    deleted: int
    seconds: float
    failures: tuple[tuple[str, str, str], ...] = ()  # (track id, "Artist - Title", error)

    @property
    def tracks_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RunOptions:
    """How one run treats what is already stored."""

    force: bool = False
    only_failed: bool = False
    collection: str | None = None  # write here instead of the live collection (safe rebuild)
    decode_workers: int = 2
    batch_tracks: int = 4
    progress_interval: float = 1.0


@dataclass
class _BucketState:
    bucket: str
    pending: int
    skipped: int
    deleted: int
    started: float
    embedded: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Decoded:
    track: Track
    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray, ...] | None
    error: str | None


class EmbeddingRun:
    """One model over a set of buckets of library tracks."""

    def __init__(self, *, model: EmbeddingModel, store: VectorStore, options: RunOptions,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.store = store
        self.options = options
        self._clock = clock

    def run(self, tracks_by_bucket: dict[str, list[Track]]) -> Iterator[Progress | BucketReport]:
        """Process every bucket in key order, yielding progress and one report per bucket."""
        self.store.ensure_collection(self.model.name, self.model.vector_fields, collection=self.options.collection)
        plans = {b: self._plan(b, tracks) for b, tracks in sorted(tracks_by_bucket.items())}
        total = sum(len(t) for t in tracks_by_bucket.values())
        counters = {"embedded": 0, "skipped": sum(p[1].skipped for p in plans.values()), "failed": 0}
        started = self._clock()
        last_progress = float("-inf")
        current: str | None = None

        def progress() -> Progress:
            processed = counters["embedded"] + counters["skipped"] + counters["failed"]
            elapsed = max(self._clock() - started, 1e-9)
            worked = counters["embedded"] + counters["failed"]
            rate = worked / elapsed
            remaining = total - processed
            eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
            return Progress(self.model.name, total, processed, counters["embedded"], counters["skipped"],
                            counters["failed"], current, round(rate, 3), eta)

        states = {b: plan[1] for b, plan in plans.items()}
        for bucket, state in states.items():
            if state.pending == 0:
                yield self._report(state)
        queue = [(b, t) for b, (todo, _) in plans.items() for t in todo]
        yield progress()
        for batch in self._decoded_batches(queue):
            self._embed_batch(batch, states)
            for bucket, decoded in batch:
                state = states[bucket]
                state.pending -= 1
                current = decoded.track.display_name
                if any(f[0] == decoded.track.id for f in state.failures):
                    counters["failed"] += 1
                else:
                    counters["embedded"] += 1
                    state.embedded += 1
                if state.pending == 0:
                    yield self._report(state)
            if self._clock() - last_progress >= self.options.progress_interval:
                last_progress = self._clock()
                yield progress()
        yield progress()

    # ----- planning --------------------------------------------------------------------------
    def _plan(self, bucket: str, tracks: list[Track]) -> tuple[list[Track], _BucketState]:
        """Decide per track: embed, or skip because the stored vectors are current."""
        opts = self.options
        ids = [t.id for t in tracks]
        stored = self.store.stored(self.model.name, ids, collection=opts.collection)
        failed = self.store.failed_tracks(self.model.name) if opts.only_failed else {}
        deleted = self._delete_vanished(bucket, set(ids))
        todo = []
        for track in tracks:
            info = stored.get(track.id)
            current = (info is not None and info.fingerprint == track_fingerprint(track)
                       and info.model_version == self.model.version)
            if opts.only_failed:
                wanted = track.id in failed
            else:
                wanted = opts.force or not current
            if wanted:
                todo.append(track)
        state = _BucketState(bucket, pending=len(todo), skipped=len(tracks) - len(todo),
                             deleted=deleted, started=self._clock())
        return todo, state

    def _delete_vanished(self, bucket: str, present: set[str]) -> int:
        """Remove vectors of tracks in this bucket that Navidrome no longer lists."""
        if self.options.only_failed:
            return 0
        stored_ids = self.store.track_ids_in_bucket(self.model.name, bucket, collection=self.options.collection)
        vanished = sorted(stored_ids - present)
        if vanished:
            self.store.delete_tracks(self.model.name, vanished, collection=self.options.collection)
            self.store.clear_failures(self.model.name, vanished)
        return len(vanished)

    # ----- decoding (threads) and embedding ------------------------------------------------
    def _decoded_batches(self, queue: list[tuple[str, Track]]) -> Iterator[list[tuple[str, _Decoded]]]:
        """Decode ahead on worker threads while the caller embeds the previous batch."""
        size = self.options.batch_tracks
        lookahead = max(2 * size, self.options.decode_workers)
        with ThreadPoolExecutor(max_workers=self.options.decode_workers,
                                thread_name_prefix="navembed-decode") as pool:
            futures: list[tuple[str, Future[_Decoded]]] = []
            position = 0
            while position < len(queue) or futures:
                while position < len(queue) and len(futures) < lookahead:
                    bucket, track = queue[position]
                    futures.append((bucket, pool.submit(self._decode, track)))
                    position += 1
                batch, futures = futures[:size], futures[size:]
                yield [(bucket, future.result()) for bucket, future in batch]

    def _decode(self, track: Track) -> _Decoded:
        try:
            segments = tuple(segments_for(track))
            waves = tuple(load_audio(track.path, self.model.sample_rate, offset_seconds=s.offset_seconds,
                                     duration_seconds=s.duration_seconds) for s in segments)
            return _Decoded(track, segments, waves, None)
        except NavembedError as exc:
            return _Decoded(track, (), None, str(exc))

    def _embed_batch(self, batch: list[tuple[str, _Decoded]], states: dict[str, _BucketState]) -> None:
        for bucket, decoded in batch:
            if decoded.error is not None:
                self._fail(states[bucket], decoded.track, decoded.error)
        ready = [(b, d) for b, d in batch if d.waves is not None]
        if not ready:
            return
        try:
            rows = self._rows(ready)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            if len(ready) == 1:
                raise
            # One bad input must not sink its batch-mates: isolate it, then fail only that track.
            LOGGER.warning("batch of %d failed (%s); retrying track by track", len(ready), exc)
            rows = []
            for item in ready:
                try:
                    rows.extend(self._rows([item]))
                except (RuntimeError, ValueError, FloatingPointError) as one:
                    self._fail(states[item[0]], item[1].track, f"model error: {one}")
            if len(rows) == 0:
                raise
        self.store.upsert(self.model.name, rows, collection=self.options.collection)
        self.store.clear_failures(self.model.name, sorted({row.track_id for row in rows}))

    def _rows(self, ready: list[tuple[str, _Decoded]]) -> list[VectorRow]:
        waves = [w for _, d in ready for w in d.waves or ()]
        vectors = iter(self.model.embed(waves))
        rows = []
        for bucket, decoded in ready:
            fingerprint = track_fingerprint(decoded.track)
            for segment in decoded.segments:
                vector = next(vectors)
                if not all(np.isfinite(v).all() for v in vector.vectors.values()):
                    raise FloatingPointError(f"non-finite vector for {decoded.track.display_name}")
                rows.append(VectorRow(
                    track_id=decoded.track.id, segment=segment.index, name=segment.title,
                    offset_seconds=segment.offset_seconds, duration_seconds=segment.duration_seconds,
                    model_id=self.model.name, model_version=self.model.version, fingerprint=fingerprint,
                    bucket=bucket, vectors=vector.vectors))
        return rows

    def _fail(self, state: _BucketState, track: Track, error: str) -> None:
        LOGGER.warning("failed %s (%s): %s", track.display_name, track.path, error)
        state.failures.append((track.id, track.display_name, error))
        self.store.record_failures(self.model.name, [(track.id, error)])

    def _report(self, state: _BucketState) -> BucketReport:
        failed = len(state.failures)
        return BucketReport(state.bucket, embedded=state.embedded, skipped=state.skipped, failed=failed, deleted=state.deleted,
                            seconds=round(self._clock() - state.started, 3),
                            failures=tuple(state.failures[:FAILURE_SAMPLE]))


def group_by_bucket(tracks: Sequence[Track], buckets: Sequence[str] | None = None) -> dict[str, list[Track]]:
    """Library tracks grouped by bucket, restricted to ``buckets`` (every bucket listed is present)."""
    wanted = set(buckets) if buckets is not None else None
    grouped: dict[str, list[Track]] = {b: [] for b in (buckets or [])}
    for track in tracks:
        bucket = bucket_of(track.id)
        if wanted is None or bucket in wanted:
            grouped.setdefault(bucket, []).append(track)
    return grouped
