"""TrackCatalog: Navidrome's tracks read once, forgotten when navidrome.db changes."""

from pathlib import Path

from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.recommend import TrackCatalog
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_db(path: Path, titles: dict[str, str]) -> NavidromeLibrary:
    tracks = [FixtureTrack(path=f"A/{i}.flac", title=title, artist="Artist", album="Album", duration=60.0, id=i)
              for i, title in titles.items()]
    create_navidrome_db(path, libraries=[FixtureLibrary(1, "Music", "/music")], tracks=tracks)
    return NavidromeLibrary(path)


class CountingLookup:
    def __init__(self, library: NavidromeLibrary) -> None:
        self.library, self.asked = library, []

    def __call__(self, ids):
        ids = list(ids)
        self.asked.append(ids)
        return self.library.get(ids)


def test_a_track_is_read_from_the_database_once_and_unknown_ids_stay_unknown(tmp_path):
    lookup = CountingLookup(write_db(tmp_path / "navidrome.db", {"a": "One", "b": "Two"}))
    catalog = TrackCatalog(lookup, tmp_path / "navidrome.db", clock=Clock())
    first = catalog.get(["a", "nope"])
    again = catalog.get(["nope", "a", "b"])
    assert first["a"].title == "One" and "nope" not in first
    assert sorted(again) == ["a", "b"] and again["a"] is first["a"]
    assert lookup.asked == [["a", "nope"], ["b"]]


def test_a_change_of_navidrome_db_is_seen_after_the_check_interval(tmp_path):
    path = tmp_path / "navidrome.db"
    write_db(path, {"a": "One"})
    clock = Clock()
    catalog = TrackCatalog(NavidromeLibrary(path).get, path, check_interval_s=2.0, clock=clock)
    assert catalog.get(["a"])["a"].title == "One"
    path.unlink()
    write_db(path, {"a": "Renamed", "c": "Three"})
    assert catalog.get(["a"])["a"].title == "One"  # within the interval: remembered
    clock.now += 2.5
    assert catalog.get(["a", "c"])["a"].title == "Renamed"


def test_the_least_recently_used_tracks_are_dropped_beyond_capacity(tmp_path):
    lookup = CountingLookup(write_db(tmp_path / "navidrome.db", {"a": "One", "b": "Two", "c": "Three"}))
    catalog = TrackCatalog(lookup, tmp_path / "navidrome.db", capacity=2, clock=Clock())
    catalog.get(["a", "b"])
    catalog.get(["a"])
    catalog.get(["c"])  # drops b, the least recently used
    catalog.get(["a", "b"])
    assert lookup.asked == [["a", "b"], ["c"], ["b"]]
