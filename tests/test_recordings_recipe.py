"""The real-recordings recipe (benchmarks/recordings.py) without downloading anything."""

import zipfile
from pathlib import Path

from benchmarks import recordings


def test_audio_members_of_an_archive_are_extracted_and_confined(tmp_path: Path) -> None:
    archive = tmp_path / "music.pk3"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("sound/cdtracks/one.ogg", b"OggS one")
        zipped.writestr("sound/readme.txt", b"not audio")
        zipped.writestr("../escape.ogg", b"OggS escape")
    into = tmp_path / "music.pk3.extracted"
    recordings._extract_audio(archive, into)
    assert (into / "sound/cdtracks/one.ogg").read_bytes() == b"OggS one"
    assert not (into / "sound/readme.txt").exists()
    assert not (tmp_path / "escape.ogg").exists() and not list(into.rglob("escape.ogg"))
    assert (into / ".done").exists() and not list(into.rglob(".*.partial"))


def test_albums_by_sub_album_and_by_composer() -> None:
    wz = "usr/share/games/warzone2100/music/albums"
    assert recordings._warzone_album(Path(f"{wz}/legacy_soundtrack/track02.opus")) == "Warzone 2100 (legacy)"
    assert recordings._warzone_album(Path("usr/share/games/warzone2100/music/menu.opus")) is None
    assert recordings._ufoai_album(Path("music/Crystan-Battlescape01.ogg")) == "UFO: Alien Invasion (Crystan)"
    assert recordings._ufoai_album(Path("music/van_theme.ogg")) == "UFO: Alien Invasion (van)"
    assert recordings._ufoai_album(Path("music/dawn.ogg")) is None  # one-off tracks by other composers: left out


def test_tuning_and_held_out_albums_partition_the_packages() -> None:
    assert set(recordings.TUNING) | set(recordings.HELD_OUT) == set(recordings.PACKAGES)
    assert not set(recordings.TUNING) & set(recordings.HELD_OUT)
    assert recordings.HELD_OUT, "claims about quality need albums that nothing was tuned on"
