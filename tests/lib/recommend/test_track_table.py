"""The track table (``TrackTable``): array filters and duplicate groups answer exactly what the per-track path does.

Every request is answered twice over one library: once with a plain catalog (each candidate read and
tested, the previous path) and once with a catalog that also keeps a ``TrackTable``; the answers must
be identical, rule by rule. The duplicate walk is also compared with the previous loop, kept here.
"""

import dataclasses
import itertools
import sqlite3
import time
from contextlib import closing

import numpy as np
import pytest

from navembed_pipeline.lib.library import NavidromeLibrary
from navembed_pipeline.lib.recommend import (PathSpec, PlaylistRules, RecommendRequest, RecordingIdentity, SonicService,
                                             TrackCatalog, title_keys)
from navembed_pipeline.lib.recommend.artists import _top
from navembed_pipeline.lib.recommend.catalog import TrackTable
from navembed_pipeline.lib.recommend.rules import allowed
from navembed_pipeline.lib.recommend.sonic import first_distinct
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from tests.lib.recommend.helpers import catalog_of, field, recommender, track

ARTISTS = ["Band A", "band a ", "Band B", "Cleo", "Dax", "Évora"]
ALBUMS = ["One", "one", "Two", "Three"]


def library(seed: int = 5, count: int = 90):
    """Tracks with shared artists (some spelled differently), albums, libraries and durations; copies of
    one recording (same artist + title, near-identical vectors); some vectors without a library track."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, 24)).astype(np.float32)
    tracks, dsp, muq = [], {}, {}
    for i in range(count):
        track_id = f"t{i:03d}"
        artist = ARTISTS[i % len(ARTISTS)]
        base = track(track_id, artist=artist, album=ALBUMS[i % len(ALBUMS)], album_artist=ARTISTS[(i // 3) % 6],
                     library_id=1 + i % 3, duration=float(60 + (i * 37) % 400))
        title = "Morning Keys!" if i % 11 == 0 else ("morning keys" if i % 11 == 1 else base.title)
        tracks.append(dataclasses.replace(base, title=title, artist_id=f"artist-{artist.strip().casefold()}"))
        vector = centres[i % 6] + 0.7 * rng.standard_normal(24).astype(np.float32)
        dsp[track_id] = vector
        muq[track_id] = np.stack([vector[:16] + 0.2 * rng.standard_normal(16), rng.standard_normal(16)])
    dsp["t001"] = dsp["t000"] + 1e-4  # near-identical copies in both models
    muq["t001"] = muq["t000"] + 1e-4
    for i in range(5):  # vectors of files no longer in the library
        dsp[f"gone{i}"] = centres[i] + 0.1 * rng.standard_normal(24).astype(np.float32)
    return tracks, [field("dsp", dsp), field("muq", muq)]


class TabledCatalog:
    """A catalog like ``TrackCatalog`` with its table built: ``get`` plus ``table()``."""

    def __init__(self, tracks) -> None:
        self._get = catalog_of(tracks)
        self._table = TrackTable.build((t.id, t.title, t.artist, t.album_artist, t.album, t.library_id,
                                        t.duration_seconds) for t in tracks)

    def __call__(self, ids):
        return self._get(ids)

    def table(self):
        return self._table


def engines(**options):
    tracks, fields = library()
    plain = recommender(fields, tracks, **options)
    fast = recommender(fields, tracks, **options)
    fast.catalog = TabledCatalog(tracks)
    return tracks, plain, fast


RULES = [
    PlaylistRules(size=10),
    PlaylistRules(size=10, collapse_duplicates=False),
    PlaylistRules(size=25, exclude_artists=frozenset({"BAND A", "cleo"}), collapse_duplicates=False),
    PlaylistRules(size=12, exclude_albums=frozenset({" one"}), exclude_libraries=frozenset({2})),
    PlaylistRules(size=12, min_duration=120.0, max_duration=300.0, exclude_tracks=frozenset({"t005", "t010"})),
    PlaylistRules(size=15, max_per_artist=2, no_consecutive_artist=True, previous=("t007",)),
    PlaylistRules(size=15, diversity=0.4, exclude_artists=frozenset({"évora"})),
    PlaylistRules(size=60, max_per_artist=1),  # widens: more than the pool at first
]


def answer(playlist):
    return [(t.id, t.title, t.artist, t.album, t.score, t.why) for t in playlist.tracks], playlist.notes


@pytest.mark.parametrize("rules", RULES, ids=range(len(RULES)))
def test_every_rule_keeps_the_same_tracks_with_and_without_the_table(rules):
    _, plain, fast = engines(default_models=("dsp", "muq"))
    for seed in ("t000", "t013", "t042"):
        for mode in (RecommendRequest(mode="similar", seeds=(seed,), rules=rules),
                     RecommendRequest(mode="similar", seeds=(seed,), negative_tracks=("t050",), rules=rules),
                     RecommendRequest(mode="path", path=PathSpec(seed, "t077", 6), rules=rules)):
            assert answer(fast.recommend(mode)) == answer(plain.recommend(mode))
            if mode.mode == "similar":
                ids, models = fast.ranked_ids(mode)
                assert ids == [t.id for t in plain.recommend(mode).tracks] and models == ("dsp", "muq")


@pytest.mark.parametrize("flags", list(itertools.product([True, False], repeat=2)))
def test_the_plugin_calls_answer_the_same_with_and_without_the_table(flags):
    duplicates, radius = flags
    tracks, plain, fast = engines(default_models=("dsp", "muq"))
    groups = {"t020": 7, "t026": 7, "t032": 7}  # fingerprint group numbers (the identity's array)
    fingerprints = lambda ids: np.asarray([groups.get(t, -1) for t in ids], dtype=np.int64)  # noqa: E731
    for e in (plain, fast):
        e.identity = RecordingIdentity(groups=fingerprints, titles=title_keys(e.catalog))
    services = [SonicService(e, lambda: tracks) for e in (plain, fast)]
    for seed in ("t000", "t002", "t020", "t061"):
        for count in (3, 30, 200):
            answers = [[(n.track, n.similarity) for n in s.similar_tracks(
                seed, count, eliminate_duplicates=duplicates, within_radius=radius)] for s in services]
            assert answers[0] == answers[1]
            shown = [(n.track.id, n.track.title, n.track.artist, n.track.album, n.similarity) for n in
                     services[1].similar_tracks(seed, count, eliminate_duplicates=duplicates, within_radius=radius,
                                                details=False)]
            assert shown == [(t.id, t.title, t.artist, t.album, s) for t, s in answers[0]]
    assert [n.track.id for n in services[1].path("t000", "t077", 8)] == \
        [n.track.id for n in services[0].path("t000", "t077", 8)]


class StaleCatalog(TabledCatalog):
    """A catalog whose table was read before ``newer`` tracks were added to Navidrome (its next read is
    not due yet): ``get`` knows them, the table does not."""

    def __init__(self, tracks, newer) -> None:
        super().__init__([t for t in tracks if t.id not in newer])
        self._get = catalog_of(tracks)


NEWER = frozenset({"t000", "t013", "t014", "t020", "t042", "t061", "t077"})


@pytest.mark.parametrize("rules", RULES[:3], ids=range(3))
def test_tracks_added_after_the_table_was_read_are_served_at_once(rules):
    """What a run has just embedded is offered (and answered as a seed) before the table's next read, the
    same as without a table: the real plugin asks for a fresh track's Instant Mix right after a run."""
    tracks, fields = library()
    plain = recommender(fields, tracks, default_models=("dsp", "muq"))
    stale = recommender(fields, tracks, default_models=("dsp", "muq"))
    stale.catalog = StaleCatalog(tracks, NEWER)
    for seed in ("t000", "t013", "t050"):
        request = RecommendRequest(mode="similar", seeds=(seed,), rules=rules)
        assert answer(stale.recommend(request)) == answer(plain.recommend(request))
    services = [SonicService(e, lambda: tracks) for e in (plain, stale)]
    for seed in ("t000", "t042", "t050"):
        want = [(n.track.id, n.similarity) for n in services[0].similar_tracks(seed, 200)]
        got = [(n.track.id, n.track.title, n.similarity) for n in services[1].similar_tracks(seed, 200, details=False)]
        assert [(i, s) for i, _, s in got] == want and (NEWER - {seed}) & {i for i, _, _ in got}
        assert all(title for _, title, _ in got)
    assert [n.track.id for n in services[1].path("t013", "t077", 8)] == \
        [n.track.id for n in services[0].path("t013", "t077", 8)]


def test_copies_are_dropped_by_title_vectors_and_fingerprints_through_the_table():
    tracks, _, fast = engines(default_models=("dsp",))
    found = [n.track.id for n in SonicService(fast, lambda: tracks).similar_tracks("t000", 200)]
    assert "t001" not in found  # near-identical to the seed, and "morning keys" again
    titles = [(n.track.artist.strip().casefold(), n.track.title) for n in
              SonicService(fast, lambda: tracks).similar_tracks("t005", 200)]
    assert len(titles) == len(set(titles))
    assert not any(t.startswith("gone") for t in found)  # no library track: never answered


def previous_walk(keys: list[str], close: np.ndarray) -> list[int]:
    """The duplicate walk as ``SonicService._distinct_recordings`` did it before (position 0: the seed)."""
    kept, seen = [0], {keys[0]}
    for i in range(1, len(keys)):
        if keys[i] in seen or close[i, kept].any():
            continue
        seen.add(keys[i])
        kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_the_vectorised_duplicate_walk_keeps_what_the_previous_loop_kept(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    keys = [f"k{k}" for k in rng.integers(0, max(1, n // 2), n)]
    close = rng.random((n, n)) < (0.0 if seed % 3 == 0 else 0.03)
    close = close | close.T
    np.fill_diagonal(close, False)
    groups = np.unique(np.asarray(keys, dtype=object), return_inverse=True)[1]
    same = (groups[:, None] == groups[None, :]) | close
    assert first_distinct(same).tolist() == previous_walk(keys, close)


def test_the_table_allows_exactly_the_tracks_the_rules_allow():
    tracks, _ = library()
    table = TrackTable.build((t.id, t.title, t.artist, t.album_artist, t.album, t.library_id, t.duration_seconds)
                             for t in tracks)
    rows = table.rows_of([t.id for t in tracks] + ["nope"])
    assert rows[-1] == -1 and sorted(rows[:-1].tolist()) == list(range(len(tracks)))
    assert table.rows_of(["t00", "t0000", "t000", "", "zzz"]).tolist() == [-1, -1, rows[0], -1, -1]
    for rules in RULES + [PlaylistRules(exclude_artists=frozenset({"nobody"}), exclude_albums=frozenset({"x"}))]:
        mask = table.allowed(rows, exclude_artists=rules.exclude_artists, exclude_albums=rules.exclude_albums,
                             exclude_libraries=rules.exclude_libraries, min_duration=rules.min_duration,
                             max_duration=rules.max_duration)
        assert mask.tolist() == [allowed(t, rules) for t in tracks] + [False]


def write_db(path, tracks, missing=()):
    fixture = [FixtureTrack(path=f"A/{t}.flac", title=title, artist=artist, album="Album", duration=90.0, id=t,
                            missing=t in missing) for t, (title, artist) in tracks.items()]
    create_navidrome_db(path, libraries=[FixtureLibrary(1, "Music", "/music")], tracks=fixture)
    return NavidromeLibrary(path)


def test_the_catalog_builds_its_table_from_navidrome_and_rebuilds_it_when_the_database_changes(tmp_path):
    db = tmp_path / "navidrome.db"
    library_ = write_db(db, {"a": ("One", "X"), "b": ("Two", "X"), "c": ("Three", "Y")}, missing={"c"})
    catalog = TrackCatalog(library_.get, db, columns=library_.track_columns, check_interval_s=0.0)
    table = catalog.table(wait=True)
    assert table.track_ids() == {"a", "b"}  # a missing file is no track of the library
    assert catalog.table() is table
    time.sleep(0.01)
    with closing(sqlite3.connect(db)) as conn, conn:  # Navidrome's rescan: b gone, c back
        conn.execute("UPDATE media_file SET missing = (id = 'b')")
    assert catalog.table() is table  # the previous table while the next one is read
    fresh = catalog.table(wait=True)
    assert fresh is not table and fresh.track_ids() == {"a", "c"}
    assert catalog.table() is fresh
    catalog.forget()
    assert catalog.table() is None
    assert TrackCatalog(library_.get, db).table() is None  # no columns: no table, the per-track path


def test_a_table_is_built_in_the_background_and_requests_take_the_per_track_path_meanwhile(tmp_path):
    db = tmp_path / "navidrome.db"
    library_ = write_db(db, {"a": ("One", "X")})
    catalog = TrackCatalog(library_.get, db, columns=library_.track_columns)
    first = catalog.table()
    deadline = time.monotonic() + 10
    while catalog.table() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first is None and catalog.table().track_ids() == {"a"}



@pytest.mark.parametrize("want", [1, 5, 20, 70])
def test_the_duplicate_walk_over_a_prefix_keeps_what_the_walk_over_all_keeps(want):
    tracks, _, fast = engines(default_models=("dsp", "muq"))
    service = SonicService(fast, lambda: tracks)
    ids = [t.id for t in tracks if t.id != "t000"]
    every = service._distinct_positions("t000", ids, ("dsp", "muq"))
    assert service._distinct_positions("t000", ids, ("dsp", "muq"), want=want)[:want].tolist() == \
        every[:want].tolist()
    assert len(every) < len(ids)  # the library has copies for the walk to drop


@pytest.mark.parametrize("seed", range(10))
def test_the_best_artists_are_the_first_of_the_full_stable_sort_ties_included(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 200).astype(np.float64)  # many ties
    scores[rng.integers(0, 200, 5)] = -np.inf
    for count in (1, 7, 50, 199, 200, 300):
        assert _top(scores, count).tolist() == np.argsort(-scores, kind="stable")[:count].tolist()


def test_title_numbers_from_the_table_group_the_tracks_as_the_read_titles_do():
    tracks, _ = library()
    ids = [t.id for t in tracks] + ["gone0"]
    plain = title_keys(catalog_of(tracks))
    tabled = title_keys(TabledCatalog(tracks))
    for asked in (ids[:-1], ids[5:40], ids):  # the last holds an id the table lacks: the titles are read
        want, got = plain(asked), tabled(asked)
        assert np.array_equal(want == -1, got == -1)
        assert np.array_equal(want[:, None] == want[None, :], got[:, None] == got[None, :])
    assert len(set(plain(ids[:-1]).tolist())) < len(tracks)  # some tracks do share a recording here
