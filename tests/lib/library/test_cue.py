"""CUE sheets: parsing, encodings, embedded sheets, segments and splitting an album into tracks."""

from pathlib import Path

import mutagen
import mutagen.flac
import numpy as np
import pytest

from navembed_pipeline.lib.errors import CueSheetError
from navembed_pipeline.lib.library.audio import decode_audio
from navembed_pipeline.lib.library.cue import (CueSheet, CueTrack, Segment, cue_segments, embedded_cue, format_cue,
                                               parse_cue, read_cue_file, split_cue)
from navembed_pipeline.sample_data import synth

ALBUM = """REM GENRE "Cool Jazz"
REM DATE 1959
REM COMMENT "ExactAudioCopy v1.6"
PERFORMER "Miles Davis"
TITLE "Kind of Blue"
FILE "Kind of Blue.flac" WAVE
  TRACK 01 AUDIO
    TITLE "So What"
    INDEX 01 00:00:00
  TRACK 02 AUDIO
    TITLE "Freddie "the" Freeloader"
    PERFORMER "Miles Davis Sextet"
    FLAGS DCP
    INDEX 00 09:20:50
    INDEX 01 09:22:00
  TRACK 03 AUDIO
    TITLE Blue in Green's Echo
    ISRC USSM15900113
    INDEX 01 19:01:74
    INDEX 02 20:00:00
"""


def test_a_sheet_gives_album_fields_and_tracks_with_index_01_offsets():
    sheet = parse_cue(ALBUM)
    assert (sheet.performer, sheet.title) == ("Miles Davis", "Kind of Blue")
    assert (sheet.genre, sheet.date) == ("Cool Jazz", "1959")
    assert sheet.files == ("Kind of Blue.flac",)
    assert [t.number for t in sheet.tracks] == [1, 2, 3]
    assert [t.offset_seconds for t in sheet.tracks] == [0.0, 562.0, pytest.approx(19 * 60 + 1 + 74 / 75)]
    assert all(t.file == "Kind of Blue.flac" for t in sheet.tracks)


def test_index_00_is_the_pregap_start_and_later_indexes_do_not_move_a_track():
    tracks = parse_cue(ALBUM).tracks
    assert tracks[0].pregap_offset_seconds is None
    assert tracks[1].pregap_offset_seconds == pytest.approx(9 * 60 + 20 + 50 / 75)
    assert tracks[2].offset_seconds == pytest.approx(1141 + 74 / 75)


def test_quoted_unquoted_and_inner_quoted_values():
    tracks = parse_cue(ALBUM).tracks
    assert [t.title for t in tracks] == ["So What", 'Freddie "the" Freeloader', "Blue in Green's Echo"]
    assert [t.performer for t in tracks] == [None, "Miles Davis Sextet", None]


def test_an_unquoted_file_name_drops_its_type_word():
    sheet = parse_cue("FILE album.flac WAVE\nTRACK 1 AUDIO\nINDEX 01 00:00:00\n")
    assert sheet.files == ("album.flac",)


def test_tabs_and_windows_line_endings_are_whitespace_like_any_other():
    text = 'FILE "a.flac" WAVE\r\n\tTRACK\t01 AUDIO\r\n\t\tTITLE\t"Tabbed"\r\n\t\tINDEX 01\t00:01:00\r\n'
    (track,) = parse_cue(text).tracks
    assert (track.title, track.offset_seconds) == ("Tabbed", 1.0)


def test_format_cue_reads_back_to_the_same_sheet():
    sheet = parse_cue(ALBUM)
    assert parse_cue(format_cue(sheet)) == sheet


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("TRACK 01 AUDIO\n", 1, "TRACK before any FILE"),
    ('FILE "a.flac" WAVE\nINDEX 01 00:00:00\n', 2, "INDEX outside a TRACK"),
    ('FILE "a.flac" WAVE\nTRACK 01 AUDIO\nINDEX 01 00:00:75\n', 3, "bad time"),
    ('FILE "a.flac" WAVE\nTRACK 01 AUDIO\nINDEX 01 1:2\n', 3, "bad time"),
    ('FILE "a.flac" WAVE\nTRACK xx AUDIO\n', 2, "bad track number"),
    ('FILE "a.flac" WAVE\nTRACK 01 AUDIO\nTITLE "open\nINDEX 01 00:00:00\n', 3, "unterminated quote"),
    ('FILE "a.flac" WAVE\nTRACK 01 AUDIO\nINDEX 00 00:00:00\nTRACK 02 AUDIO\nINDEX 01 00:10:00\n', 2, "no INDEX 01"),
    ('FILE "a.flac" WAVE\nTRACK 01 AUDIO\nINDEX 01 00:10:00\nTRACK 02 AUDIO\nINDEX 01 00:05:00\n', 4,
     "does not start after track 1"),
])
def test_a_malformed_sheet_raises_with_its_line_number(text, line, reason):
    with pytest.raises(CueSheetError, match=rf"line {line}: .*{reason}"):
        parse_cue(text)


def test_a_sheet_without_tracks_raises():
    with pytest.raises(CueSheetError, match="no TRACK"):
        parse_cue('PERFORMER "x"\nFILE "a.flac" WAVE\n')


@pytest.mark.parametrize(("encoding", "prefix"), [
    ("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("utf-16", b""),
])
def test_cue_files_in_common_encodings(tmp_path, encoding, prefix):
    text = 'PERFORMER "Sigur Rós"\nFILE "a.flac" WAVE\nTRACK 01 AUDIO\nTITLE "Café ’Olsen’"\nINDEX 01 00:00:00\n'
    path = tmp_path / "album.cue"
    path.write_bytes(prefix + text.encode(encoding))
    sheet = read_cue_file(path)
    assert sheet.performer == "Sigur Rós"
    assert sheet.tracks[0].title == "Café ’Olsen’"


def test_a_missing_cue_file_raises_cue_sheet_error(tmp_path):
    with pytest.raises(CueSheetError, match="cannot read"):
        read_cue_file(tmp_path / "none.cue")


def test_segments_run_from_index_01_to_the_next_and_the_last_to_the_end():
    segments = cue_segments(parse_cue(ALBUM), 1500.0)
    assert [s.index for s in segments] == [1, 2, 3]
    assert segments[0] == Segment(1, "So What", "Miles Davis", 0.0, 562.0)
    assert segments[1].performer == "Miles Davis Sextet"
    assert segments[1].duration_seconds == pytest.approx(1141 + 74 / 75 - 562)
    assert segments[2].offset_seconds + segments[2].duration_seconds == pytest.approx(1500.0)


def test_an_untitled_track_is_named_by_its_number():
    sheet = CueSheet(None, None, ("a.flac",), (CueTrack(7, None, None, 0.0, file="a.flac"),))
    assert cue_segments(sheet, 10.0)[0].title == "Track 07"


def test_a_track_starting_after_the_audio_ends_raises():
    with pytest.raises(CueSheetError, match="beyond the end"):
        cue_segments(parse_cue(ALBUM), 1000.0)


def test_a_multi_file_sheet_gives_the_tracks_of_the_named_file():
    text = ('FILE "01 Intro.wav" WAVE\nTRACK 01 AUDIO\nINDEX 01 00:00:00\n'
            'FILE "02 Song.wav" WAVE\nTRACK 02 AUDIO\nTITLE "Song"\nINDEX 01 00:00:00\n'
            'TRACK 03 AUDIO\nINDEX 01 01:00:00\n')
    sheet = parse_cue(text)
    segments = cue_segments(sheet, 90.0, file_name="02 Song.flac")  # re-encoded since: matched by stem
    assert [(s.title, s.offset_seconds, s.duration_seconds) for s in segments] == [
        ("Song", 0.0, 60.0), ("Track 03", 60.0, 30.0)]
    with pytest.raises(CueSheetError, match="names 2 files"):
        cue_segments(sheet, 90.0)
    with pytest.raises(CueSheetError, match="does not name"):
        cue_segments(sheet, 90.0, file_name="other.flac")


@pytest.fixture()
def album(tmp_path: Path) -> tuple[Path, CueSheet]:
    path = tmp_path / "album" / "Generated Album.flac"
    sheet = synth.write_album(path, [("Intro", "pad"), ("Beat: 1/2", "drums"), ("Outro", "piano")],
                              seconds_per_track=1.0, sample_rate=22050, seed=3)
    return path, sheet


def test_write_album_writes_a_sheet_beside_the_audio(album):
    path, sheet = album
    assert read_cue_file(path.with_suffix(".cue")) == sheet
    assert [t.offset_seconds for t in sheet.tracks] == [0.0, 1.0, 2.0]


def test_a_cuesheet_tag_in_a_flac_is_found(album, tmp_path):
    path, sheet = album
    tagged = synth.write_audio(tmp_path / "tagged.flac", np.zeros(22050 * 3), 22050,
                               tags={"CUESHEET": format_cue(sheet)})
    assert embedded_cue(tagged) == sheet


def test_a_flac_cuesheet_block_is_found(album):
    path, _ = album
    flac = mutagen.flac.FLAC(path)
    block = mutagen.flac.CueSheet(None)
    for number, start in ((1, 0), (2, 22050), (3, 44100)):
        track = mutagen.flac.CueSheetTrack(number, start)
        track.indexes.append(mutagen.flac.CueSheetTrackIndex(1, 0))
        block.tracks.append(track)
    block.tracks.append(mutagen.flac.CueSheetTrack(170, 66150))  # the lead-out
    flac.cuesheet = block
    flac.save()
    sheet = embedded_cue(path)
    assert [(t.number, t.offset_seconds) for t in sheet.tracks] == [(1, 0.0), (2, 1.0), (3, 2.0)]


def test_files_without_a_sheet_have_none(album, tmp_path):
    path, _ = album
    text = tmp_path / "notes.flac"
    text.write_text("not audio")
    assert embedded_cue(path) is None
    assert embedded_cue(text) is None


def test_split_writes_one_tagged_file_per_track(album, tmp_path):
    path, sheet = album
    written = split_cue(path, sheet, tmp_path / "split")
    assert [p.name for p in written] == ["01 - Intro.flac", "02 - Beat_ 1_2.flac", "03 - Outro.flac"]
    tags = [mutagen.File(p) for p in written]
    assert [f.info.length for f in tags] == [1.0, 1.0, 1.0]
    assert [f["title"] for f in tags] == [["Intro"], ["Beat: 1/2"], ["Outro"]]
    assert [f["tracknumber"] for f in tags] == [["1"], ["2"], ["3"]]
    assert all(f["album"] == ["Generated Album"] and f["artist"] == ["navembed"] for f in tags)


def test_split_tracks_join_back_into_the_original_samples(album, tmp_path):
    path, sheet = album
    written = split_cue(path, sheet, tmp_path / "split")
    joined = np.concatenate([decode_audio(p, mono=False).samples for p in written], axis=1)
    np.testing.assert_array_equal(joined, decode_audio(path, mono=False).samples)


def test_split_keeps_24_bit_depth(tmp_path):
    path = tmp_path / "hires.flac"
    synth.write_audio(path, synth.render("pad", seconds=2, sample_rate=48000), 48000, bits=24)
    sheet = parse_cue('FILE "hires.flac" WAVE\nTRACK 01 AUDIO\nINDEX 01 00:00:00\nTRACK 02 AUDIO\nINDEX 01 00:01:00\n')
    written = split_cue(path, sheet, tmp_path / "split")
    assert [mutagen.File(p).info.bits_per_sample for p in written] == [24, 24]
    joined = np.concatenate([decode_audio(p, mono=False).samples for p in written], axis=1)
    np.testing.assert_array_equal(joined, decode_audio(path, mono=False).samples)
