"""Excerpts: a long track analysed from short windows spread over it instead of every second of it.

A model that describes a track by statistics over its frames (dsp) needs a fair sample of the track,
not all of it. An ``ExcerptPlan`` says how: a track longer than ``above_seconds`` is read as ``count``
excerpts of ``seconds`` each, centred at ``(i + 1/2) / count`` of its length (``spans``); shorter
tracks are read whole. The plan is a pure function of the track's length, so the same excerpts come
out whether they are cut from a full decode (``cut``: a fingerprint wanted the whole track anyway) or
decoded on their own by seeking (``worker.decode_track``: only those seconds are decoded; both take their
samples from ``ranges``), up to the
codec's float rounding and the few milliseconds by which a header's length may differ from the
decoded one.

Measured for dsp (12 excerpts of 10 s above 180 s: ``benchmarks/quality.py`` material, see README
"Excerpts"): same-album precision@5 equal to the full analysis within noise, the vector's cosine to
the full-track vector 0.99 at worst.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExcerptPlan:
    """Read a track longer than ``above_seconds`` as ``count`` excerpts of ``seconds``, spread evenly."""

    count: int
    seconds: float
    above_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.seconds <= 0 or self.above_seconds < self.count * self.seconds:
            raise ValueError(f"an excerpt plan needs count >= 1, seconds > 0 and above_seconds >= "
                             f"count * seconds (got {self.count}, {self.seconds}, {self.above_seconds})")

    def applies(self, duration_seconds: float) -> bool:
        """Whether a track this long is read as excerpts (else whole)."""
        return duration_seconds > self.above_seconds

    def spans(self, duration_seconds: float) -> tuple[tuple[float, float], ...]:
        """``(start, length)`` seconds of each excerpt, in order; ``()`` when the track is read whole."""
        if not self.applies(duration_seconds):
            return ()
        half = self.seconds / 2
        return tuple((round(max(0.0, (i + 0.5) * duration_seconds / self.count - half), 3), self.seconds)
                     for i in range(self.count))

    def ranges(self, duration_seconds: float, sample_rate: int) -> tuple[range, ...]:
        """The samples of each excerpt at ``sample_rate`` (``spans`` in samples): the one source of what
        ``cut`` slices from a whole decode and what ``worker.decode_track`` decodes by a seek."""
        size = int(round(self.seconds * sample_rate))
        return tuple(range(first, first + size)
                     for first in (round(start * sample_rate) for start, _ in self.spans(duration_seconds)))

    def cut(self, wave: np.ndarray, sample_rate: int) -> "ExcerptWave | None":
        """The excerpts of a whole decoded ``wave`` (views), or None when it is read whole."""
        ranges = self.ranges(len(wave) / sample_rate, sample_rate)
        if not ranges:
            return None
        return ExcerptWave(tuple(wave[r.start:r.stop] for r in ranges), len(wave) / sample_rate)


@dataclass(frozen=True)
class ExcerptWave:
    """A track read as excerpts: the mono waves of each (at the model's rate) and the track's length."""

    parts: tuple[np.ndarray, ...]
    duration_seconds: float

    @property
    def samples(self) -> int:
        """Samples decoded for it (all parts)."""
        return sum(len(p) for p in self.parts)


def excerpt_parts(wave: "np.ndarray | ExcerptWave", plan: ExcerptPlan | None, sample_rate: int) -> list[np.ndarray]:
    """What a model with ``plan`` analyses of ``wave``: its excerpts, or the whole wave."""
    if isinstance(wave, ExcerptWave):
        return [np.asarray(p, dtype=np.float32) for p in wave.parts]
    wave = np.asarray(wave, dtype=np.float32)
    cut = plan.cut(wave, sample_rate) if plan is not None else None
    return [wave] if cut is None else list(cut.parts)
