"""What to embed for one library track: the whole file, or each track of its CUE sheet.

Navidrome lists a CUE album as one file; navembed embeds its tracks separately. A sheet is taken
from ``<stem>.cue`` beside the audio file, else from a CUESHEET embedded in the file.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from navembed_pipeline.lib.errors import CueSheetError
from navembed_pipeline.lib.library.cue import cue_segments, embedded_cue, read_cue_file
from navembed_pipeline.lib.library.navidrome import Track


@dataclass(frozen=True)
class TrackSegment:
    """One embedded unit: index 1.. within the track, its title, offset and duration in seconds."""

    index: int
    title: str
    offset_seconds: float
    duration_seconds: float


def segments_for(track: Track) -> list[TrackSegment]:
    """The segments of ``track``: its CUE tracks if it has a sheet, else the whole file."""
    sheet = find_cue_sheet(Path(track.path))
    if sheet is None:
        return [TrackSegment(1, track.display_name, 0.0, float(track.duration_seconds))]
    return [TrackSegment(s.index, _segment_title(s, track), s.offset_seconds, s.duration_seconds)
            for s in cue_segments(sheet, float(track.duration_seconds), file_name=Path(track.path).name)]


def track_fingerprint(track: Track) -> str:
    """Identifies the file's content version from what Navidrome records (no disk I/O)."""
    raw = f"{track.path}|{track.size}|{track.updated_at.isoformat()}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


def find_cue_sheet(audio: Path):
    """The CUE sheet of ``audio``: ``<stem>.cue`` beside it, else an embedded CUESHEET, else None."""
    sibling = audio.with_suffix(".cue")
    if sibling.is_file():
        return read_cue_file(sibling)
    try:
        return embedded_cue(audio)
    except CueSheetError:
        raise
    except Exception as exc:  # noqa: BLE001 - the track fails with the reason, never becomes "one track"
        raise CueSheetError(f"{audio}: its embedded CUE sheet cannot be read ({type(exc).__name__}: {exc}); "
                            "repair its tags or put a .cue file beside it") from exc


def _segment_title(segment, track: Track) -> str:
    performer = segment.performer or track.artist
    return f"{performer} - {segment.title}" if performer else segment.title
