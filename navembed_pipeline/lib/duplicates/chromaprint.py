"""Acoustic fingerprints (Chromaprint) of decoded audio, and matching them across trims and re-encodes.

``fingerprint_pcm(wave, sample_rate)`` feeds PCM that is already decoded (the pipeline's own
waves) to libchromaprint through ctypes and returns its *raw* fingerprint: one 32-bit word per
~0.124 s. The pipeline prints only the first ``PRINT_SECONDS`` of each track (``capped_print``, as
fpcalc/AcoustID print their first two minutes), so a long track is decoded for its print's first minute
only, and stores beside the words the length of the audio they stand for; ``match`` takes those lengths. Two files are copies of one recording when, at the best alignment, few bits differ:
``match(a, b)`` searches every offset within ``MAX_SHIFT_SECONDS`` plus the offsets that exact
word matches vote for (so a long intro on one copy is still found) and scores ``1 - bit error
rate`` over the overlap. Unrelated audio scores about 0.5; the decision threshold
``DUPLICATE_SCORE`` was measured on real recordings (see README, "Duplicates").
"""

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np

from navembed_pipeline.lib.errors import NavembedError

ALGORITHM = 1  # CHROMAPRINT_ALGORITHM_TEST2, the default of fpcalc and AcoustID
SILENCE_LEVEL = 1e-3  # |sample| below this (-60 dBFS) at either end is trimmed before fingerprinting
CHROMAPRINT_RATE = 11025  # the rate Chromaprint analyses at (it resamples anything else to it)
ITEM_SECONDS = 4096 / 3 / CHROMAPRINT_RATE  # Chromaprint's hop: one word per 1365.33 samples at 11025 Hz
MAX_SHIFT_SECONDS = 30.0  # every alignment within this is tried (the goal is at least ±10 s of trim)
MIN_OVERLAP_SECONDS = 10.0  # shorter overlaps say too little
MIN_OVERLAP_FRACTION = 0.5  # of the longer copy: an excerpt is not a copy of the whole recording (see ``match``)
DUPLICATE_SCORE = 0.88  # 1 - bit error rate; real copies scored >= 0.94, other songs <= 0.83 (README)
VOTE_OFFSETS = 4  # besides the near offsets, the offsets most voted for by exact word matches
MAX_SECONDS = 900.0  # fingerprint at most this much of a track (enough for any alignment we search)
PRINT_SECONDS = 60.0  # the pipeline's prints: the first this much of the sounding audio (README "Duplicates")
_INT16_MAX = 32767


class FingerprintError(NavembedError):
    """Chromaprint is missing or refused the audio."""


@dataclass(frozen=True)
class Match:
    """How well two fingerprints align: ``score`` = 1 - bit error rate at the best offset.

    ``offset_seconds`` > 0 means ``b`` starts that much later in the recording than ``a``
    (``a`` has that much extra audio at its start; silence at either end does not count).
    """

    score: float
    offset_seconds: float
    overlap_seconds: float
    overlap_fraction: float  # overlap over the longer copy (see ``match`` for capped prints)

    @property
    def is_duplicate(self) -> bool:
        return is_duplicate(self)


NO_MATCH = Match(0.0, 0.0, 0.0, 0.0)


def is_duplicate(found: Match, *, threshold: float = DUPLICATE_SCORE) -> bool:
    """Copies of one recording: a close match over enough of both files."""
    return (found.score >= threshold and found.overlap_seconds >= MIN_OVERLAP_SECONDS
            and found.overlap_fraction >= MIN_OVERLAP_FRACTION)


def decidable(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two fingerprints are long enough for ``is_duplicate`` to say anything (else: no verdict)."""
    return min(seconds_of(a), seconds_of(b)) >= MIN_OVERLAP_SECONDS


def capped_print(wave: np.ndarray, sample_rate: int, *, total_seconds: float | None = None) -> tuple[np.ndarray, float]:
    """The pipeline's print of a track: the fingerprint of its first ``PRINT_SECONDS`` of sound, and the
    length of the sounding audio it stands for (what ``match`` compares copies' lengths by).

    ``wave``: the whole track, or (``total_seconds``: the track's length) only its head, at least
    ``PRINT_SECONDS`` plus its leading silence long; then the length is the track's, less the head's
    leading silence (trailing silence, never decoded, counts: a few seconds against a 0.5 length ratio).
    A track within the cap gets exactly the print it got whole.
    """
    samples = np.asarray(wave, dtype=np.float32).reshape(-1)
    loud = np.flatnonzero(np.abs(samples) >= SILENCE_LEVEL)
    if not len(loud):
        return np.zeros(0, np.uint32), 0.0
    words = fingerprint_pcm(samples, sample_rate, max_seconds=PRINT_SECONDS)
    heard = (loud[-1] + 1 - loud[0]) / sample_rate
    sound = heard if total_seconds is None else total_seconds - loud[0] / sample_rate
    # In the print's own units (a print is ~2.6 s shorter than its audio): a track within the cap gets
    # its print's length, exactly what a whole print says; a longer one the audio past the print added.
    return words, seconds_of(words) + max(0.0, sound - min(heard, PRINT_SECONDS))


def fingerprint_pcm(wave: np.ndarray, sample_rate: int, *, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The raw Chromaprint fingerprint (uint32 words) of mono float audio in [-1, 1]: its first
    ``max_seconds`` after leading silence."""
    samples = trim_silence(np.asarray(wave, dtype=np.float32).reshape(-1))[: int(max_seconds * sample_rate)]
    samples, sample_rate = to_fingerprint_rate(samples, sample_rate)
    pcm = (np.clip(samples, -1.0, 1.0) * _INT16_MAX).astype("<i2")
    lib = _library()
    context = lib.chromaprint_new(ALGORITHM)
    if not context:
        raise FingerprintError("chromaprint_new failed")
    try:
        _check(lib.chromaprint_start(context, int(sample_rate), 1), "start")
        _check(lib.chromaprint_feed(context, pcm.ctypes.data_as(ctypes.c_void_p), len(pcm)), "feed")
        _check(lib.chromaprint_finish(context), "finish")
        words = ctypes.POINTER(ctypes.c_uint32)()
        size = ctypes.c_int()
        _check(lib.chromaprint_get_raw_fingerprint(context, ctypes.byref(words), ctypes.byref(size)), "fingerprint")
        try:
            return np.ctypeslib.as_array(words, shape=(size.value,)).copy() if size.value else np.zeros(0, np.uint32)
        finally:
            lib.chromaprint_dealloc(words)
    finally:
        lib.chromaprint_free(context)


def to_fingerprint_rate(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """At a whole multiple of Chromaprint's 11025 Hz, the mean of each group of samples; else unchanged.

    Chromaprint resamples whatever it is fed to 11025 Hz, and its resampler is most of its cost: a
    5-minute track at 22050 Hz took 0.20 CPU s, fed the pairwise mean 0.035 s. The mean is a weak
    low-pass, but Chromaprint only looks at 28-3520 Hz, where it agrees with Chromaprint's own
    resampling on 99.5-99.8 % of the fingerprint bits (real recordings, every format): fingerprints
    stored before this change still match.
    """
    factor = sample_rate // CHROMAPRINT_RATE
    if factor < 2 or factor * CHROMAPRINT_RATE != sample_rate:
        return samples, sample_rate
    count = len(samples) // factor
    total = samples[0 : count * factor : factor].copy()
    for phase in range(1, factor):  # strided adds: several times faster than reshape(...).mean(axis=1)
        total += samples[phase : count * factor : factor]
    return total * np.float32(1 / factor), CHROMAPRINT_RATE


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """``samples`` without leading and trailing near-silence (offsets then count from the first sound)."""
    loud = np.flatnonzero(np.abs(samples) >= SILENCE_LEVEL)
    return samples[loud[0]:loud[-1] + 1] if len(loud) else samples[:0]


def seconds_of(words: np.ndarray) -> float:
    """The audio length a fingerprint covers."""
    return len(words) * ITEM_SECONDS


def match(a: np.ndarray, b: np.ndarray, *, max_shift_seconds: float = MAX_SHIFT_SECONDS,
          a_seconds: float | None = None, b_seconds: float | None = None) -> Match:
    """The best alignment of two raw fingerprints (see ``Match``).

    ``a_seconds``, ``b_seconds``: the length of the audio each print stands for (``capped_print``); by
    default the print's own length (a print of the whole track). ``overlap_fraction`` is the overlap
    over the shorter print, times the shorter copy's length over the longer's: for whole prints that is
    the overlap over the longer copy; for capped prints of two full copies it stays near 1, while a 30 s
    clip of a 5-minute song still scores 0.1 whatever the prints cover.
    """
    a = np.asarray(a, dtype=np.uint32)
    b = np.asarray(b, dtype=np.uint32)
    if len(a) == 0 or len(b) == 0:
        return NO_MATCH
    length_a = max(a_seconds or 0.0, seconds_of(a))
    length_b = max(b_seconds or 0.0, seconds_of(b))
    ratio = min(length_a, length_b) / max(length_a, length_b)
    shorter = min(len(a), len(b))
    min_items = int(MIN_OVERLAP_SECONDS / ITEM_SECONDS)
    near = int(round(max_shift_seconds / ITEM_SECONDS))
    offsets = set(range(-near, near + 1)) | set(voted_offsets(a, b))
    best = NO_MATCH
    for offset in sorted(offsets):
        # offset = index in a - index in b of the same moment
        start_a, start_b = max(offset, 0), max(-offset, 0)
        length = min(len(a) - start_a, len(b) - start_b)
        if length < min_items:
            continue
        differing = np.bitwise_count(a[start_a:start_a + length] ^ b[start_b:start_b + length]).sum()
        score = 1.0 - float(differing) / (32.0 * length)
        if score > best.score:
            best = Match(round(score, 4), round(offset * ITEM_SECONDS, 2), round(length * ITEM_SECONDS, 2),
                         round(length / shorter * ratio, 3))
    return best


def voted_offsets(a: np.ndarray, b: np.ndarray, *, count: int = VOTE_OFFSETS) -> list[int]:
    """The alignments most supported by words that occur exactly in both (AcoustID-style voting)."""
    common, in_a, in_b = np.intersect1d(a, b, assume_unique=False, return_indices=True)
    if len(common) == 0:
        return []
    votes = np.bincount(in_a.astype(np.int64) - in_b.astype(np.int64) + len(b))
    top = np.argsort(votes)[::-1][:count]
    return [int(i) - len(b) for i in top if votes[i] > 1]


def to_blob(words: np.ndarray) -> bytes:
    """Little-endian bytes of a fingerprint (for storage)."""
    return np.asarray(words, dtype="<u4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u4").astype(np.uint32)


# ----- libchromaprint -------------------------------------------------------------------------------
_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None


def available() -> bool:
    """Whether libchromaprint can be loaded (Debian: libchromaprint1)."""
    try:
        _library()
    except FingerprintError:
        return False
    return True


def _library() -> ctypes.CDLL:
    global _LIB
    with _LOCK:
        if _LIB is None:
            _LIB = _load()
        return _LIB


def _load() -> ctypes.CDLL:
    for name in ("libchromaprint.so.1", ctypes.util.find_library("chromaprint"), "libchromaprint.1.dylib"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.chromaprint_new.argtypes, lib.chromaprint_new.restype = (ctypes.c_int,), ctypes.c_void_p
        lib.chromaprint_free.argtypes, lib.chromaprint_free.restype = (ctypes.c_void_p,), None
        lib.chromaprint_start.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
        lib.chromaprint_feed.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
        lib.chromaprint_finish.argtypes = (ctypes.c_void_p,)
        lib.chromaprint_get_raw_fingerprint.argtypes = (
            ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)), ctypes.POINTER(ctypes.c_int))
        lib.chromaprint_dealloc.argtypes, lib.chromaprint_dealloc.restype = (ctypes.c_void_p,), None
        return lib
    raise FingerprintError("libchromaprint is not installed (Debian/Ubuntu: apt-get install libchromaprint1; "
                           "`make setup` does it)")


def _check(result: int, step: str) -> None:
    if result != 1:
        raise FingerprintError(f"chromaprint {step} failed")
