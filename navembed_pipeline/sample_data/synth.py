"""Generated music for tests, demos and the sample library: deterministic, varied, timbre per style.

``render(style, seconds=..., seed=...)`` is a pure function of its arguments. The seed picks the
tempo, key, scale, chord progression and melody; the style fixes the instrument (its spectrum and
envelopes), so two seeds of one style sound like the same instrument playing different music and
similarity between styles means something to an audio model.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library import CueSheet, CueTrack, format_cue, write_audio

__all__ = ["STYLES", "render", "render_song", "write_album", "write_audio"]

STYLES = ("piano", "drums", "bass", "chords", "pad", "noise")
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 3), (0, 4, 5, 3), (5, 3, 0, 4))  # scale degrees, one per bar
PEAK = 0.5


@dataclass(frozen=True)
class _Groove:
    """What a seed decides for every style alike, so that styles rendered with one seed fit together."""

    beat_seconds: float
    root_midi: int
    scale: tuple[int, ...]
    progression: tuple[int, ...]

    @classmethod
    def from_seed(cls, seed: int) -> "_Groove":
        rng = np.random.default_rng([seed, 0])
        return cls(beat_seconds=60.0 / rng.uniform(84, 136), root_midi=int(rng.integers(48, 56)),
                   scale=_MAJOR if rng.random() < 0.5 else _MINOR,
                   progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))])

    def pitch(self, degree: int, octave: int = 0) -> float:
        """Frequency in Hz of scale ``degree`` (may exceed the octave) above the root."""
        octaves, step = divmod(degree, len(self.scale))
        midi = self.root_midi + 12 * (octave + octaves) + self.scale[step]
        return 440.0 * 2 ** ((midi - 69) / 12)


def render(style: str, *, seconds: float, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    """``seconds`` of mono float32 music in ``style`` (see ``STYLES``), peak ``PEAK``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {STYLES}")
    n = max(1, int(round(seconds * sample_rate)))
    groove = _Groove.from_seed(seed)
    rng = np.random.default_rng([seed, 1 + STYLES.index(style)])
    wave = _RENDERERS[style](np.zeros(n), sample_rate, groove, rng)
    peak = float(np.max(np.abs(wave)))
    return (wave * (PEAK / peak) if peak > 0 else wave).astype(np.float32)


def render_song(*, seconds: float, sample_rate: int = 44100, seed: int = 0,
                styles: tuple[str, ...] = ("piano", "bass", "drums", "pad")) -> np.ndarray:
    """Several styles of one seed mixed (same tempo and key), peak ``PEAK``."""
    mix = sum(render(style, seconds=seconds, sample_rate=sample_rate, seed=seed) for style in styles)
    return (mix * (PEAK / np.max(np.abs(mix)))).astype(np.float32)


def write_album(audio_path: str | Path, titles_and_styles: list[tuple[str, str]], *, seconds_per_track: float,
                sample_rate: int = 44100, seed: int = 0, performer: str = "navembed",
                title: str = "Generated Album") -> CueSheet:
    """Render one track per (title, style) back to back into ``audio_path`` and write ``<stem>.cue``.

    Track lengths are rounded to whole CUE frames (1/75 s). Returns the sheet that was written.
    """
    audio_path = Path(audio_path)
    frames = max(1, round(seconds_per_track * 75))
    waves = [render(style, seconds=frames / 75, sample_rate=sample_rate, seed=seed + i)
             for i, (_, style) in enumerate(titles_and_styles)]
    write_audio(audio_path, np.concatenate(waves), sample_rate,
                tags={"album": title, "artist": performer, "title": title})
    tracks = tuple(CueTrack(i + 1, name, performer, i * frames / 75, file=audio_path.name)
                   for i, (name, _) in enumerate(titles_and_styles))
    sheet = CueSheet(performer, title, (audio_path.name,), tracks)
    audio_path.with_suffix(".cue").write_text(format_cue(sheet), encoding="utf-8")
    return sheet


def _notes(out: np.ndarray, sr: int, onsets: list[float], make) -> np.ndarray:
    """Add ``make(i, length)`` at each onset (seconds); notes ring past the next onset up to 2 s."""
    for i, onset in enumerate(onsets):
        start = int(onset * sr)
        if start >= len(out):
            break
        length = min(len(out) - start, int(2.0 * sr))
        out[start : start + length] += make(i, length)
    return out


def _onsets(total_seconds: float, step: float) -> list[float]:
    return list(np.arange(0.0, total_seconds, step))


def _piano(out: np.ndarray, sr: int, groove: _Groove, rng: np.random.Generator) -> np.ndarray:
    """A melody of struck strings: slightly inharmonic partials, upper ones dying faster."""
    onsets = _onsets(len(out) / sr, groove.beat_seconds / 2)
    degrees = np.abs(np.cumsum(rng.choice([-2, -1, 1, 2], size=len(onsets))) % 20 - 10)  # a walk bouncing in 0..10
    t = np.arange(int(2.0 * sr)) / sr

    def note(i: int, length: int) -> np.ndarray:
        f0, tt = groove.pitch(int(degrees[i]), octave=1), t[:length]
        stretch = np.sqrt(1 + 4e-4 * np.arange(1, 9) ** 2)  # stiff strings: partials run sharp
        partials = [k**-1.8 * np.exp(-tt * (1.5 + 1.2 * k)) * np.sin(2 * np.pi * f0 * k * stretch[k - 1] * tt)
                    for k in range(1, 9) if f0 * k < sr / 2]
        return sum(partials) * np.minimum(1.0, tt / 0.003)

    return _notes(out, sr, onsets, note)


def _drums(out: np.ndarray, sr: int, groove: _Groove, rng: np.random.Generator) -> np.ndarray:
    """A kick / snare / hi-hat pattern on sixteenth notes: pitched sweeps and noise bursts."""
    step = groove.beat_seconds / 4
    kicks = {0, 8} | {int(s) for s in rng.choice([6, 10, 14, 3], size=2, replace=False)}
    hats = set(range(0, 16, int(rng.choice([1, 2]))))
    t = np.arange(int(0.5 * sr)) / sr
    noise = rng.standard_normal(len(t))
    kick = np.sin(2 * np.pi * np.cumsum(50 + 110 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.2)
    snare = np.diff(noise, prepend=0.0) * 0.5 * np.exp(-t / 0.1) + 0.6 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.06)
    hat = np.diff(noise, n=2, prepend=[0.0, 0.0]) * 0.12 * np.exp(-t / 0.025)
    for i, onset in enumerate(_onsets(len(out) / sr, step)):
        s = int(onset * sr)
        hits = [kick] * (i % 16 in kicks) + [snare] * (i % 16 in (4, 12)) + [hat] * (i % 16 in hats)
        for hit in hits:
            length = min(len(hit), len(out) - s)
            out[s : s + length] += hit[:length]
    return out


def _bass(out: np.ndarray, sr: int, groove: _Groove, rng: np.random.Generator) -> np.ndarray:
    """Plucked low notes following the chord roots: a few saw-like harmonics, fast decay."""
    step = groove.beat_seconds / 2
    onsets = _onsets(len(out) / sr, step)
    t = np.arange(int(2.0 * sr)) / sr

    def note(i: int, length: int) -> np.ndarray:
        bar = int(i * step / (4 * groove.beat_seconds)) % len(groove.progression)
        f0 = groove.pitch(groove.progression[bar] + int(rng.choice([0, 0, 4, 7])), octave=-2)
        tt = t[:length]
        envelope = np.exp(-tt / 0.25) * np.minimum(1.0, tt / 0.005)
        return sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in range(1, 7)) * envelope

    return _notes(out, sr, onsets, note)


def _chord_voices(groove: _Groove, bar: int) -> list[float]:
    degree = groove.progression[bar % len(groove.progression)]
    return [groove.pitch(degree + d) for d in (0, 2, 4)]


def _chords(out: np.ndarray, sr: int, groove: _Groove, rng: np.random.Generator) -> np.ndarray:
    """Organ-like triad stabs on a rhythm the seed picks: odd harmonics, a short gate."""
    rhythms = ((0, 2), (0, 1.5, 3), (0, 1, 2, 3))
    beats = rhythms[int(rng.integers(len(rhythms)))]
    bar_seconds = 4 * groove.beat_seconds
    bars = range(int(len(out) / sr / bar_seconds) + 1)
    onsets = [bar * bar_seconds + beat * groove.beat_seconds for bar in bars for beat in beats]
    t = np.arange(int(2.0 * sr)) / sr

    def stab(i: int, length: int) -> np.ndarray:
        tt, bar = t[:length], int(onsets[i] / bar_seconds)
        gate = np.clip(tt / 0.01, 0, 1) * np.clip((0.35 - tt) / 0.05, 0, 1)
        voices = [2 * f for f in _chord_voices(groove, bar)]  # an octave up, square-ish: odd harmonics
        return sum(np.sin(2 * np.pi * f * k * tt) / k for f in voices for k in (1, 3, 5, 7, 9, 11, 13)) * gate

    return _notes(out, sr, onsets, stab)


def _pad(out: np.ndarray, sr: int, groove: _Groove, rng: np.random.Generator) -> np.ndarray:
    """Slow swelling triads, one per bar: detuned voices, soft spectrum, slow tremolo."""
    bar_samples = int(4 * groove.beat_seconds * sr)
    t = np.arange(len(out)) / sr
    detune = 1 + rng.uniform(0.002, 0.006)
    for start in range(0, len(out), bar_samples):
        tt = t[: min(bar_samples, len(out) - start)]
        swell = np.minimum(1.0, tt / 0.4) * np.minimum(1.0, (tt[-1] - tt + 1e-3) / 0.3)
        voices = _chord_voices(groove, start // bar_samples)
        out[start : start + len(tt)] += swell * sum(
            np.sin(2 * np.pi * f * k * d * tt) / k**2 for f in voices for k in (1, 2, 3) for d in (1.0, detune))
    return out * (1 + 0.2 * np.sin(2 * np.pi * 0.5 * t))


def _noise(out: np.ndarray, sr: int, groove: _Groove, rng: np.random.Generator) -> np.ndarray:
    """Pink noise (1/f power) under a slow swell, like wind or surf."""
    spectrum = np.fft.rfft(rng.standard_normal(len(out)))
    freqs = np.fft.rfftfreq(len(out), 1 / sr)
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 20.0)), n=len(out))
    t = np.arange(len(out)) / sr
    return pink * (0.7 + 0.3 * np.sin(2 * np.pi * t / (8 * groove.beat_seconds)))


_RENDERERS = {"piano": _piano, "drums": _drums, "bass": _bass, "chords": _chords, "pad": _pad, "noise": _noise}
