"""Decoding every format to mono float32 at a model's rate, segments by seeking, damaged files."""

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.errors import AudioDecodeError
from navembed_pipeline.lib.library.audio import AudioInfo, decode_audio, load_audio, probe, sliding_windows
from navembed_pipeline.sample_data import synth

SR = 44100
SECONDS = 3.0
FORMATS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
LOSSLESS = (".wav", ".flac")
# Lossy codecs add priming/padding (AAC pads to whole 1024-sample frames): at most this much.
CODEC_SLACK_SECONDS = 0.05


@pytest.fixture(scope="module")
def stereo() -> np.ndarray:
    return np.stack([synth.render("piano", seconds=SECONDS, sample_rate=SR, seed=1),
                     synth.render("bass", seconds=SECONDS, sample_rate=SR, seed=1)])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, stereo: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    return {suffix: synth.write_audio(folder / f"song{suffix}", stereo, SR) for suffix in FORMATS}


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_decodes_to_mono_float32_at_the_requested_rate(files, suffix):
    wave = load_audio(files[suffix], 24000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) / 24000 - SECONDS) <= CODEC_SLACK_SECONDS
    assert 0.1 < np.abs(wave).max() <= 1.0


@pytest.mark.parametrize("suffix", FORMATS)
def test_probe_reports_the_headers(files, suffix):
    info = probe(files[suffix])
    assert isinstance(info, AudioInfo)
    assert info.channels == 2
    assert info.sample_rate == (48000 if suffix == ".opus" else SR)
    assert abs(info.duration_seconds - SECONDS) <= CODEC_SLACK_SECONDS


def test_resampling_keeps_a_tones_frequency(tmp_path):
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * SR) / SR)
    wave = load_audio(synth.write_audio(tmp_path / "tone.flac", tone, SR), 24000)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    peak_hz = np.fft.rfftfreq(len(wave), 1 / 24000)[np.argmax(spectrum)]
    assert abs(peak_hz - 1000) <= 1.0


@pytest.mark.parametrize("suffix", LOSSLESS)
def test_stereo_is_downmixed_to_the_mean_of_its_channels(files, stereo, suffix):
    mono = load_audio(files[suffix], SR)
    channels = decode_audio(files[suffix], mono=False).samples
    assert channels.shape == (2, len(mono))
    np.testing.assert_allclose(mono, channels.mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(channels, stereo, atol=1 / 32768)  # 16-bit quantisation only


@pytest.mark.parametrize("suffix", FORMATS)
def test_downmixing_before_resampling_equals_the_mean_of_the_resampled_channels(files, suffix):
    mono = load_audio(files[suffix], 22050)  # libswresample downmixes first, then resamples one channel
    channels = decode_audio(files[suffix], sample_rate=22050, mono=False).samples
    assert channels.shape == (2, len(mono))
    np.testing.assert_allclose(mono, channels.mean(axis=0), atol=2e-7)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize(("offset", "duration"), [(0.2, 1.0), (1.3, 1.0), (2.0, None)])
def test_a_segment_equals_the_same_slice_of_a_full_read(files, suffix, offset, duration):
    full = load_audio(files[suffix], 24000)
    segment = load_audio(files[suffix], 24000, offset_seconds=offset, duration_seconds=duration)
    start = round(offset * 24000)
    expected = full[start : None if duration is None else start + round(duration * 24000)]
    if suffix in LOSSLESS:
        np.testing.assert_array_equal(segment, expected)
    else:  # decoders may differ after a seek (AAC's noise substitution is random): near, not equal
        assert segment.shape == expected.shape
        assert np.corrcoef(segment, expected)[0, 1] > 0.99


@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_reading_the_end_of_a_long_file_seeks_instead_of_decoding_it_all(tmp_path, suffix):
    path = synth.write_audio(tmp_path / f"long{suffix}", synth.render("noise", seconds=40, sample_rate=SR), SR)
    whole = decode_audio(path, sample_rate=24000)
    tail = decode_audio(path, sample_rate=24000, offset_seconds=37.0, duration_seconds=2.0)
    assert tail.seeked and not whole.seeked
    assert tail.packets_read < whole.packets_read / 8
    assert tail.samples.shape == (1, 48000)


def test_a_segment_running_past_the_end_is_cut_at_the_end(files):
    wave = load_audio(files[".flac"], SR, offset_seconds=2.5, duration_seconds=10.0)
    assert len(wave) == round(0.5 * SR)


@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_an_offset_beyond_the_end_raises(files, suffix):
    with pytest.raises(AudioDecodeError, match="beyond the end"):
        load_audio(files[suffix], SR, offset_seconds=SECONDS + 1)


def test_garbage_after_the_last_frame_keeps_the_audio_and_warns(tmp_path, files, caplog):
    damaged = tmp_path / "tail.flac"
    damaged.write_bytes(files[".flac"].read_bytes() + np.random.default_rng(0).bytes(4000))
    with caplog.at_level(logging.WARNING, logger="navembed_pipeline.lib.library.audio"):
        wave = load_audio(damaged, SR)
    assert abs(len(wave) / SR - SECONDS) < 0.2
    assert "failed to decode" in caplog.text


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * 12 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _bad_file(kind: str, folder: Path, files: dict[str, Path]) -> Path:
    noise = np.random.default_rng(7).bytes(60000)
    flac, mp3 = files[".flac"].read_bytes(), files[".mp3"].read_bytes()
    contents = {
        "empty.flac": b"", "text.mp3": b"not audio at all\n" * 100, "image.flac": _png(),
        "random.mp3": noise, "random.flac": noise, "header_then_garbage.flac": flac[:4000] + noise,
        "truncated.flac": flac[: len(flac) // 2], "truncated.mp3": mp3[: len(mp3) // 2],
        "truncated.m4a": files[".m4a"].read_bytes()[:3000], "truncated.wav": files[".wav"].read_bytes()[:100000],
    }
    path = folder / kind
    if kind == "folder.flac":
        path.mkdir()
    elif kind != "missing.flac":
        path.write_bytes(contents[kind])
    return path


BAD_FILES = ("missing.flac", "folder.flac", "empty.flac", "text.mp3", "image.flac", "random.mp3", "random.flac",
             "header_then_garbage.flac", "truncated.flac", "truncated.mp3", "truncated.m4a", "truncated.wav")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_file_raises_audio_decode_error_naming_it(tmp_path, files, kind):
    path = _bad_file(kind, tmp_path, files)
    with pytest.raises(AudioDecodeError) as raised:
        load_audio(path, 24000)
    assert str(path) in str(raised.value)


def test_probe_of_a_non_audio_file_raises(tmp_path):
    path = tmp_path / "cover.flac"
    path.write_bytes(_png())
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        probe(path)


class TestSlidingWindows:
    def test_a_short_track_is_one_unpadded_window(self):
        wave = np.arange(50, dtype=np.float32)
        (window,) = sliding_windows(wave, 10, window_seconds=6, hop_seconds=2)
        assert window.shape == (50,) and np.shares_memory(window, wave)

    def test_windows_start_every_hop_and_the_tail_window_ends_at_the_end(self):
        wave = np.arange(105, dtype=np.float32)
        windows = sliding_windows(wave, 10, window_seconds=3, hop_seconds=2)
        assert [int(w[0]) for w in windows] == [0, 20, 40, 60, 75]
        assert all(len(w) == 30 for w in windows) and int(windows[-1][-1]) == 104

    def test_no_tail_window_when_the_last_window_ends_exactly_at_the_end(self):
        windows = sliding_windows(np.zeros(70), 10, window_seconds=3, hop_seconds=2)
        assert [len(w) for w in windows] == [30, 30, 30]

    def test_non_positive_sizes_are_rejected(self):
        with pytest.raises(ValueError):
            sliding_windows(np.zeros(10), 10, window_seconds=0, hop_seconds=1)


@pytest.mark.parametrize(("name", "channels", "bits"), [("mono.wav", 1, 16), ("stereo24.flac", 2, 24),
                                                        ("surround.wav", 6, 16), ("surround24.flac", 6, 24)])
def test_the_block_downmix_equals_the_mean_of_the_channels_decoded_apart(tmp_path, name, channels, bits):
    """Mono output sums each frame's channels into blocks (planar or interleaved, 16- or 24-bit samples):
    it must equal FFmpeg's own decode of every channel, resampled, then averaged."""
    layers = np.stack([synth.render(("piano", "bass", "drums")[k % 3], seconds=SECONDS, sample_rate=SR, seed=k)
                       for k in range(channels)])
    path = synth.write_audio(tmp_path / name, layers[0] if channels == 1 else layers, SR, bits=bits)
    for rate in (22050, 16000, SR):
        mono = load_audio(path, rate)
        apart = decode_audio(path, sample_rate=rate, mono=False).samples
        assert apart.shape == (channels, len(mono))
        np.testing.assert_allclose(mono, apart.mean(axis=0), atol=3e-7)
