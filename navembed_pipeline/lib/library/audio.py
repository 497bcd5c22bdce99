"""Audio I/O: decode to mono float32 at a requested rate, segments, sliding windows.

Everything is decoded by PyAV (FFmpeg) and converted by libswresample (PyAV's ``AudioResampler``),
so FLAC, MP3, Ogg Vorbis, Opus, WAV, M4A/AAC and whatever else FFmpeg reads behave the same.

Speed (measured on 3–7-minute real recordings in every format, ``benchmarks/real_length.py``): to
mono, each decoded frame's channels are summed straight into a preallocated block (``_MonoResampler``:
one numpy call a frame, no per-frame conversion or resampler call, the frame freed at once) and each
block of ``RESAMPLE_INPUT_FRAME`` samples is averaged and resampled by libswresample in one call: on a
5-minute Vorbis track 0.7 CPU s instead of 1.0 s with per-frame resampling (decoding alone is 0.37 s),
and the same samples to float rounding (``tests/lib/library/test_audio.py``). Codec threading gains
nothing for audio codecs (each frame is small; we decode several tracks in parallel instead), libopus
is slower than FFmpeg's own Opus decoder, and soundfile decodes FLAC slower than FFmpeg, so PyAV's
default decoders stay. Output that keeps its channels (``mono=False``) goes frame by frame through
libswresample.

Policy for damaged files (every failure is an ``AudioDecodeError`` naming the path and the reason):
- missing, not a regular file, empty, not audio, no audio stream, nothing decodable: raise;
- offset at or beyond the end of the audio: raise;
- truncated: the audio stops more than ``1 s + 1 %`` short of the duration an exact header declares
  (FLAC, MP4/M4A, MP3 with a Xing/Info/VBRI header, ...): raise, because embedding part of a
  track would silently file it under the wrong sound;
- decode errors that lose no declared audio (garbage appended after the last frame, a few corrupt
  packets): return what decoded and log a warning, the way players do.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import av
import mutagen
import numpy as np

from ..errors import AudioDecodeError

logger = logging.getLogger(__name__)

PREROLL_SECONDS = 0.5  # decoded before a segment and after it: codec and resampler warm-up
MAX_FUTILE_PACKETS = 1000  # packets in a row that yield no audio before we give up on a file
MAX_DECODE_SECONDS = 12 * 3600  # a bound on decode work and memory for a single read
RESAMPLED_FRAME = 65536  # samples per frame the resampler returns: fewer, larger numpy conversions
RESAMPLE_INPUT_FRAME = 1 << 18  # samples per frame fed to the resampler (bounded copies, few calls)
STEREO_DOWNMIX_SCALE = np.float32(np.sqrt(0.5))  # libswresample's mono is (L + R) / sqrt(2); ours is the mean
# mutagen stream-info modules whose length is exact header data (not an estimate from the bit rate).
_EXACT_LENGTH_KINDS = frozenset({"flac", "wave", "mp4", "oggvorbis", "oggopus", "oggflac", "aiff",
                                 "wavpack", "monkeysaudio", "asf", "dsf", "mp3"})


@dataclass(frozen=True)
class AudioInfo:
    """What a file's headers say about its first audio stream."""

    duration_seconds: float
    sample_rate: int
    channels: int
    codec: str
    container: str


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded samples ``(channels, n)`` float32 and how much work reading them took."""

    samples: np.ndarray
    sample_rate: int
    packets_read: int
    seeked: bool


def probe(path: str | Path) -> AudioInfo:
    """Read ``path``'s headers (no decoding unless they lack a duration) into an ``AudioInfo``."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.audio[0]
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:  # e.g. a raw stream: add up packet durations, still without decoding
            duration = float(sum(p.duration or 0 for p in container.demux(stream)) * stream.time_base)
        return AudioInfo(duration_seconds=duration, sample_rate=stream.rate,
                         channels=stream.codec_context.channels, codec=stream.codec_context.name,
                         container=container.format.name)


def load_audio(
    path: str | Path, sample_rate: int, *, offset_seconds: float = 0.0, duration_seconds: float | None = None
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``; optionally only a segment of it.

    A segment starting at ``offset_seconds`` is reached by seeking (decoding starts shortly before
    it, never at the top of a long file) and trimmed sample-accurately; ``duration_seconds=None``
    reads to the end, and a segment running past the end is cut there.
    """
    decoded = decode_audio(path, sample_rate=sample_rate, mono=True,
                           offset_seconds=offset_seconds, duration_seconds=duration_seconds)
    return decoded.samples[0]


def decode_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    mono: bool = True,
    offset_seconds: float = 0.0,
    duration_seconds: float | None = None,
) -> DecodedAudio:
    """Decode ``path`` (or a segment) to ``(channels, n)`` float32; ``None`` keeps the file's own rate.

    ``mono=False`` keeps the file's channels (used to split CUE albums without downmixing them).
    """
    path = Path(path)
    if offset_seconds < 0 or (duration_seconds is not None and duration_seconds <= 0):
        raise ValueError("offset_seconds must be >= 0 and duration_seconds > 0")
    for seek in (True, False):  # when a seek misses the segment's start, read from the top instead
        reader = _SegmentReader(path, sample_rate, mono=mono, offset_seconds=offset_seconds,
                                duration_seconds=duration_seconds, seek=seek)
        with _open(path) as container:
            result = reader.read(container)
        if result is not None:
            break
    _check_not_truncated(path, reader)
    if reader.errors:
        logger.warning("%s: %d packet(s) failed to decode (%s); kept what decoded",
                       path, reader.errors, reader.last_error)
    return result


class _SegmentReader:
    """Decodes from a seek point, aligns the source to the resampling grid, trims to the segment.

    Output sample ``k`` always lies at ``k / rate`` seconds from the start of the stream, whether
    the read began at the top or at a seek point: decoding starts at a source sample that maps
    onto a whole output sample, so a segment equals the same slice of a full read.
    """

    def __init__(self, path: Path, rate: int | None, *, mono: bool, offset_seconds: float,
                 duration_seconds: float | None, seek: bool) -> None:
        self.path, self.requested_rate, self.mono = path, rate, mono
        self.offset_seconds, self.duration_seconds = offset_seconds, duration_seconds
        self.seek = seek and offset_seconds > PREROLL_SECONDS
        self.position: int | None = None  # source index of the next decoded sample
        self._to_skip = -1  # source samples before the grid (-1: the first frame is not placed yet)
        self.first_out = 0  # output index of the first resampled sample
        self.packets = self.good_packets = self.errors = 0
        self.last_error = ""
        self.reached_end = True
        self._scale = np.float32(1.0)  # applied to resampled samples (see _resampler)

    def _bind(self, stream: av.audio.stream.AudioStream) -> None:
        self.stream, self.src_rate = stream, stream.rate
        self.rate = self.requested_rate or stream.rate
        self.grid = self.src_rate // gcd(self.src_rate, self.rate)  # source samples per aligned step
        self.start = round(self.offset_seconds * self.rate)
        end_seconds = None if self.duration_seconds is None else self.offset_seconds + self.duration_seconds
        self.stop = None if end_seconds is None else round(end_seconds * self.rate)  # absolute: segments abut
        self.origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0

    def read(self, container: av.container.InputContainer) -> DecodedAudio | None:
        """The segment, or None when the seek landed after its start (the caller reads from the top)."""
        self._bind(container.streams.audio[0])
        if self.seek:
            target = self.origin + self.offset_seconds - PREROLL_SECONDS
            try:
                container.seek(int(target / self.stream.time_base), stream=self.stream, backward=True)
            except av.FFmpegError:
                return None
        chunks = self._decode(container)
        if chunks is None or (self.seek and not chunks):
            return None
        if not chunks or self.errors > self.good_packets:
            raise AudioDecodeError(f"{self.path}: no audio could be decoded "
                                   f"({self.last_error or 'no frames'}, {self.errors} bad packets)")
        samples = np.concatenate(chunks, axis=1)
        if self.start - self.first_out >= samples.shape[1]:
            raise AudioDecodeError(f"{self.path}: offset {self.offset_seconds:.3f} s is beyond the end "
                                   f"({(self.first_out + samples.shape[1]) / self.rate:.3f} s)")
        end = None if self.stop is None else self.stop - self.first_out
        segment = np.ascontiguousarray(samples[:, self.start - self.first_out : end])
        return DecodedAudio(segment, self.rate, self.packets, self.seek)

    def _decode(self, container: av.container.InputContainer) -> list[np.ndarray] | None:
        resampler: av.AudioResampler | None = None
        mono: _MonoResampler | None = None  # the fast path: mono output from a sample format it reads
        chunks: list[np.ndarray] = []
        futile = 0
        src_stop = None if self.stop is None else (self.stop / self.rate + PREROLL_SECONDS) * self.src_rate
        for packet in self._packets(container):
            frames = self._frames(packet)
            futile = 0 if frames else futile + 1
            if futile > MAX_FUTILE_PACKETS:
                self.last_error = self.last_error or f"{futile} packets in a row held no audio"
                break
            for frame in frames:
                if self._to_skip:  # before the grid (or the first frame): the slow path
                    if self.position is None and not self._place(frame):
                        return None
                    frame = self._skip_to_grid(frame)
                    if frame is None:
                        continue
                else:  # per frame from here on (thousands a track): keep it short
                    self.position += frame.samples
                if mono is not None and not mono.accepts(frame):  # a format it does not read (never seen)
                    mono.finish()
                    mono = None
                if resampler is None and mono is None:
                    if self.mono and _MonoResampler.accepts(frame):
                        mono = _MonoResampler(self.rate, chunks)
                    else:
                        resampler = self._resampler(frame)
                if mono is not None:
                    mono.add(frame)
                    continue
                try:
                    resampled = resampler.resample(frame)  # mostly []: it returns RESAMPLED_FRAME at a time
                except ValueError:  # the stream changed rate or layout mid-way (chained Ogg): start anew
                    chunks.extend(self._arrays(resampler.resample(None)))
                    resampler = self._resampler(frame)
                    resampled = resampler.resample(frame)
                if resampled:
                    chunks.extend(self._arrays(resampled))
            if self.position is not None and self.position > MAX_DECODE_SECONDS * self.src_rate:
                raise AudioDecodeError(f"{self.path}: longer than {MAX_DECODE_SECONDS} s, refusing to decode")
            if src_stop is not None and self.position is not None and self.position >= src_stop:
                self.reached_end = False
                break
        if mono is not None:
            mono.finish()
        if resampler is not None:
            chunks.extend(self._arrays(resampler.resample(None)))
        return chunks

    def _resampler(self, frame: av.AudioFrame) -> av.AudioResampler:
        """Float planar at the output rate; mono and stereo input leave it already downmixed to mono."""
        self._scale = np.float32(1.0)
        if self.mono and len(frame.layout.channels) <= 2:
            if len(frame.layout.channels) == 2:
                self._scale = STEREO_DOWNMIX_SCALE
            return av.AudioResampler(format="fltp", layout="mono", rate=self.rate, frame_size=RESAMPLED_FRAME)
        return av.AudioResampler(format="fltp", rate=self.rate, frame_size=RESAMPLED_FRAME)

    def _arrays(self, frames: list[av.AudioFrame]) -> Iterator[np.ndarray]:
        """Planar ``(channels, n)`` arrays; mono is the channel mean, like librosa and torchaudio
        (FFmpeg's own downmix adds stereo channels at -3 dB each, which makes mono louder: scaled
        back; more than two channels are resampled as they are and averaged here)."""
        for frame in frames:
            data = frame.to_ndarray()
            if self._scale != 1.0:
                data = data * self._scale
            yield data.mean(axis=0, keepdims=True, dtype=np.float32) if self.mono and len(data) > 1 else data

    def _packets(self, container: av.container.InputContainer) -> Iterator[av.Packet]:
        demuxer = container.demux(self.stream)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                return
            except av.FFmpegError as error:  # the container is damaged from here on
                self._note(error)
                return
            self.packets += 1
            yield packet

    def _frames(self, packet: av.Packet) -> list[av.AudioFrame]:
        try:
            frames = packet.decode()
        except av.FFmpegError as error:  # a corrupt packet: skip it, as players do, but remember why
            self._note(error)
            return []
        self.good_packets += bool(frames)
        return frames

    def _note(self, error: av.FFmpegError) -> None:
        self.errors += 1
        self.last_error = str(error)

    def _place(self, frame: av.AudioFrame) -> bool:
        """Locate the first frame in the stream; False if a seek cannot be trusted for this segment."""
        if not self.seek:
            self.position = 0
        elif frame.time is None:
            return False
        else:
            self.position = round((frame.time - self.origin) * self.src_rate)
        self._to_skip = -self.position % self.grid
        self.first_out = (self.position + self._to_skip) * self.rate // self.src_rate
        return self.first_out <= self.start

    def _skip_to_grid(self, frame: av.AudioFrame) -> av.AudioFrame | None:
        self.position += frame.samples
        skip, self._to_skip = self._to_skip, max(0, self._to_skip - frame.samples)
        if skip == 0:
            return frame
        return _drop_head(frame, skip) if skip < frame.samples else None


# Sample formats whose frames ``_MonoResampler`` reads straight from their planes (every audio decoder's
# output we know of: Vorbis, Opus, MP3, AAC give fltp, FLAC and WAV s16/s32); others take the per-frame path.
_MONO_READABLE: dict[str, tuple[type, bool, float]] = {  # name -> (dtype, planar, scale to [-1, 1])
    "fltp": (np.float32, True, 1.0), "flt": (np.float32, False, 1.0),
    "dblp": (np.float64, True, 1.0), "dbl": (np.float64, False, 1.0),
    "s16p": (np.int16, True, 1 / 32768), "s16": (np.int16, False, 1 / 32768),
    "s32p": (np.int32, True, 1 / 2147483648), "s32": (np.int32, False, 1 / 2147483648),
}


class _MonoResampler:
    """Mono float32 at ``rate`` from decoded frames, with few calls into PyAV and no allocation per frame.

    A compressed track is tens of thousands of small frames (576 to 2,048 samples); converting each
    one (``to_ndarray``) and passing it through PyAV's resampler cost more CPU than decoding it
    (measured on a 5-minute Vorbis track: 0.37 CPU s to decode, 1.0 s to decode and convert frame by
    frame), and so does keeping the frames alive until later (the decoder then allocates afresh). Here
    each frame's channels are summed straight into a preallocated block (one numpy call; the frame is
    free to go); each block of ``RESAMPLE_INPUT_FRAME`` samples is scaled to the channel mean (as
    before) and resampled by the same libswresample filter that ``resample`` uses: the same samples
    to float rounding. A change of rate, format or channel count mid-stream (chained Ogg) resamples
    what is pending, flushes the resampler and starts anew.
    """

    def __init__(self, rate: int, out: list[np.ndarray]) -> None:
        self.rate, self.out = rate, out
        self.key: tuple[int, str, int] | None = None  # (source rate, sample format, channels)
        self.spec: tuple[type, bool, float] = (np.float32, True, 1.0)
        self.block = np.empty(2 * RESAMPLE_INPUT_FRAME, dtype=np.float32)
        self.used = 0  # samples of ``block`` holding audio not resampled yet
        self.resampler: av.AudioResampler | None = None

    @staticmethod
    def accepts(frame: av.AudioFrame) -> bool:
        """Whether this path reads ``frame``'s sample format."""
        return frame.format.name in _MONO_READABLE

    def add(self, frame: av.AudioFrame) -> None:
        """Sum ``frame``'s channels into the block; resample the block once it is full."""
        key = (frame.sample_rate, frame.format.name, frame.layout.nb_channels)
        if key != self.key:
            self.finish()
            self.key, self.spec = key, _MONO_READABLE[key[1]]
        count = frame.samples
        if self.used + count > len(self.block):
            self._resample_pending()
            if count > len(self.block):
                self.block = np.empty(count, dtype=np.float32)
        target = self.block[self.used:self.used + count]
        dtype, planar, _ = self.spec
        planes = frame.planes
        if not planar:
            interleaved = np.frombuffer(planes[0], dtype, count * key[2]).reshape(count, key[2])
            np.sum(interleaved, axis=1, dtype=np.float32, out=target)
        elif len(planes) == 2 and dtype is np.float32:  # stereo float, the common case: one plain call
            np.add(np.frombuffer(planes[0], dtype, count), np.frombuffer(planes[1], dtype, count), out=target)
        elif len(planes) == 2:
            np.add(np.frombuffer(planes[0], dtype, count), np.frombuffer(planes[1], dtype, count),
                   out=target, dtype=np.float32, casting="unsafe")
        else:
            np.copyto(target, np.frombuffer(planes[0], dtype, count), casting="unsafe")
            for plane in planes[1:]:
                np.add(target, np.frombuffer(plane, dtype, count), out=target, dtype=np.float32, casting="unsafe")
        self.used += count
        if self.used >= RESAMPLE_INPUT_FRAME:
            self._resample_pending()

    def _resample_pending(self) -> None:
        if not self.used:
            return
        block = self.block[:self.used].copy()
        self.used = 0
        factor = self.spec[2] / self.key[2]  # the sum of the channels -> their mean, in [-1, 1]
        if factor != 1.0:
            block *= np.float32(factor)
        source_rate = self.key[0]
        if source_rate == self.rate:
            self.out.append(block[None, :])
            return
        if self.resampler is None:
            self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=self.rate, frame_size=RESAMPLED_FRAME)
        frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
        frame.sample_rate = source_rate
        self.out.extend(f.to_ndarray() for f in self.resampler.resample(frame))

    def finish(self) -> None:
        """Resample what is pending and flush the resampler (the end of the stream, or of its part in one form)."""
        if self.key is None:
            return
        self._resample_pending()
        if self.resampler is not None:
            self.out.extend(f.to_ndarray() for f in self.resampler.resample(None))
            self.resampler = None


def _drop_head(frame: av.AudioFrame, count: int) -> av.AudioFrame:
    data = frame.to_ndarray()
    step = 1 if frame.format.is_planar else len(frame.layout.channels)
    trimmed = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, count * step:]),
                                         format=frame.format.name, layout=frame.layout)
    trimmed.sample_rate = frame.sample_rate
    return trimmed


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise AudioDecodeError(f"{path}: no such file")
    if not path.is_file():
        raise AudioDecodeError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: empty file")
    try:
        container = av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise AudioDecodeError(f"{path}: not a readable audio file ({error})") from error
    if not container.streams.audio or not container.streams.audio[0].rate:
        container.close()
        raise AudioDecodeError(f"{path}: no audio stream")
    return container


def exact_length(path: str | Path) -> float | None:
    """The audio length that ``path``'s header states exactly (seconds), or None when it only estimates
    it (an MP3 without a Xing/Info/VBRI frame count) or cannot be read: no decoding."""
    try:
        info = mutagen.File(Path(path)).info
    except Exception:  # noqa: BLE001 - mutagen raises many types; an unreadable header means "unknown"
        return None
    kind = type(info).__module__.rsplit(".", 1)[-1]
    if kind not in _EXACT_LENGTH_KINDS or getattr(info, "sketchy", False) or not info.length:
        return None
    return float(info.length)


def _check_not_truncated(path: Path, reader: _SegmentReader) -> None:
    """Raise if decoding reached the end well before the duration the header states exactly."""
    if not reader.reached_end or reader.position is None:
        return
    declared = exact_length(path)
    if declared is None:
        return  # unknown, or an estimate from the bit rate (an MP3 without a Xing/Info/VBRI frame count)
    decoded = reader.position / reader.src_rate
    if decoded < declared - (1.0 + 0.01 * declared):
        raise AudioDecodeError(f"{path}: truncated or corrupt: the header declares {declared:.2f} s "
                               f"but audio stops at {decoded:.2f} s ({reader.last_error or 'end of file'})")



def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono float32 ``wave`` from ``from_rate`` to ``to_rate`` by libswresample, the decoder's own resampler.

    Output sample ``k`` lies at ``k / to_rate`` seconds, as in a direct decode at ``to_rate``; one decode
    at the highest rate that several models need feeds the others through this (engine: one decode per
    file). Measured: 0.04 CPU s for 200 s of audio from 22.05 to 16 kHz.
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if from_rate == to_rate:
        return wave
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=to_rate, frame_size=RESAMPLED_FRAME)
    chunks: list[np.ndarray] = []
    for start in range(0, len(wave), RESAMPLE_INPUT_FRAME):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, start:start + RESAMPLE_INPUT_FRAME]),
                                           format="fltp", layout="mono")
        frame.sample_rate = from_rate
        chunks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def sliding_windows(
    wave: np.ndarray, sample_rate: int, *, window_seconds: float, hop_seconds: float
) -> list[np.ndarray]:
    """Cut ``wave`` into windows of ``window_seconds`` every ``hop_seconds`` (views, no copies).

    Semantics (the original system's, made explicit):
    - a track no longer than one window is one window: the whole track, unpadded;
    - otherwise windows start at 0, hop, 2*hop, ... while they fit entirely;
    - if the last full window stops short of the end, one more window ending exactly at the
      end covers the tail, so no audio is ever ignored.
    """
    window = int(round(window_seconds * sample_rate))
    hop = int(round(hop_seconds * sample_rate))
    if window <= 0 or hop <= 0:
        raise ValueError("window_seconds and hop_seconds must be positive")
    n = len(wave)
    if n <= window:
        return [wave]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [wave[s : s + window] for s in starts]
