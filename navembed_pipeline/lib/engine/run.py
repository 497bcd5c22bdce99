"""The embedding engine: bucket by bucket, skip what is current, decode ahead, embed, upsert.

Plain Python (no Dagster): the asset drives it and turns its events into materializations and
progress log lines; benchmarks and the CLI can drive it directly. Events come out as a stream:
``Progress`` at most every ``progress_interval`` seconds and a ``BucketReport`` as each bucket
finishes. Unreadable audio is recorded as a failed track and the run goes on; a systemic fault
(store down, model cannot load) propagates at once.

Three parts, one module each: ``planner`` (what to embed, vanished tracks deleted),
``decode`` (worker threads decode the next tracks while the model works) and ``writer``
(batched upserts, failure records); this module embeds and keeps the books (``heartbeat``).

Several models in one run (``models=``, e.g. dsp + musicnn): each is planned, written, counted and
reported on its own (a ``ModelLane``; reports and progress lines name their model), while each track
is decoded once, at the highest rate among the models that want it, and fed to each of them.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.engine.decode import DecodeAhead, Decoded
from navembed_pipeline.lib.engine.fingerprinter import TrackFingerprinter
from navembed_pipeline.lib.engine.heartbeat import MIN_TRACKS_FOR_ETA, Heartbeat, Tally  # noqa: F401 (re-exported)
from navembed_pipeline.lib.engine.planner import BucketState, RunPlan, RunPlanner
from navembed_pipeline.lib.engine.zygote import warm_workers
from navembed_pipeline.lib.engine.summary import PlanSummary
from navembed_pipeline.lib.engine.worker import ModelFeed
from navembed_pipeline.lib.engine.writer import RunWriter, WriteBuffer
from navembed_pipeline.lib.errors import MODEL_ERRORS, ModelLoadError
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.models.base import EmbeddingModel
from navembed_pipeline.lib.runs import Progress
from navembed_pipeline.lib.store import VectorRow, VectorStore
from navembed_pipeline.lib.store.missing_tracks import DeletionGuard, DeletionVerdict

LOGGER = logging.getLogger("navembed.run")
FAILURE_SAMPLE = 10
# Where a run's time goes: store reads and deletes before embedding; audio decoding (summed over the
# decode threads, overlapping the rest); the embedding thread waiting for decoded audio; the model's
# forward passes; pooling window features into vectors; writes to the store (vectors and failures).
STAGES = ("plan", "decode", "decode_wait", "model", "enrich", "write")
# CPU seconds: of the decode threads (summed), and of the embedding thread (model, pooling, writes).
CPU_STAGES = ("decode_cpu", "model_cpu", "worker_model_cpu")  # the last: embedding inside worker processes
# The model failing on this many tracks in a row, with none embedded in between, is a systemic fault
# (a broken device or model), not bad input: the run fails instead of recording the whole library.
MAX_CONSECUTIVE_MODEL_FAILURES = 16
class WorkerModelError(RuntimeError):  # one of MODEL_ERRORS
    """The model failed on a track inside a worker process (the message: the original error's type and text)."""


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
    model: str = ""  # whose vectors (a run over several models reports each model's buckets)

    @property
    def tracks_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RunOptions:
    """How one run treats what is already stored, and how it shares the machine's cores."""

    force: bool = False
    only_failed: bool = False
    collection: str | None = None  # write here instead of the live collection (safe rebuild)
    decode_workers: int = 0  # 0: automatic (decode_workers_for)
    decode_processes: bool | None = None  # worker processes instead of threads; None: ``use_processes``
    batch_tracks: int = 4
    write_batch_tracks: int = 32  # tracks per upsert: fewer store round trips; a crash redoes at most these
    progress_interval: float = 5.0  # most seconds between progress lines; the first finished tracks at once
    model_threads: int | None = None  # torch CPU threads during the run; None: the model's ``cpu_threads``
    collections: tuple[tuple[str, str], ...] = ()  # (model, staging collection) per model, over ``collection``


# Runs with at least this many tracks to decode use worker processes (worker.py says why); a
# smaller run (a nightly top-up, an upload's library) is not worth starting fresh interpreters for.
PROCESSES_FROM_TRACKS = 16
# Where the process has warm workers (``pool.start_zygote``: a Dagster run worker forked from navembed's
# warm process), a worker starts in milliseconds with torch loaded: every run of two tracks or more uses them.
WARM_PROCESSES_FROM_TRACKS = 2


def use_processes(tracks: int) -> bool:
    """Whether a run decoding ``tracks`` tracks is worth worker processes (warm ones are nearly free)."""
    return tracks >= (WARM_PROCESSES_FROM_TRACKS if warm_workers() else PROCESSES_FROM_TRACKS)


def decode_workers_for(processes: bool, requested: int = 0) -> int:
    """``requested``, or automatically one worker process per core, or one thread per core but one (the
    model's thread needs a core, and more decode threads than that only trade the GIL back and forth)."""
    cores = os.cpu_count() or 2
    return requested or (cores if processes else max(1, cores - 1))


@dataclass(frozen=True)
class Utilisation:
    """How busy a run kept the machine: CPU seconds over wall seconds, per stage and for the process."""

    wall_seconds: float
    cpu_seconds: float  # the whole process (every thread) while the run worked
    decode_workers: int
    decode_processes: bool
    decode_cpu_seconds: float
    model_cpu_seconds: float

    @property
    def cores_busy(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def decode_busy(self) -> float:
        """Share of the decode threads' wall time spent on the CPU."""
        span = self.wall_seconds * self.decode_workers
        return self.decode_cpu_seconds / span if span > 0 else 0.0

    @property
    def model_busy(self) -> float:
        """Share of the wall time the embedding thread spent on the CPU (model, pooling, writes)."""
        return self.model_cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def decode_kind(self) -> str:
        return "processes" if self.decode_processes else "threads"

    def line(self) -> str:
        return (f"utilisation over {self.wall_seconds:.1f} s: decode {self.decode_kind} {self.decode_busy:.0%} of "
                f"{self.decode_workers}, embedding {self.model_busy:.0%} of a core, cores busy {self.cores_busy:.2f}")


@dataclass
class ModelLane:
    """One model's share of a run: its plan, writes, counters and failures in a row."""

    model: EmbeddingModel
    plan: RunPlan
    writer: RunWriter
    tally: Tally
    buffer: WriteBuffer = field(default_factory=WriteBuffer)
    failures_in_a_row: int = 0

    @property
    def states(self) -> dict[str, BucketState]:
        return self.plan.states


class EmbeddingRun:
    """One model (``model``), or several decoded once for all (``models``), over a set of buckets."""

    def __init__(self, *, model: EmbeddingModel | None = None, models: Sequence[EmbeddingModel] = (),
                 store: VectorStore, options: RunOptions, clock: Callable[[], float] = time.monotonic,
                 fingerprinter: TrackFingerprinter | None = None, guard: DeletionGuard | None = None) -> None:
        """``guard``: the deletion guard (missing files keep their vectors; no mass deletions); without
        one every stored track of the run's buckets that Navidrome does not list is deleted."""
        self.models = (model,) if model is not None else tuple(models)
        if not self.models or len({m.name for m in self.models}) != len(self.models):
            raise ValueError("an embedding run needs one model, or several different ones")
        self.model = self.models[0]
        self.guard = guard
        # Each model's deletion verdict, set when ``run`` has planned it (None: no guard).
        self.deletions_by_model: dict[str, DeletionVerdict | None] = {}
        self.fingerprinter = fingerprinter
        self.store = store
        self.options = options
        self._clock = clock
        self.plan: PlanSummary | None = None  # set when ``run`` has planned (the first model's)
        self.plans: dict[str, PlanSummary] = {}  # every model's
        self.utilisation: Utilisation | None = None  # set when ``run`` has finished
        self._stages: dict[str, float] = dict.fromkeys(STAGES + CPU_STAGES, 0.0)
        self._stages_lock = threading.Lock()

    @property
    def deletions(self) -> DeletionVerdict | None:
        """The first model's deletion verdict (a one-model run's), once planned."""
        return self.deletions_by_model.get(self.model.name)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent so far per stage (``STAGES``, then ``CPU_STAGES``); decode is summed over its threads."""
        with self._stages_lock:
            return dict(self._stages)

    def _add_time(self, stage: str, seconds: float) -> None:
        with self._stages_lock:
            self._stages[stage] += seconds

    def run(self, tracks_by_bucket: dict[str, list[Track]], *,
            on_progress: Callable[[Progress], None] = lambda _: None,
            on_plan: Callable[[PlanSummary], None] = lambda _: None,
            stop: threading.Event | None = None) -> Iterator[BucketReport]:
        """Process every bucket in key order, yielding one report per bucket (and model) as it finishes.

        ``on_progress`` is called from a heartbeat thread (one per model) every ``progress_interval``
        seconds while the run works (even inside a long model call), and once more at the end. Once
        ``stop`` is set the run writes what it has embedded and returns after the current batch.
        """
        opts = self.options
        began, cpu_began = time.perf_counter(), time.process_time()
        lanes = {m.name: self._lane(m, tracks_by_bucket) for m in self.models}
        self._add_time("plan", time.perf_counter() - began)
        for lane in lanes.values():
            on_plan(lane.plan.summary)  # before any track is decoded: what this run is about to do
        queue, wanted = self._queue(lanes)
        processes = use_processes(len(queue)) if opts.decode_processes is None else opts.decode_processes
        workers = decode_workers_for(processes, opts.decode_workers)
        decoder = self._decoder(workers, processes, wanted)
        for lane in lanes.values():
            for state in lane.states.values():
                if state.pending == 0:
                    yield self._report(lane, state)
        thread_cpu = time.thread_time()
        with ExitStack() as beats, self._model_threads():
            for lane in lanes.values():
                beats.enter_context(Heartbeat(lane.tally, opts.progress_interval, on_progress))
            for batch in decoder.batches(queue):
                if stop is not None and stop.is_set():
                    break
                for lane in lanes.values():
                    share = [(b, d.for_model(lane.model.name)) for b, d in batch
                             if lane.model.name in wanted[d.track.id]]
                    if share:
                        yield from self._embed_share(lane, share)
            for lane in lanes.values():
                yield from self._flush(lane)
        self._add_time("model_cpu", time.thread_time() - thread_cpu)
        seconds = self.stage_seconds
        cpu = time.process_time() - cpu_began  # + the worker processes':
        cpu += seconds["decode_cpu"] + seconds["worker_model_cpu"] if processes else 0.0
        self.utilisation = Utilisation(time.perf_counter() - began, cpu, workers, processes,
                                       seconds["decode_cpu"], seconds["model_cpu"])
        for lane in lanes.values():
            on_progress(lane.tally.snapshot())

    def _lane(self, model: EmbeddingModel, tracks_by_bucket: dict[str, list[Track]]) -> ModelLane:
        """Plan ``model``'s part of the run (its store reads and deletes) and set up its writer and counters."""
        opts = self.options
        collection = dict(opts.collections).get(model.name, opts.collection)
        self.store.ensure_collection(model.name, model.vector_fields, collection=collection)
        planner = RunPlanner(model, self.store, force=opts.force, only_failed=opts.only_failed, collection=collection,
                             guard=self.guard, forget=self.fingerprinter.forget if self.fingerprinter else None)
        plan = planner.plan(tracks_by_bucket, self._clock)
        self.deletions_by_model[model.name] = plan.deletions
        self.plans[model.name] = plan.summary
        self.plan = self.plan or plan.summary
        writer = RunWriter(model.name, self.store, collection, plan.previously_failed, self._add_time)
        tally = Tally(model.name, total=sum(len(t) for t in tracks_by_bucket.values()),
                      skipped=sum(s.skipped for s in plan.states.values()), started=self._clock(), clock=self._clock)
        return ModelLane(model, plan, writer, tally)

    @staticmethod
    def _queue(lanes: dict[str, ModelLane]) -> tuple[list[tuple[str, Track]], dict[str, tuple[str, ...]]]:
        """Every track some model wants, once, in bucket order; and per track id the models that want it."""
        wanted: dict[str, tuple[str, ...]] = {}
        entries: dict[str, tuple[str, Track]] = {}
        for name, lane in lanes.items():
            for bucket, track in lane.plan.queue:
                entries.setdefault(track.id, (bucket, track))
                wanted[track.id] = (*wanted.get(track.id, ()), name)
        order = {name: i for i, name in enumerate(lanes)}
        queue = sorted(entries.values(), key=lambda e: e[0])  # stable: each model's track order within a bucket
        return queue, {tid: tuple(sorted(names, key=order.__getitem__)) for tid, names in wanted.items()}

    def _decoder(self, workers: int, processes: bool, wanted: dict[str, tuple[str, ...]]) -> DecodeAhead:
        """Decode ahead for one model (at its rate), or for several (one decode per track, shared)."""
        opts = self.options
        if len(self.models) == 1:
            embed_with = (self.model.name, self.model.options) if processes and self._workers_can_embed(self.model) \
                else None
            return DecodeAhead(self.model.sample_rate, workers, opts.batch_tracks, self._add_time,
                               self.fingerprinter, processes=processes, embed_with=embed_with,
                               excerpts=self.model.excerpts)
        feeds = tuple(ModelFeed(m.name, m.sample_rate, m.options if processes and self._workers_can_embed(m) else None)
                      for m in self.models)
        return DecodeAhead(max(f.sample_rate for f in feeds), workers, opts.batch_tracks, self._add_time,
                           self.fingerprinter, processes=processes, feeds=feeds, wanted=wanted,
                           feed_excerpts={m.name: m.excerpts for m in self.models})

    def _embed_share(self, lane: ModelLane, batch: list[tuple[str, Decoded]]) -> Iterator[BucketReport]:
        """One model's part of a decoded batch: embed it, count it, write when a write batch is full."""
        lane.tally.current = batch[0][1].track.display_name
        for bucket, _ in batch:
            if lane.states[bucket].begun is None:
                lane.states[bucket].begun = self._clock()
        lane.buffer.rows.extend(self._embed_batch(lane, batch))
        lane.buffer.tracks.extend(batch)
        # progress moves as tracks finish, before their write
        lane.tally.count([lane.states[bucket].has_failed(decoded.track.id) for bucket, decoded in batch])
        if len(lane.buffer.tracks) >= self.options.write_batch_tracks:
            yield from self._flush(lane)

    @staticmethod
    def _workers_can_embed(model: EmbeddingModel) -> bool:
        """Whether worker processes can build this very model themselves (a registered CPU model that
        asks for it; not a subclass of one, which a worker's ``create_model`` would not build)."""
        from navembed_pipeline.lib.models import model_class  # noqa: PLC0415

        return model.embeds_in_workers and model.device.type == "cpu" and type(model) is model_class(model.name)

    @contextmanager
    def _model_threads(self) -> Iterator[None]:
        """torch's CPU threads for the run: a light model (dsp) runs best on one, the decode threads
        on the other cores (its many small ops otherwise spin idle threads: 40 % more CPU measured).
        Several models: the most any of them asks for, torch's default if one leaves it to torch."""
        wanted = [m.cpu_threads for m in self.models if m.device.type == "cpu"]
        count = self.options.model_threads or (None if not wanted or None in wanted else max(wanted))
        if count is None:
            yield
            return
        import torch  # noqa: PLC0415 (the models import it anyway; the engine itself does not need it)

        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _flush(self, lane: ModelLane) -> Iterator[BucketReport]:
        """Write the lane's buffered rows in one upsert, then count their tracks and report finished buckets."""
        for state, embedded in lane.writer.flush(lane.buffer, lane.states):
            state.pending -= 1
            lane.tally.written += embedded
            state.embedded += embedded
            if state.pending == 0:
                yield self._report(lane, state)

    def _embed_batch(self, lane: ModelLane, batch: list[tuple[str, Decoded]]) -> list[VectorRow]:
        """Vectors of the batch's readable tracks as rows; unreadable or failing tracks are recorded.

        A model error fails only the tracks it happens on: a failing batch is retried track by track,
        and a track that fails alone is recorded with the error. Only a model failing on track after
        track (``MAX_CONSECUTIVE_MODEL_FAILURES``) is treated as systemic and ends the run.
        """
        for bucket, decoded in batch:
            if decoded.error is not None:
                lane.writer.fail(lane.states[bucket], decoded.track, decoded.error)
        ready = [(b, d) for b, d in batch if d.readable]
        if not ready:
            return []
        try:
            rows = self._rows(lane.model, ready)
        except ModelLoadError as exc:  # e.g. damaged weights: every track of the batch is recorded, with the
            for bucket, decoded in ready:  # reason, before the run stops (failure table, check, /batch/progress)
                lane.writer.fail(lane.states[bucket], decoded.track, f"model could not load: {exc}")
            raise
        except MODEL_ERRORS as exc:
            if len(ready) == 1:
                self._model_failure(lane, ready[0][0], ready[0][1].track, exc)
                return []
            # One bad input must not sink its batch-mates: isolate it, then fail only that track.
            LOGGER.warning("%s: batch of %d failed (%s); retrying track by track", lane.model.name, len(ready), exc)
            rows = []
            for item in ready:
                try:
                    rows.extend(self._rows(lane.model, [item]))
                except MODEL_ERRORS as one:
                    self._model_failure(lane, item[0], item[1].track, one)
                else:
                    lane.failures_in_a_row = 0
            return rows
        lane.failures_in_a_row = 0
        return rows

    def _model_failure(self, lane: ModelLane, bucket: str, track: Track, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, WorkerModelError) else f"{type(exc).__name__}: {exc}"
        lane.writer.fail(lane.states[bucket], track, f"model error: {reason}")
        lane.failures_in_a_row += 1
        if lane.failures_in_a_row >= MAX_CONSECUTIVE_MODEL_FAILURES:
            raise ModelLoadError(f"model {lane.model.name!r} failed on {lane.failures_in_a_row} tracks in "
                                 f"a row (last: {type(exc).__name__}: {exc}); stopping the run — this looks like "
                                 "a broken model or device, not bad audio") from exc

    def _rows(self, model: EmbeddingModel, ready: list[tuple[str, Decoded]]) -> list[VectorRow]:
        if all(d.waves is None for _, d in ready):  # embedded by the worker processes
            unloadable = [d.model_error for _, d in ready if d.model_unloadable]
            if unloadable:  # the weights: every track of the batch is recorded and the run stops, as in-process
                raise ModelLoadError(unloadable[0])
            failed = [d.model_error for _, d in ready if d.model_error is not None]
            if failed:
                raise WorkerModelError(failed[0])
            vectors = iter([v for _, d in ready for v in d.vectors])
        else:
            waves = [w for _, d in ready for w in d.waves or ()]
            timings: dict[str, float] = {}
            try:
                vectors = iter(model.embed(waves, timings=timings))
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
                    model_id=model.name, model_version=model.version, fingerprint=fingerprint,
                    bucket=bucket, vectors=vector.vectors))
        return rows

    def _report(self, lane: ModelLane, state: BucketState) -> BucketReport:
        failed = len(state.failures)
        return BucketReport(state.bucket, embedded=state.embedded, skipped=state.skipped, failed=failed,
                            deleted=state.deleted, seconds=round(self._clock() - (state.begun or state.started), 3),
                            failures=tuple(state.failures[:FAILURE_SAMPLE]), model=lane.model.name)


def group_by_bucket(tracks: Sequence[Track], buckets: Sequence[str] | None = None) -> dict[str, list[Track]]:
    """Library tracks grouped by bucket, restricted to ``buckets`` (every bucket listed is present)."""
    wanted = set(buckets) if buckets is not None else None
    grouped: dict[str, list[Track]] = {b: [] for b in (buckets or [])}
    for track in tracks:
        bucket = bucket_of(track.id)
        if wanted is None or bucket in wanted:
            grouped.setdefault(bucket, []).append(track)
    return grouped
