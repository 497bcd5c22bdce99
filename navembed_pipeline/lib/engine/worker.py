"""What a decode worker process does for one track: decode its segments, fingerprint them, and for a
CPU model that asks for it (dsp) embed them too, so that only vectors travel back.

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

from navembed_pipeline.lib.duplicates.chromaprint import fingerprint_pcm
from navembed_pipeline.lib.errors import MODEL_ERRORS, NavembedError
from navembed_pipeline.lib.library.audio import load_audio
from navembed_pipeline.lib.library.navidrome import Track
from navembed_pipeline.lib.library.segments import TrackSegment, segments_for
from navembed_pipeline.lib.pids import pid_alive

Prints = list[tuple[int, str, np.ndarray]]  # (segment index, segment title, raw Chromaprint fingerprint)


@dataclass(frozen=True)
class DecodedTrack:
    """A track's segments at the model's rate (or why not), their fingerprints if asked, the work it took."""

    segments: tuple[TrackSegment, ...]
    waves: tuple[np.ndarray, ...] | None  # (in transit from a worker process: SpooledWave too)
    prints: Prints | None
    error: str | None
    print_error: str | None
    seconds: float
    cpu_seconds: float
    # Embedded right in the worker (``decode_and_embed``): one TrackVectors per segment, or the model's error.
    vectors: tuple | None = None
    model_error: str | None = None
    model_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # "model", "enrich", "model_cpu"


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
    for wave in result.waves or ():
        if isinstance(wave, SpooledWave):
            with contextlib.suppress(OSError):
                os.unlink(wave.path)


def spool(result: DecodedTrack, folder: str, owner: int) -> DecodedTrack:
    """``result`` with its waves in files under ``folder`` (what stays in memory if a file cannot be written)."""
    if result.waves is None:
        return result
    spooled: list[np.ndarray | SpooledWave] = []
    for wave in result.waves:
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
    if result.waves is None or not any(isinstance(w, SpooledWave) for w in result.waves):
        return result
    return dataclasses.replace(result, waves=tuple(w.load() if isinstance(w, SpooledWave) else w
                                                   for w in result.waves))


_MODELS: dict[str, object] = {}  # in a worker process: the model its jobs embed with, built on the first one


def decode_and_embed(worker: Callable[[Track, int, bool], DecodedTrack], track: Track, sample_rate: int,
                     fingerprint: bool, model_name: str, options: object) -> DecodedTrack:
    """Decode ``track`` and embed it with the model ``model_name`` right here (a CPU model, loaded once
    per worker process on one torch thread): only its vectors travel back, as bliss's one process per
    core does it. A model error comes back as ``model_error``, for the engine to handle like its own."""
    result = worker(track, sample_rate, fingerprint)
    if result.waves is None:
        return result
    import torch  # noqa: PLC0415 - only workers that embed need it

    from navembed_pipeline.lib.models import create_model  # noqa: PLC0415

    if model_name not in _MODELS:
        torch.set_num_threads(1)
        _MODELS[model_name] = create_model(model_name, options)
    model = _MODELS[model_name]
    timings: dict[str, float] = {}
    cpu = time.thread_time()
    try:
        vectors, error = tuple(model.embed(result.waves, timings=timings)), None
    except MODEL_ERRORS as exc:
        vectors, error = None, f"{type(exc).__name__}: {exc}"
    timings["model_cpu"] = time.thread_time() - cpu
    return dataclasses.replace(result, waves=None, vectors=vectors, model_error=error, model_seconds=timings)


def decode_in_process(worker: Callable[[Track, int, bool], DecodedTrack], track: Track, sample_rate: int,
                      fingerprint: bool, folder: str, owner: int) -> DecodedTrack:
    """``worker`` (``decode_track``) in a worker process: the waves come back through files in ``folder``."""
    return spool(worker(track, sample_rate, fingerprint), folder, owner)


def decode_track(track: Track, sample_rate: int, fingerprint: bool) -> DecodedTrack:
    """Decode ``track``'s segments to mono float32 at ``sample_rate``; ``fingerprint``: their fingerprints too.

    An unreadable file or CUE sheet comes back as ``error``; a fingerprint that fails leaves ``prints``
    None and says why in ``print_error`` (the track is still embedded).
    """
    started, cpu = time.perf_counter(), time.thread_time()
    segments: tuple[TrackSegment, ...] = ()
    waves = prints = error = print_error = None
    try:
        segments = tuple(segments_for(track))
        waves = tuple(load_audio(track.path, sample_rate, offset_seconds=s.offset_seconds,
                                 duration_seconds=s.duration_seconds) for s in segments)
    except NavembedError as exc:
        segments, waves, error = (), None, str(exc)
    if waves is not None and fingerprint:
        try:
            prints = [(s.index, s.title, fingerprint_pcm(w, sample_rate)) for s, w in zip(segments, waves, strict=True)]
        except NavembedError as exc:
            print_error = str(exc)
    return DecodedTrack(segments, waves, prints, error, print_error, time.perf_counter() - started,
                        time.thread_time() - cpu)
