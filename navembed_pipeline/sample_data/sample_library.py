"""A small generated music library with a real-schema navidrome.db: the demo's and the tests' input.

Musically varied (piano, drums, bass, pads, noise) in every supported format, one CUE album (one FLAC
holding three tracks + its .cue), a near-duplicate pair (a FLAC and its MP3 re-encode), one corrupt
file, and two Navidrome libraries.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.library import load_audio, write_audio
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from navembed_pipeline.sample_data.synth import render, write_album

SAMPLE_RATE = 44100
MUSIC_DIR = "music"
EXTRA_DIR = "extra"
DB_NAME = "navidrome.db"


@dataclass(frozen=True)
class SampleTrack:
    """One generated file: where, what it sounds like, and its tags."""

    path: str
    style: str
    seed: int
    artist: str
    album: str
    title: str


SAMPLE_TRACKS: tuple[SampleTrack, ...] = (
    SampleTrack("Piano Trio/Keys/01 Morning Keys.flac", "piano", 1, "Piano Trio", "Keys", "Morning Keys"),
    SampleTrack("Piano Trio/Keys/02 Evening Keys.mp3", "piano", 2, "Piano Trio", "Keys", "Evening Keys"),
    SampleTrack("Beat Unit/Breaks/01 Breakbeat.wav", "drums", 1, "Beat Unit", "Breaks", "Breakbeat"),
    SampleTrack("Beat Unit/Breaks/02 Rimshot Rush.ogg", "drums", 2, "Beat Unit", "Breaks", "Rimshot Rush"),
    SampleTrack("Low End/Depths/01 Deep Bass.m4a", "bass", 1, "Low End", "Depths", "Deep Bass"),
    SampleTrack("Pad Society/Air/01 Warm Pads.opus", "chords", 1, "Pad Society", "Air", "Warm Pads"),
    SampleTrack("Pad Society/Air/02 Cold Pads.flac", "chords", 2, "Pad Society", "Air", "Cold Pads"),
    SampleTrack("Static/Rooms/01 White Room.mp3", "noise", 1, "Static", "Rooms", "White Room"),
)
REENCODE = SampleTrack("Piano Trio/Keys (MP3 copy)/01 Morning Keys.mp3", "piano", 1, "Piano Trio",
                       "Keys (MP3 copy)", "Morning Keys")
CUE_ALBUM = ("Various/Live Set/Live Set.flac", "Various", "Live Set",
             (("Opening Keys", "piano"), ("Drum Break", "drums"), ("Closing Pads", "chords")))
CORRUPT = "Broken/Damaged/01 Damaged.mp3"
EXTRA = SampleTrack("Field/Recordings/01 Night Bass.flac", "bass", 2, "Field", "Recordings", "Night Bass")


@dataclass(frozen=True)
class SampleLibrary:
    """What was written."""

    root: Path
    db_path: Path
    track_count: int
    format_summary: str
    corrupt_path: Path
    cue_album_path: Path
    duplicate_pair: tuple[Path, Path]


def write_sample_library(root: Path, *, seconds: float = 20.0) -> SampleLibrary:
    """Write the sample library under ``root`` (idempotent: files are rewritten identically)."""
    root = Path(root).resolve()
    music, extra = root / MUSIC_DIR, root / EXTRA_DIR
    fixtures: list[FixtureTrack] = []
    for track in SAMPLE_TRACKS:
        _write(music, track, render(track.style, seconds=seconds, sample_rate=SAMPLE_RATE, seed=track.seed))
        fixtures.append(_fixture(track, seconds))
    original = music / SAMPLE_TRACKS[0].path
    copy = music / REENCODE.path
    _write(music, REENCODE, load_audio(original, SAMPLE_RATE))
    fixtures.append(_fixture(REENCODE, seconds))
    cue_path, cue_seconds = _write_cue_album(music, seconds)
    path, artist, album, _ = CUE_ALBUM
    fixtures.append(FixtureTrack(path=path, title=album, artist=artist, album=album, album_artist=artist,
                                 duration=cue_seconds))
    corrupt = music / CORRUPT
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(np.random.default_rng(7).integers(0, 256, 4096,
                                                                                                      dtype=np.uint8)))
    fixtures.append(FixtureTrack(path=CORRUPT, title="Damaged", artist="Broken", album="Damaged", duration=seconds))
    _write(extra, EXTRA, render(EXTRA.style, seconds=seconds, sample_rate=SAMPLE_RATE, seed=EXTRA.seed))
    fixtures.append(_fixture(EXTRA, seconds, library_id=2))
    db_path = root / DB_NAME
    db_path.unlink(missing_ok=True)
    create_navidrome_db(db_path, libraries=[FixtureLibrary(1, "Music", str(music)),
                                            FixtureLibrary(2, "Field Recordings", str(extra))],
                        tracks=fixtures)
    suffixes = sorted({Path(t.path).suffix for t in fixtures})
    return SampleLibrary(root, db_path, len(fixtures), " ".join(suffixes) + " + .cue", corrupt,
                         music / path, (original, copy))


def _write(base: Path, track: SampleTrack, wave: np.ndarray) -> Path:
    target = base / track.path
    target.parent.mkdir(parents=True, exist_ok=True)
    write_audio(target, wave, SAMPLE_RATE, tags={"title": track.title, "artist": track.artist,
                                                 "album": track.album, "albumartist": track.artist})
    return target


def _fixture(track: SampleTrack, seconds: float, *, library_id: int = 1) -> FixtureTrack:
    return FixtureTrack(path=track.path, title=track.title, artist=track.artist, album=track.album,
                        album_artist=track.artist, duration=seconds, library_id=library_id)


def _write_cue_album(music: Path, seconds: float) -> tuple[Path, float]:
    path, artist, album, parts = CUE_ALBUM
    target = music / path
    target.parent.mkdir(parents=True, exist_ok=True)
    per_track = seconds / 2
    write_album(target, list(parts), seconds_per_track=per_track, sample_rate=SAMPLE_RATE, seed=3,
                performer=artist, title=album)
    return target.with_suffix(".cue"), round(per_track * 75) / 75 * len(parts)
