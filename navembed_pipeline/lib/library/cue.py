"""CUE sheets: parse them (files, embedded tags, FLAC blocks), cut an album into segments, split it.

A sheet's times are ``mm:ss:ff`` with 75 frames per second. A track's audio starts at its INDEX 01
and runs to the next track's INDEX 01 (its pregap, INDEX 00 → INDEX 01, stays with the previous
track, as most rippers and shntool do), and the last track runs to the end of the file. Audio
before the first INDEX 01 (a hidden track one) belongs to no segment.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import mutagen
import mutagen.flac

from .audio import decode_audio, probe
from .encode import write_audio
from ..errors import CueSheetError
from .filenames import safe_file_name

FRAMES_PER_SECOND = 75
_TIME = re.compile(r"^(\d{1,3}):(\d{1,2}):(\d{1,2})$")
MAX_TITLE_BYTES = 180  # "NN - " and the suffix still fit the sanitiser's cap


@dataclass(frozen=True)
class CueTrack:
    """One TRACK: its INDEX 01 (and INDEX 00, the pregap start, if any) in seconds within ``file``."""

    number: int
    title: str | None
    performer: str | None
    offset_seconds: float
    pregap_offset_seconds: float | None = None
    file: str | None = None


@dataclass(frozen=True)
class CueSheet:
    """A parsed sheet: album-level fields, the FILEs it names in order, and its tracks."""

    performer: str | None
    title: str | None
    files: tuple[str, ...]
    tracks: tuple[CueTrack, ...]
    genre: str | None = None
    date: str | None = None


@dataclass(frozen=True)
class Segment:
    """A span of one audio file to embed or split out; ``index`` counts from 1."""

    index: int
    title: str
    performer: str | None
    offset_seconds: float
    duration_seconds: float


def parse_cue(text: str, *, source: str = "CUE sheet") -> CueSheet:
    """Parse CUE ``text``; a malformed sheet raises ``CueSheetError`` naming ``source`` and the line."""
    parser = _Parser(source)
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        parser.line = number
        parser.feed(line.strip())
    return parser.sheet()


def _split_word(line: str) -> tuple[str, str]:
    """The first word and the stripped rest (separated by spaces or tabs)."""
    parts = line.split(None, 1)
    return (parts[0], parts[1].strip() if len(parts) > 1 else "") if parts else ("", "")


class _Parser:
    """Reads a sheet line by line; tracks are completed when the next TRACK (or the end) arrives."""

    def __init__(self, source: str) -> None:
        self.source, self.line = source, 0
        self.album: dict[str, str | None] = {"performer": None, "title": None, "genre": None, "date": None}
        self.files: list[str] = []
        self.tracks: list[CueTrack] = []
        self.track: dict | None = None  # the TRACK being read: CueTrack fields, plus the line it began on

    def fail(self, reason: str, line: int | None = None) -> CueSheetError:
        return CueSheetError(f"{self.source}, line {line or self.line}: {reason}")

    def feed(self, line: str) -> None:
        command, rest = _split_word(line)
        command = command.upper()
        if command == "REM":
            key, value = _split_word(rest)
            if key.lower() in ("genre", "date"):
                self.album[key.lower()] = self.unquote(value)
        elif command in ("PERFORMER", "TITLE"):
            target = self.album if self.track is None else self.track
            target[command.lower()] = self.unquote(rest) or None
        elif command == "FILE":
            self.files.append(self.file_name(rest))
        elif command == "TRACK":
            self.start_track(rest)
        elif command == "INDEX":
            self.index(rest)

    def start_track(self, rest: str) -> None:
        if not self.files:
            raise self.fail("TRACK before any FILE")
        self.finish_track()
        number = rest.split()[0] if rest else ""
        if not number.isdigit():
            raise self.fail(f"bad track number in 'TRACK {rest}'")
        self.track = {"number": int(number), "title": None, "performer": None, "offset_seconds": None,
                      "pregap_offset_seconds": None, "file": self.files[-1], "line": self.line}

    def index(self, rest: str) -> None:
        if self.track is None:
            raise self.fail("INDEX outside a TRACK")
        fields = rest.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise self.fail(f"bad INDEX {rest!r} (expected 'INDEX nn mm:ss:ff')")
        field = {0: "pregap_offset_seconds", 1: "offset_seconds"}.get(int(fields[0]))
        seconds = self.seconds(fields[1])
        if field:  # INDEX 02.. are sub-indexes inside a track: they do not move its boundaries
            self.track[field] = seconds

    def finish_track(self) -> None:
        if self.track is None:
            return
        fields = dict(self.track)
        line = fields.pop("line")
        if fields["offset_seconds"] is None:
            raise self.fail(f"track {fields['number']} has no INDEX 01", line)
        same_file = [t for t in self.tracks if t.file == fields["file"]]
        if same_file and fields["offset_seconds"] <= same_file[-1].offset_seconds:
            raise self.fail(f"track {fields['number']} does not start after track {same_file[-1].number}", line)
        self.tracks.append(CueTrack(**fields))
        self.track = None

    def sheet(self) -> CueSheet:
        self.finish_track()
        if not self.tracks:
            raise CueSheetError(f"{self.source}: no TRACK found")
        return CueSheet(self.album["performer"], self.album["title"], tuple(self.files), tuple(self.tracks),
                        genre=self.album["genre"], date=self.album["date"])

    def unquote(self, value: str) -> str:
        if not value.startswith('"'):
            return value
        if len(value) < 2 or not value.endswith('"'):
            raise self.fail(f"unterminated quote in {value!r}")
        return value[1:-1]

    def file_name(self, rest: str) -> str:
        if rest.startswith('"'):
            end = rest.rfind('"')
            if end == 0:
                raise self.fail(f"unterminated quote in FILE {rest!r}")
            name = rest[1:end]
        else:  # unquoted: the last word is the file type (WAVE, MP3, ...)
            name = rest.rsplit(None, 1)[0] if len(rest.split()) > 1 else rest
        if not name:
            raise self.fail("FILE without a name")
        return name

    def seconds(self, stamp: str) -> float:
        match = _TIME.match(stamp)
        if not match:
            raise self.fail(f"bad time {stamp!r} (expected mm:ss:ff)")
        minutes, seconds, frames = (int(part) for part in match.groups())
        if seconds >= 60 or frames >= FRAMES_PER_SECOND:
            raise self.fail(f"bad time {stamp!r} (seconds < 60, frames < {FRAMES_PER_SECOND})")
        return minutes * 60 + seconds + frames / FRAMES_PER_SECOND


def format_time(seconds: float) -> str:
    """``seconds`` as a CUE ``mm:ss:ff`` time (rounded to the nearest frame)."""
    frames = round(seconds * FRAMES_PER_SECOND)
    seconds, frame = divmod(frames, FRAMES_PER_SECOND)
    return f"{seconds // 60:02d}:{seconds % 60:02d}:{frame:02d}"


def format_cue(sheet: CueSheet) -> str:
    """Render ``sheet`` as CUE text that ``parse_cue`` reads back to an equal sheet (to the frame)."""
    lines = [f'REM {key} "{value}"' for key, value in (("GENRE", sheet.genre), ("DATE", sheet.date)) if value]
    lines += [f'{key} "{value}"' for key, value in (("PERFORMER", sheet.performer), ("TITLE", sheet.title)) if value]
    current = None
    for track in sheet.tracks:
        file = track.file or (sheet.files[0] if sheet.files else "audio.wav")
        if file != current:
            lines.append(f'FILE "{file}" WAVE')
            current = file
        lines.append(f"  TRACK {track.number:02d} AUDIO")
        fields = (("TITLE", track.title), ("PERFORMER", track.performer))
        lines += [f'    {key} "{value}"' for key, value in fields if value]
        if track.pregap_offset_seconds is not None:
            lines.append(f"    INDEX 00 {format_time(track.pregap_offset_seconds)}")
        lines.append(f"    INDEX 01 {format_time(track.offset_seconds)}")
    return "\n".join(lines) + "\n"


def read_cue_file(path: str | Path) -> CueSheet:
    """Parse a .cue file: UTF-8 (with or without BOM), UTF-16 with BOM, else legacy cp1252/latin-1."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CueSheetError(f"{path}: cannot read the CUE sheet ({error.strerror})") from error
    return parse_cue(_decode_text(data), source=str(path))


def _decode_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")  # never fails: every byte is a character


_SNIFF_BYTES = 1 << 20
_FLAC_CUESHEET = 5  # FLAC metadata block type


def embedded_cue(audio_path: str | Path) -> CueSheet | None:
    """The sheet inside ``audio_path``: a CUESHEET tag, else a FLAC CUESHEET block; None if neither.

    An unreadable tag block counts as "no sheet" (decoding reports real damage) unless the file's bytes
    show a sheet (``declares_cuesheet``); that, or a malformed CUESHEET tag, raises ``CueSheetError``.
    """
    audio_path = Path(audio_path)
    try:
        audio = mutagen.File(audio_path)
    except (mutagen.MutagenError, OSError) as exc:
        if declares_cuesheet(audio_path):  # an album image whose sheet is unreadable: not "one track"
            raise CueSheetError(
                f"{audio_path}: it holds an embedded CUE sheet that cannot be read ({exc}); embedding it would "
                "make the whole album one track — repair its tags or put a .cue file beside it") from exc
        return None
    if audio is None:
        return None
    text = _cuesheet_tag(audio.tags)
    if text:
        return parse_cue(text, source=f"{audio_path} (CUESHEET tag)")
    block = getattr(audio, "cuesheet", None)
    if isinstance(block, mutagen.flac.CueSheet):
        return _from_flac_block(block, audio.info.sample_rate)
    return None


def declares_cuesheet(audio_path: Path) -> bool:
    """Whether the file's raw bytes show an embedded CUE sheet (a FLAC CUESHEET block, or a CUESHEET tag
    near either end), read without a tag parser: for files whose tags the parser refused."""
    try:
        with open(audio_path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            handle.seek(max(0, handle.seek(0, 2) - _SNIFF_BYTES))
            tail = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return _flac_cuesheet_block(head) or b"cuesheet" in head.lower() or b"cuesheet" in tail.lower()


def _flac_cuesheet_block(head: bytes) -> bool:
    if not head.startswith(b"fLaC"):
        return False
    position = 4
    while position + 4 <= len(head):
        header = head[position]
        if header & 0x7F == _FLAC_CUESHEET:
            return True
        if header & 0x80:  # the last metadata block
            return False
        position += 4 + int.from_bytes(head[position + 1:position + 4], "big")
    return False


def _cuesheet_tag(tags: object) -> str | None:
    """A CUESHEET tag in any tag system (Vorbis comment, APEv2, ID3 TXXX, MP4 freeform)."""
    if tags is None or not hasattr(tags, "keys"):
        return None
    for key in tags.keys():
        if str(key).upper().rsplit(":", 1)[-1] == "CUESHEET":
            value = tags[key]
            value = value[0] if isinstance(value, list) and value else value
            return bytes(value).decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def _from_flac_block(block: mutagen.flac.CueSheet, sample_rate: int) -> CueSheet | None:
    tracks = []
    for track in block.tracks:
        indexes = {index.index_number: index.index_offset for index in track.indexes}
        if 1 not in indexes:  # the lead-out (170 or 255) has no indexes
            continue
        pregap = indexes.get(0)
        tracks.append(CueTrack(track.track_number, None, None, (track.start_offset + indexes[1]) / sample_rate,
                               None if pregap is None else (track.start_offset + pregap) / sample_rate))
    return CueSheet(None, None, (), tuple(tracks)) if tracks else None


def cue_segments(sheet: CueSheet, total_duration_seconds: float, *, file_name: str | None = None) -> list[Segment]:
    """The segments of one audio file lasting ``total_duration_seconds``; the last one runs to the end.

    A sheet naming several FILEs needs ``file_name`` (matched by name, then by stem, ignoring
    case, since albums are often re-encoded after the sheet was written) to pick that file's tracks.
    """
    tracks = _tracks_of(sheet, file_name)
    segments = []
    for position, track in enumerate(tracks, start=1):
        end = tracks[position].offset_seconds if position < len(tracks) else total_duration_seconds
        if end <= track.offset_seconds:
            raise CueSheetError(f"CUE track {track.number} starts at {track.offset_seconds:.2f} s, "
                                f"beyond the end of the audio ({total_duration_seconds:.2f} s)")
        segments.append(Segment(position, track.title or f"Track {track.number:02d}",
                                track.performer or sheet.performer, track.offset_seconds,
                                end - track.offset_seconds))
    return segments


def _tracks_of(sheet: CueSheet, file_name: str | None) -> list[CueTrack]:
    if len(set(sheet.files)) <= 1:
        return list(sheet.tracks)
    if file_name is None:
        raise CueSheetError(f"the CUE sheet names {len(sheet.files)} files; say which one is being cut")
    for same in (lambda a, b: a.lower() == b.lower(), lambda a, b: Path(a).stem.lower() == Path(b).stem.lower()):
        chosen = [t for t in sheet.tracks if t.file and same(Path(t.file).name, Path(file_name).name)]
        if chosen:
            return chosen
    raise CueSheetError(f"the CUE sheet does not name {file_name!r} (it names {', '.join(sheet.files)})")


def split_cue(audio_path: str | Path, sheet: CueSheet, out_dir: str | Path, *, suffix: str = ".flac") -> list[Path]:
    """Split an album file into one tagged file per CUE track in ``out_dir``; returns their paths.

    Channels, sample rate and (for lossless output) bit depth are kept; with a lossless source
    and ``.flac``/``.wav`` output the tracks join back into exactly the original samples.
    """
    audio_path, out_dir = Path(audio_path), Path(out_dir)
    segments = cue_segments(sheet, probe(audio_path).duration_seconds, file_name=audio_path.name)
    bits = _bits_per_sample(audio_path)
    written = []
    for segment in segments:
        decoded = decode_audio(audio_path, sample_rate=None, mono=False, offset_seconds=segment.offset_seconds,
                               duration_seconds=segment.duration_seconds)
        tags = {"title": segment.title, "artist": segment.performer, "album": sheet.title,
                "albumartist": sheet.performer, "tracknumber": str(segment.index),
                "genre": sheet.genre, "date": sheet.date}
        name = f"{segment.index:02d} - {_safe_filename(segment.title)}{suffix}"
        written.append(write_audio(out_dir / name, decoded.samples, decoded.sample_rate, bits=bits,
                                   tags={key: value for key, value in tags.items() if value}))
    return written


def _bits_per_sample(audio_path: Path) -> int:
    try:
        audio = mutagen.File(audio_path)
    except (mutagen.MutagenError, OSError):
        audio = None
    bits = getattr(audio.info, "bits_per_sample", 0) if audio is not None else 0
    return 24 if bits > 16 else 16  # unknown depth (lossy sources): 16 bits, what they decode to anyway


def _safe_filename(title: str) -> str:
    return safe_file_name(title, fallback="track", max_bytes=MAX_TITLE_BYTES, is_title=True)
