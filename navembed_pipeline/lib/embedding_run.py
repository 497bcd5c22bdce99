"""The embedding engine: bucket by bucket, skip what is current, decode ahead, embed, upsert.

Plain Python (no Dagster): the asset drives it and turns its events into materializations and
progress log lines; benchmarks and the CLI can drive it directly. Events come out as a stream:
``Progress`` at most every ``progress_interval`` seconds and a ``BucketReport`` as each bucket
finishes. Unreadable audio is recorded as a failed track and the run goes on; a systemic fault
(store down, model cannot load) propagates at once.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from navembed_pipeline.lib.audio import load_audio
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.errors import ModelLoadError, NavembedError
from navembed_pipeline.lib.models.base import EmbeddingModel
from navembed_pipeline.lib.navidrome import Track
from navembed_pipeline.lib.run_plan import PlanSummary, summarize_plan
from navembed_pipeline.lib.runs import Progress
from navembed_pipeline.lib.segments import TrackSegment, segments_for, track_fingerprint
from navembed_pipeline.lib.store import StoredInfo, VectorRow, VectorStore
from navembed_pipeline.lib.track_fingerprints import TrackFingerprinter
from navembed_pipeline.lib.upload_ids import is_upload_id

LOGGER = logging.getLogger("navembed.run")
FAILURE_SAMPLE = 10
# Where a run's time goes: store reads and deletes before embedding; audio decoding (summed over the
# decode threads, overlapping the rest); the embedding thread waiting for decoded audio; the model's
# forward passes; pooling window features into vectors; writes to the store (vectors and failures).
STAGES = ("plan", "decode", "decode_wait", "model", "enrich", "write")
# No ETA before this many tracks have finished: the first ones carry the model's load time.
MIN_TRACKS_FOR_ETA = 3
# The model failing on this many tracks in a row, with none embedded in between, is a systemic fault
# (a broken device or model), not bad input: the run fails instead of recording the whole library.
MAX_CONSECUTIVE_MODEL_FAILURES = 16


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
    write_batch_tracks: int = 32  # tracks per upsert: fewer store round trips; a crash redoes at most these
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
    begun: float | None = None  # when its first track started embedding (buckets queue behind each other)


@dataclass(frozen=True)
class _Decoded:
    track: Track
    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray, ...] | None
    error: str | None


# What a model raises on input it cannot handle (torch raises RuntimeError, CUDA OOM included).
MODEL_ERRORS = (RuntimeError, ValueError, FloatingPointError)


class EmbeddingRun:
    """One model over a set of buckets of library tracks."""

    def __init__(self, *, model: EmbeddingModel, store: VectorStore, options: RunOptions,
                 clock: Callable[[], float] = time.monotonic, fingerprinter: TrackFingerprinter | None = None) -> None:
        self.model = model
        self.fingerprinter = fingerprinter  # fingerprints tracks from the waves decoded here
        self.store = store
        self.options = options
        self._clock = clock
        self._previously_failed: set[str] = set()
        self.plan: PlanSummary | None = None  # set when ``run`` has planned
        self._model_failures_in_a_row = 0
        self._stages: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._stages_lock = threading.Lock()

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent so far per stage (see ``STAGES``); decode is summed over its worker threads."""
        with self._stages_lock:
            return dict(self._stages)

    def _add_time(self, stage: str, seconds: float) -> None:
        with self._stages_lock:
            self._stages[stage] += seconds

    def run(self, tracks_by_bucket: dict[str, list[Track]], *,
            on_progress: Callable[[Progress], None] = lambda _: None,
            on_plan: Callable[[PlanSummary], None] = lambda _: None) -> Iterator[BucketReport]:
        """Process every bucket in key order, yielding one report per bucket as it finishes.

        ``on_progress`` is called from a heartbeat thread every ``progress_interval`` seconds while
        the run works (even inside a long model call), and once more at the end.
        """
        self.store.ensure_collection(self.model.name, self.model.vector_fields, collection=self.options.collection)
        planning = time.perf_counter()
        states, queue = self._plan(tracks_by_bucket)
        self._add_time("plan", time.perf_counter() - planning)
        on_plan(self.plan)  # before any track is decoded: what this run is about to do
        tally = _Tally(self.model.name, total=sum(len(t) for t in tracks_by_bucket.values()),
                       skipped=sum(s.skipped for s in states.values()), started=self._clock(), clock=self._clock)
        for state in states.values():
            if state.pending == 0:
                yield self._report(state)
        stop = threading.Event()
        heartbeat = threading.Thread(target=_beat, args=(stop, self.options.progress_interval, tally, on_progress),
                                     name="navembed-progress", daemon=True)
        heartbeat.start()
        try:
            buffer = _WriteBuffer()
            for batch in self._decoded_batches(queue):
                tally.current = batch[0][1].track.display_name
                for bucket, _ in batch:
                    if states[bucket].begun is None:
                        states[bucket].begun = self._clock()
                buffer.rows.extend(self._embed_batch(batch, states))
                buffer.tracks.extend(batch)
                # progress moves as tracks finish, before their write
                tally.count([self._has_failed(states[bucket], decoded.track.id) for bucket, decoded in batch])
                if len(buffer.tracks) >= self.options.write_batch_tracks:
                    yield from self._flush(buffer, states, tally)
            yield from self._flush(buffer, states, tally)
        finally:
            stop.set()
            heartbeat.join()
        on_progress(tally.snapshot())

    # ----- planning --------------------------------------------------------------------------
    def _plan(self, tracks_by_bucket: dict[str, list[Track]]) -> tuple[dict[str, "_BucketState"], list]:
        """Per track: embed, or skip because the stored vectors are current. Few store round trips."""
        opts = self.options
        all_tracks = [t for tracks in tracks_by_bucket.values() for t in tracks]
        stored = self.store.stored(self.model.name, [t.id for t in all_tracks], collection=opts.collection)
        failed = self.store.failed_tracks(self.model.name)
        self._previously_failed = set(failed)
        vanished = self._vanished(tracks_by_bucket)
        states: dict[str, _BucketState] = {}
        queue: list[tuple[str, Track]] = []
        for bucket, tracks in sorted(tracks_by_bucket.items()):
            todo = [t for t in tracks if self._wanted(t, stored.get(t.id), failed)]
            deleted = self._delete(vanished.get(bucket, []))
            states[bucket] = _BucketState(bucket, pending=len(todo), skipped=len(tracks) - len(todo),
                                          deleted=deleted, started=self._clock())
            queue.extend((bucket, t) for t in todo)
        self.plan = summarize_plan(model=self.model.name, version=self.model.version, tracks_by_bucket=tracks_by_bucket,
                                   stored=stored, failed=failed, to_embed=len(queue),
                                   vanished=sum(s.deleted for s in states.values()), force=opts.force,
                                   only_failed=opts.only_failed)
        return states, queue

    def _wanted(self, track: Track, info: StoredInfo | None, failed: dict[str, str]) -> bool:
        if self.options.only_failed:
            return track.id in failed
        current = (info is not None and info.fingerprint == track_fingerprint(track)
                   and info.model_version == self.model.version)
        return self.options.force or not current

    def _vanished(self, tracks_by_bucket: dict[str, list[Track]]) -> dict[str, list[str]]:
        """Stored tracks of the selected buckets that Navidrome no longer lists."""
        if self.options.only_failed:
            return {}
        present = {t.id for tracks in tracks_by_bucket.values() for t in tracks}
        gone: dict[str, list[str]] = {}
        for track_id, bucket in self.store.track_buckets(self.model.name, collection=self.options.collection).items():
            if bucket in tracks_by_bucket and track_id not in present and not is_upload_id(track_id):
                gone.setdefault(bucket, []).append(track_id)
        return gone

    def _delete(self, track_ids: list[str]) -> int:
        if track_ids:
            self.store.delete_tracks(self.model.name, sorted(track_ids), collection=self.options.collection)
            self.store.clear_failures(self.model.name, track_ids)
        return len(track_ids)

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
                waiting = time.perf_counter()
                decoded = [(bucket, future.result()) for bucket, future in batch]
                self._add_time("decode_wait", time.perf_counter() - waiting)
                yield decoded

    def _decode(self, track: Track) -> _Decoded:
        started = time.perf_counter()
        try:
            segments = tuple(segments_for(track))
            waves = tuple(load_audio(track.path, self.model.sample_rate, offset_seconds=s.offset_seconds,
                                     duration_seconds=s.duration_seconds) for s in segments)
            if self.fingerprinter is not None:
                self.fingerprinter.add(track, segments, waves, self.model.sample_rate)
            return _Decoded(track, segments, waves, None)
        except NavembedError as exc:
            return _Decoded(track, (), None, str(exc))
        finally:
            self._add_time("decode", time.perf_counter() - started)

    def _flush(self, buffer: "_WriteBuffer", states: dict[str, _BucketState], tally: "_Tally") -> Iterator[BucketReport]:
        """Write the buffered rows in one upsert, then count their tracks and report finished buckets."""
        if buffer.rows:
            writing = time.perf_counter()
            self.store.upsert(self.model.name, buffer.rows, collection=self.options.collection)
            recovered = sorted({row.track_id for row in buffer.rows} & self._previously_failed)
            if recovered:
                self.store.clear_failures(self.model.name, recovered)
            self._add_time("write", time.perf_counter() - writing)
        for bucket, decoded in buffer.tracks:
            state = states[bucket]
            state.pending -= 1
            failed = self._has_failed(state, decoded.track.id)
            tally.written += 0 if failed else 1
            state.embedded += 0 if failed else 1
            if state.pending == 0:
                yield self._report(state)
        buffer.rows.clear()
        buffer.tracks.clear()

    def _embed_batch(self, batch: list[tuple[str, _Decoded]], states: dict[str, _BucketState]) -> list[VectorRow]:
        """Vectors of the batch's readable tracks as rows; unreadable or failing tracks are recorded.

        A model error fails only the tracks it happens on: a failing batch is retried track by track,
        and a track that fails alone is recorded with the error. Only a model failing on track after
        track (``MAX_CONSECUTIVE_MODEL_FAILURES``) is treated as systemic and ends the run.
        """
        for bucket, decoded in batch:
            if decoded.error is not None:
                self._fail(states[bucket], decoded.track, decoded.error)
        ready = [(b, d) for b, d in batch if d.waves is not None]
        if not ready:
            return []
        try:
            rows = self._rows(ready)
        except MODEL_ERRORS as exc:
            if len(ready) == 1:
                self._model_failure(states[ready[0][0]], ready[0][1].track, exc)
                return []
            # One bad input must not sink its batch-mates: isolate it, then fail only that track.
            LOGGER.warning("batch of %d failed (%s); retrying track by track", len(ready), exc)
            rows = []
            for item in ready:
                try:
                    rows.extend(self._rows([item]))
                except MODEL_ERRORS as one:
                    self._model_failure(states[item[0]], item[1].track, one)
                else:
                    self._model_failures_in_a_row = 0
            return rows
        self._model_failures_in_a_row = 0
        return rows

    def _model_failure(self, state: _BucketState, track: Track, exc: BaseException) -> None:
        self._fail(state, track, f"model error: {type(exc).__name__}: {exc}")
        self._model_failures_in_a_row += 1
        if self._model_failures_in_a_row >= MAX_CONSECUTIVE_MODEL_FAILURES:
            raise ModelLoadError(f"model {self.model.name!r} failed on {self._model_failures_in_a_row} tracks in "
                                 f"a row (last: {type(exc).__name__}: {exc}); stopping the run — this looks like "
                                 "a broken model or device, not bad audio") from exc

    @staticmethod
    def _has_failed(state: _BucketState, track_id: str) -> bool:
        return any(f[0] == track_id for f in state.failures)

    def _rows(self, ready: list[tuple[str, _Decoded]]) -> list[VectorRow]:
        waves = [w for _, d in ready for w in d.waves or ()]
        timings: dict[str, float] = {}
        try:
            vectors = iter(self.model.embed(waves, timings=timings))
        finally:
            for stage, seconds in timings.items():
                self._add_time(stage, seconds)
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
        writing = time.perf_counter()
        self.store.record_failures(self.model.name, [(track.id, error)])
        self._add_time("write", time.perf_counter() - writing)

    def _report(self, state: _BucketState) -> BucketReport:
        failed = len(state.failures)
        return BucketReport(state.bucket, embedded=state.embedded, skipped=state.skipped, failed=failed, deleted=state.deleted,
                            seconds=round(self._clock() - (state.begun or state.started), 3),
                            failures=tuple(state.failures[:FAILURE_SAMPLE]))


class _Tally:
    """Run-wide counters, read by the heartbeat thread (ints: no lock needed for a snapshot).

    ``embedded``/``failed`` move as each track finishes embedding; ``written`` as its vectors are
    stored. The rate is measured from the end of the first batch on, so the model's load time (spent
    in it) does not drag the estimate down; before ``MIN_TRACKS_FOR_ETA`` tracks there is no ETA.
    """

    def __init__(self, model: str, *, total: int, skipped: int, started: float, clock: Callable[[], float]) -> None:
        self.model, self.total, self.skipped, self.started, self._clock = model, total, skipped, started, clock
        self.embedded = 0
        self.written = 0
        self.failed = 0
        self.current: str | None = None
        self._first: tuple[float, int] | None = None  # (time, tracks worked) when the first batch finished

    def count(self, failed: Sequence[bool]) -> None:
        """One finished batch: per track, whether it failed."""
        self.failed += sum(failed)
        self.embedded += len(failed) - sum(failed)
        if self._first is None:  # the rate is measured from the end of the first batch on
            self._first = (self._clock(), self.embedded + self.failed)

    def snapshot(self) -> Progress:
        processed = self.embedded + self.skipped + self.failed
        remaining = self.total - processed
        rate = self._rate()
        if remaining <= 0:
            eta: float | None = 0.0
        elif rate > 0 and self.embedded + self.failed >= MIN_TRACKS_FOR_ETA:
            eta = max(0.1, round(remaining / rate, 1))  # tracks remain: never report 0
        else:
            eta = None
        return Progress(self.model, self.total, processed, self.embedded, self.written, self.skipped, self.failed,
                        self.current, round(rate, 3), eta)

    def _rate(self) -> float:
        worked = self.embedded + self.failed
        if self._first is None:
            return 0.0
        now = self._clock()
        first_time, first_count = self._first
        if worked > first_count and now > first_time:
            return (worked - first_count) / (now - first_time)
        return worked / max(now - self.started, 1e-9)


def _beat(stop: threading.Event, interval: float, tally: _Tally, on_progress: Callable[[Progress], None]) -> None:
    on_progress(tally.snapshot())
    while not stop.wait(interval):
        on_progress(tally.snapshot())


@dataclass
class _WriteBuffer:
    """Rows embedded but not yet written, and the tracks they (or their failures) belong to."""

    rows: list[VectorRow] = field(default_factory=list)
    tracks: list[tuple[str, _Decoded]] = field(default_factory=list)


def group_by_bucket(tracks: Sequence[Track], buckets: Sequence[str] | None = None) -> dict[str, list[Track]]:
    """Library tracks grouped by bucket, restricted to ``buckets`` (every bucket listed is present)."""
    wanted = set(buckets) if buckets is not None else None
    grouped: dict[str, list[Track]] = {b: [] for b in (buckets or [])}
    for track in tracks:
        bucket = bucket_of(track.id)
        if wanted is None or bucket in wanted:
            grouped.setdefault(bucket, []).append(track)
    return grouped
