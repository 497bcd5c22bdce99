"""An album image whose embedded CUE sheet cannot be read fails with the reason; it is never embedded
as one long track without a word. A damaged tag block without any sheet still decodes as one track."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.engine.worker import decode_track
from navembed_pipeline.lib.library.encode import write_audio
from navembed_pipeline.lib.library.navidrome import Track

RATE = 22050
FLAC_PICTURE = 6  # FLAC metadata block type


SHEET = 'FILE "album.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n  TRACK 02 AUDIO\n    INDEX 01 00:01:00\n'


def flac_with_block(path: Path, block_type: int, tags: dict[str, str] | None = None) -> Path:
    """A real 3 s FLAC file with one more metadata block of ``block_type`` holding 20 garbage bytes (far
    too short for that block's own layout): the audio decoder skips it, the tag parser refuses the file."""
    write_audio(path, 0.1 * np.sin(np.linspace(0, 2000, 3 * RATE)).astype(np.float32), RATE, tags=tags)
    raw = path.read_bytes()
    size = int.from_bytes(raw[5:8], "big")
    first = bytes([raw[4] & 0x7F]) + raw[5:8 + size]  # STREAMINFO, no longer the last block
    last = raw[4] & 0x80
    body = b"\x01" * 20
    block = bytes([(0x80 if last else 0) | block_type]) + len(body).to_bytes(3, "big") + body
    path.write_bytes(raw[:4] + first + block + raw[8 + size:])
    return path


def track_of(path: Path) -> Track:
    return Track(id="t1", path=path, title="Album", artist="Band", album="Album", album_artist="Band",
                 duration_seconds=3.0, size=path.stat().st_size, updated_at=datetime(2026, 1, 1, tzinfo=UTC),
                 library_id=1, library_name="Music", suffix="flac")


def test_an_album_whose_cuesheet_tag_cannot_be_read_fails_with_the_reason(tmp_path: Path) -> None:
    """Two tracks in a CUESHEET tag, and a damaged cover-art block: the audio decodes fine, the tag parser
    refuses the file. It used to become one 3 s track with no failure recorded."""
    good = flac_with_block(tmp_path / "intact.flac", FLAC_PICTURE, tags=None)
    assert decode_track(track_of(good), RATE, False).error is None  # the damage alone does not stop decoding
    path = flac_with_block(tmp_path / "album.flac", FLAC_PICTURE, tags={"CUESHEET": SHEET})
    decoded = decode_track(track_of(path), RATE, False)
    assert decoded.waves is None or not decoded.segments
    assert decoded.error is not None and "embedded CUE sheet that cannot be read" in decoded.error, decoded.error


def test_a_damaged_tag_block_without_a_sheet_is_still_one_track(tmp_path: Path) -> None:
    path = flac_with_block(tmp_path / "song.flac", FLAC_PICTURE)
    decoded = decode_track(track_of(path), RATE, False)
    assert decoded.error is None and len(decoded.segments) == 1
