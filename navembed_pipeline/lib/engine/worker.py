"""What a decode worker process does for one track: decode its segments, fingerprint them, and for a
CPU model that asks for it (dsp, musicnn) embed them too, so that only vectors travel back. With several models
(``decode_for_models``) the track is decoded once, at the highest rate they need, and each model gets
its share: the waves resampled to its rate, or its vectors when it embeds in the worker.

Decode worker *processes* (``DecodeAhead`` with ``processes=True``) instead of threads: FFmpeg releases
the GIL while it decodes, but a track is tens of thousands of small decoder calls, and each one hands
the GIL to another thread and takes it back; two decode threads, the model thread and Dagster's thread
spend a good part of their time on those hand-overs. In a process of its own, a decoder never waits.

This module imports no torch, Dagster or store code (``decode_and_embed`` imports the model on first
use): a worker that only decodes starts in a fraction of a second.
"""

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.duplicates.chromaprint import PRINT_SECONDS, capped_print
from navembed_pipeline.lib.errors import MODEL_ERRORS, ModelLoadError, NavembedError
from navembed_pipeline.lib.library.audio import exact_length, load_audio, resample
from navembed_pipeline.lib.library.excerpts import ExcerptPlan, ExcerptWave
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import TrackSegment, segments_for
from navembed_pipeline.lib.pids import pid_alive

# (segment index, segment title, raw Chromaprint fingerprint of its first PRINT_SECONDS, seconds it stands for)
Prints = list[tuple[int, str, np.ndarray, float]]
HEAD_SECONDS = PRINT_SECONDS + 10.0  # decoded for a long track's print: its first PRINT_SECONDS, leading silence too


@dataclass(frozen=True)
class DecodedTrack:
    """A track's segments at the model's rate (or why not), their fingerprints if asked, the work it took."""

    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray | ExcerptWave, ...] | None  # (in transit from a worker process: SpooledWave too)
    prints: Prints | None
    error: str | None
    print_error: str | None
    seconds: float
    cpu_seconds: float
    # Embedded right in the worker (``decode_and_embed``): one TrackVectors per segment, or the model's error.
    vectors: tuple | None = None
    model_error: str | None = None
    model_unloadable: bool = False  # ``model_error`` is the model's weights failing to load (``ModelLoadError``)
    model_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # "model", "enrich", "model_cpu"
    # Decoded once for several models (``decode_for_models``): each model's share, by model name.
    feeds: dict[str, "DecodedTrack"] | None = None


@dataclass(frozen=True)
class ModelFeed:
    """One model fed from a shared decode: its name, its rate, and its options when worker processes
    embed with it (a CPU model that asks for it, as dsp and musicnn do); None: its waves travel back."""

    name: str
    sample_rate: int
    embed_options: object | None = None


@dataclass(frozen=True)
class SpooledWave:
    """A decoded wave a worker process left in a file for the parent (its raw float32 samples): several
    times cheaper than pickling tens of megabytes through the pool's pipe."""

    path: str
    samples: int

    def load(self) -> np.ndarray:
        """The samples (the file is removed)."""
        try:
            wave = np.fromfile(self.path, dtype=np.float32, count=self.samples)
        finally:
            os.unlink(self.path)
        if len(wave) != self.samples:
            raise OSError(f"{self.path}: {len(wave)} of {self.samples} samples")
        return wave


SPOOL_PREFIX = "navembed-wave-"
SPOOL_MIN_FREE = 1 << 30  # /dev/shm is used only with this much free (Docker's default is 64 MiB)


def spool_folder(owner: int) -> str:
    """Where worker processes leave waves for the process ``owner``: /dev/shm (memory) when it has room,
    else the temp dir. Waves an earlier process left behind (it was killed mid-run) are removed."""
    folder = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        usage = os.statvfs("/dev/shm")
        if usage.f_bavail * usage.f_frsize >= SPOOL_MIN_FREE and os.access("/dev/shm", os.W_OK):
            folder = "/dev/shm"
    for name in os.listdir(folder):
        if name.startswith(SPOOL_PREFIX):
            pid = name[len(SPOOL_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != owner and not pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
    return folder


def discard(result: DecodedTrack) -> None:
    """Remove the files of a result nobody will read (a cancelled run)."""
    for share in (result.feeds or {}).values():
        discard(share)
    for wave in result.waves or ():
        if isinstance(wave, SpooledWave):
            with contextlib.suppress(OSError):
                os.unlink(wave.path)


def spool(result: DecodedTrack, folder: str, owner: int) -> DecodedTrack:
    """``result`` with its waves in files under ``folder`` (what stays in memory if a file cannot be written)."""
    if result.waves is None:
        return result
    spooled: list[np.ndarray | SpooledWave | ExcerptWave] = []
    for wave in result.waves:
        if isinstance(wave, ExcerptWave):  # a few seconds of audio: through the pipe
            spooled.append(wave)
            continue
        path = None
        try:
            handle, path = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{owner}-", suffix=".f32", dir=folder)
            with os.fdopen(handle, "wb") as out:
                np.ascontiguousarray(wave, dtype=np.float32).tofile(out)
            spooled.append(SpooledWave(path, len(wave)))
        except OSError:  # a full tmpfs, say: this one goes through the pipe
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            spooled.append(wave)
    return dataclasses.replace(result, waves=tuple(spooled))


def unspool(result: DecodedTrack) -> DecodedTrack:
    """``result`` with any spooled waves read back."""
    if result.feeds:
        return dataclasses.replace(result, feeds={name: unspool(share) for name, share in result.feeds.items()})
    if result.waves is None or not any(isinstance(w, SpooledWave) for w in result.waves):
        return result
    return dataclasses.replace(result, waves=tuple(w.load() if isinstance(w, SpooledWave) else w
                                                   for w in result.waves))


_MODELS: dict[str, object] = {}  # in a worker process: the model its jobs embed with, built on the first one


def decode_and_embed(worker: Callable[..., DecodedTrack], track: Track, sample_rate: int,
                     fingerprint: bool, model_name: str, options: object,
                     excerpts: ExcerptPlan | None = None) -> DecodedTrack:
    """Decode ``track`` and embed it with the model ``model_name`` right here (a CPU model, loaded once
    per worker process on one torch thread): only its vectors travel back, as bliss's one process per
    core does it. A model error comes back as ``model_error``, for the engine to handle like its own."""
    result = run_worker(worker, track, sample_rate, fingerprint, excerpts)
    if result.waves is None:
        return result
    return _embed_here(result, model_name, options)


def _embed_here(result: DecodedTrack, model_name: str, options: object) -> DecodedTrack:
    """``result`` embedded in this process with ``model_name``: its vectors (or the model's error) for its waves."""
    import torch  # noqa: PLC0415 - only workers that embed need it

    from navembed_pipeline.lib.models import create_model  # noqa: PLC0415

    if model_name not in _MODELS:
        torch.set_num_threads(1)
        _MODELS[model_name] = create_model(model_name, options)
    model = _MODELS[model_name]
    timings: dict[str, float] = {}
    cpu = time.thread_time()
    unloadable = False
    try:
        vectors, error = tuple(model.embed(result.waves, timings=timings)), None
    except ModelLoadError as exc:  # its weights (e.g. a damaged download): the engine stops the run
        vectors, error, unloadable = None, str(exc), True
    except MODEL_ERRORS as exc:
        vectors, error = None, f"{type(exc).__name__}: {exc}"
    timings["model_cpu"] = time.thread_time() - cpu
    return dataclasses.replace(result, waves=None, vectors=vectors, model_error=error, model_unloadable=unloadable,
                               model_seconds=timings)


def decode_for_models(worker: Callable[..., DecodedTrack], track: Track, fingerprint: bool,
                      feeds: tuple[ModelFeed, ...], folder: str | None, owner: int,
                      excerpts: ExcerptPlan | None = None) -> DecodedTrack:
    """Decode ``track`` once, at the highest rate ``feeds`` need, and give each model its share (``feeds``
    of the result): the waves resampled to its rate (under ``folder`` when in a worker process), or its
    vectors when it embeds here. Resampling counts as decode time; fingerprints come from the one decode.
    ``excerpts``: the plan every one of ``feeds`` analyses by (then only those may be decoded)."""
    rate = max(feed.sample_rate for feed in feeds)
    result = run_worker(worker, track, rate, fingerprint, excerpts)
    if result.waves is None:
        return result
    shares: dict[str, DecodedTrack] = {}
    started, cpu = time.perf_counter(), time.thread_time()
    for feed in feeds:
        waves = tuple(_resampled(wave, rate, feed.sample_rate) for wave in result.waves)
        shares[feed.name] = dataclasses.replace(result, waves=waves, prints=None, seconds=0.0, cpu_seconds=0.0)
    result = dataclasses.replace(result, waves=None, feeds=shares, seconds=result.seconds + time.perf_counter() - started,
                                 cpu_seconds=result.cpu_seconds + time.thread_time() - cpu)
    for feed in feeds:
        if feed.embed_options is not None:
            shares[feed.name] = _embed_here(shares[feed.name], feed.name, feed.embed_options)
        elif folder is not None:
            shares[feed.name] = spool(shares[feed.name], folder, owner)
    return result


def decode_in_process(worker: Callable[..., DecodedTrack], track: Track, sample_rate: int,
                      fingerprint: bool, folder: str, owner: int, excerpts: ExcerptPlan | None = None) -> DecodedTrack:
    """``worker`` (``decode_track``) in a worker process: the waves come back through files in ``folder``."""
    return spool(run_worker(worker, track, sample_rate, fingerprint, excerpts), folder, owner)


def run_worker(worker: Callable[..., DecodedTrack], track: Track, sample_rate: int, fingerprint: bool,
               excerpts: ExcerptPlan | None) -> DecodedTrack:
    """``worker(track, sample_rate, fingerprint)``, with the model's excerpt plan when it has one (a worker
    that takes three arguments serves models that analyse whole tracks)."""
    if excerpts is None:
        return worker(track, sample_rate, fingerprint)
    return worker(track, sample_rate, fingerprint, excerpts)


def _resampled(wave: np.ndarray | ExcerptWave, from_rate: int, to_rate: int) -> np.ndarray | ExcerptWave:
    if isinstance(wave, ExcerptWave):
        return ExcerptWave(tuple(resample(p, from_rate, to_rate) for p in wave.parts), wave.duration_seconds)
    return resample(wave, from_rate, to_rate)


def decode_track(track: Track, sample_rate: int, fingerprint: bool,
                 excerpts: ExcerptPlan | None = None) -> DecodedTrack:
    """Decode ``track``'s segments to mono float32 at ``sample_rate``; ``fingerprint``: their fingerprints too.

    ``excerpts`` (the model's plan): a long whole-file track (no CUE sheet, a header that states its
    length exactly) is decoded as those excerpts only, each by a seek (an ``ExcerptWave``); the model
    analyses the same excerpts of a whole wave, so the vector is the same either way. Its fingerprint
    (``capped_print``: the first ``PRINT_SECONDS``) then needs only its first ``HEAD_SECONDS``: those
    are decoded whole, the excerpts inside them cut from there and the others sought. An unreadable
    file or CUE sheet comes back as ``error``; a fingerprint that fails leaves ``prints`` None and says
    why in ``print_error`` (the track is still embedded).
    """
    started, cpu = time.perf_counter(), time.thread_time()
    segments: tuple[TrackSegment, ...] = ()
    waves = prints = error = print_error = None
    heads: tuple[np.ndarray, float] | None = None  # a long track's head and length, for its print
    try:
        segments = tuple(segments_for(track))
        part = None
        if excerpts is not None:
            part, heads = _excerpts_alone(track, segments, sample_rate, excerpts, head=fingerprint)
        waves = (part,) if part is not None else tuple(
            load_audio(track.path, sample_rate, offset_seconds=s.offset_seconds, duration_seconds=s.duration_seconds)
            for s in segments)
    except NavembedError as exc:
        segments, waves, error = (), None, str(exc)
    if waves is not None and fingerprint:
        try:
            if heads is not None:
                prints = [(segments[0].index, segments[0].title,
                           *capped_print(heads[0], sample_rate, total_seconds=heads[1]))]
            else:
                prints = [(s.index, s.title, *capped_print(w, sample_rate))
                          for s, w in zip(segments, waves, strict=True)]
        except NavembedError as exc:
            print_error = str(exc)
    return DecodedTrack(segments, waves, prints, error, print_error, time.perf_counter() - started,
                        time.thread_time() - cpu)


def _excerpts_alone(track: Track, segments: tuple[TrackSegment, ...], sample_rate: int, plan: ExcerptPlan, *,
                    head: bool = False) -> tuple[ExcerptWave | None, tuple[np.ndarray, float] | None]:
    """The excerpts of a whole-file track, each decoded by a seek (None when it is to be decoded whole),
    and with ``head``: the track's first ``HEAD_SECONDS`` and its length, for its print (the excerpts
    inside that head are cut from it, as ``ExcerptPlan.cut`` cuts them from a whole decode).

    The length the excerpts are spread over is the one a whole decode would give (the header's exact
    length, capped like the whole read at the segment's duration); the last excerpt is decoded to the
    end of that read, so a file truncated before its declared end fails here as it does whole.
    """
    if len(segments) != 1 or segments[0].offset_seconds != 0.0:
        return None, None
    length = exact_length(track.path)
    if length is None:
        return None, None
    end = segments[0].duration_seconds
    if end > 0:
        length = min(length, end)
    ranges = plan.ranges(length, sample_rate)
    if not ranges:
        return None, None
    first = load_audio(track.path, sample_rate, duration_seconds=min(HEAD_SECONDS, length)) if head else None
    parts = []
    for number, samples in enumerate(ranges, 1):
        last = number == len(ranges)
        if first is not None and not last and samples.stop <= len(first):
            parts.append(first[samples.start:samples.stop])
            continue
        start = samples.start / sample_rate  # the seek's reader starts at round(start * rate): this very sample
        until = (end - start if end > start else None) if last else len(samples) / sample_rate
        parts.append(load_audio(track.path, sample_rate, offset_seconds=start, duration_seconds=until)[:len(samples)])
    return ExcerptWave(tuple(parts), length), (None if first is None else (first, length))
