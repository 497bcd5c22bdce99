"""Writing waves to every supported format, with tags, so that decoding gives them back."""

import av
import mutagen
import numpy as np
import pytest

from navembed_pipeline.lib.library.audio import load_audio, probe
from navembed_pipeline.lib.library.encode import SUPPORTED_SUFFIXES, write_audio

TAGS = {"title": "Ünïcode Title", "artist": "Artist", "album": "Album", "tracknumber": "4"}


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_each_suffix_gets_its_codec_and_decodes_back(tmp_path, suffix):
    tone = 0.4 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
    path = write_audio(tmp_path / f"tone{suffix}", tone, 22050)
    codec = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "mp3float", ".ogg": "vorbis", ".opus": "opus", ".m4a": "aac"}
    assert probe(path).codec == codec[suffix]
    wave = load_audio(path, 22050)
    assert abs(len(wave) - 22050) <= 1100  # AAC pads to whole 1024-sample frames
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.fft.rfftfreq(len(wave), 1 / 22050)[np.argmax(spectrum)] - 440) < 3


@pytest.mark.parametrize("suffix", [s for s in SUPPORTED_SUFFIXES if s != ".wav"])
def test_tags_are_readable_by_mutagen(tmp_path, suffix):
    path = write_audio(tmp_path / f"tagged{suffix}", np.zeros(4410), 44100, tags=TAGS)
    tags = mutagen.File(path, easy=True)
    assert {key: tags[key][0] for key in TAGS} == TAGS


def test_wav_tags_go_into_its_riff_info_chunk(tmp_path):
    path = write_audio(tmp_path / "tagged.wav", np.zeros(4410), 44100, tags=TAGS)
    with av.open(str(path)) as container:
        assert container.metadata["title"] == TAGS["title"] and container.metadata["track"] == "4"


def test_channels_are_kept(tmp_path):
    stereo = np.stack([np.full(1000, 0.25), np.full(1000, -0.25)])
    info = probe(write_audio(tmp_path / "stereo.flac", stereo, 8000))
    assert (info.channels, info.sample_rate) == (2, 8000)


def test_an_unknown_suffix_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        write_audio(tmp_path / "song.xyz", np.zeros(10), 8000)
