"""Sonic mixes from a real-schema navidrome.db with three listeners whose plays and stars differ, over
hand-made vectors: three sounds (piano, drums, bass), two libraries."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.library.history import NavidromeHistory
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.recommend import Recommender, StaticVectors
from navembed_pipeline.lib.recommend.mixes import MixOptions, Tagging, build_mixes, for_you_request, library_mixes
from navembed_pipeline.sample_data.navidrome_fixture import (FixtureAnnotation, FixtureLibrary, FixtureTrack,
                                                             FixtureUser, add_users, annotate, create_navidrome_db)
from tests.lib.recommend.helpers import field, grouped_vectors

NOW = datetime.now(UTC).replace(microsecond=0)  # the API dates "recent" by the clock
# 12-d centres, noise wide enough that two tracks of one sound are not "the same recording" (cosine < 0.98)
GROUPS = {g: np.eye(12)[i] * 1.0 for i, g in enumerate("pdb")}
ARTISTS = {"p": ("Keys A", "Keys B"), "d": ("Kit A", "Kit B"), "b": ("Low A", "Low B")}
PER_GROUP = 8
OPTIONS = MixOptions(size=6, clusters=3, max_per_artist=3, diversity=0.0)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def world(tmp_path: Path):
    db = tmp_path / "navidrome.db"
    tracks = [FixtureTrack(f"{g}/{g}{n}.flac", id=f"{g}{n}", title=f"{g.upper()} {n}", artist=ARTISTS[g][n % 2],
                           album=g, library_id=2 if (g == "b" and n >= PER_GROUP - 2) else 1)
              for g in GROUPS for n in range(PER_GROUP)]
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Music", "/music"), FixtureLibrary(2, "Vinyl", "/vinyl")],
                        tracks=tracks)
    add_users(db, [FixtureUser("pia", library_ids=(1, 2)), FixtureUser("dan", library_ids=(1, 2)),
                   FixtureUser("bea", library_ids=(1,)), FixtureUser("nob", library_ids=(1, 2))])
    annotate(db, [
        FixtureAnnotation("pia", "p0", play_count=30, play_date=ago(1), rating=5),
        FixtureAnnotation("pia", "p1", play_count=4, play_date=ago(150), starred=True, starred_at=ago(200)),
        FixtureAnnotation("pia", "p2", play_count=3, play_date=ago(3)),
        FixtureAnnotation("dan", "d0", play_count=12, play_date=ago(0), starred=True, starred_at=ago(5)),
        FixtureAnnotation("dan", "d1", play_count=2, play_date=ago(40), starred=True, starred_at=ago(20)),
        FixtureAnnotation("bea", "b0", play_count=9, play_date=ago(2), rating=5),
        FixtureAnnotation("bea", "b1", starred=True, starred_at=ago(10)),
    ])
    library = NavidromeLibrary(db)
    vectors = grouped_vectors(GROUPS, PER_GROUP, spread=0.15, seed=3)
    engine = Recommender(StaticVectors([field("dsp", vectors)]), library.get, default_models=("dsp",))
    catalog = {t.id: t for t in library.tracks()}
    histories = list(NavidromeHistory(db).histories().values())
    return engine, catalog, {h.user.user_name: h for h in histories}, vectors


def _by(mixes, kind, user=None):
    return [m for m in mixes if m.kind == kind and m.user == user]


def test_three_listeners_get_three_different_for_you_mixes_without_their_recent_plays(world) -> None:
    engine, catalog, histories, _ = world
    mixes = build_mixes(engine, catalog, list(histories.values()), now=NOW, options=OPTIONS)
    for_you = {name: _by(mixes, "for-you", name) for name in ("pia", "dan", "bea")}
    assert all(len(v) == 1 for v in for_you.values())
    tracks = {name: v[0].track_ids for name, v in for_you.items()}
    assert len({frozenset(t) for t in tracks.values()}) == 3
    # near what each plays and stars: the listener's own sound fills most of the mix
    for name, group in (("pia", "p"), ("dan", "d"), ("bea", "b")):
        ids = tracks[name]
        assert len(ids) == OPTIONS.size
        assert sum(t.startswith(group) for t in ids) >= 4, (name, ids)
        recent = histories[name].played_since(NOW - timedelta(days=OPTIONS.recent_days))
        assert recent and not recent & set(ids), (name, recent, ids)
        request = for_you_request(engine, catalog, histories[name], now=NOW, options=OPTIONS)
        assert set(request.rules.previous) == recent  # also those beyond the seeds: never repeated
    assert "p2" not in tracks["pia"] and "p0" not in tracks["pia"] and "d0" not in tracks["dan"]
    assert "b0" not in tracks["bea"]


def test_per_user_mixes_keep_to_the_users_libraries(world) -> None:
    engine, catalog, histories, _ = world
    mixes = build_mixes(engine, catalog, [histories["bea"]], now=NOW, options=OPTIONS)
    mine = [m for m in mixes if m.user == "bea"]
    assert mine and all(catalog[t].library_id == 1 for m in mine for t in m.track_ids)
    assert {"b6", "b7"} <= set(catalog) and not {"b6", "b7"} & {t for m in mine for t in m.track_ids}


def test_rediscover_holds_loved_long_ago_not_played_lately(world) -> None:
    engine, catalog, histories, _ = world
    mixes = build_mixes(engine, catalog, list(histories.values()), now=NOW, options=OPTIONS)
    (rediscover,) = _by(mixes, "rediscover", "pia")
    assert rediscover.track_ids == ("p1",)
    assert not _by(mixes, "rediscover", "dan")  # dan's stars are recent
    assert not _by(mixes, "rediscover", "bea")  # starred 10 days ago


def test_radio_starts_with_a_starred_track_then_its_sound(world) -> None:
    engine, catalog, histories, _ = world
    mixes = build_mixes(engine, catalog, list(histories.values()), now=NOW, options=OPTIONS)
    radios = _by(mixes, "radio", "dan")
    assert [r.track_ids[0] for r in radios] == ["d0", "d1"]
    for radio in radios:
        assert len(set(radio.track_ids)) == len(radio.track_ids)
        assert sum(t.startswith("d") for t in radio.track_ids[1:]) >= 4
        assert "d0" not in radio.track_ids[1:]  # played today


def test_a_listener_without_history_gets_library_wide_mixes_only(world) -> None:
    engine, catalog, histories, _ = world
    assert histories["nob"].empty
    mixes = build_mixes(engine, catalog, [histories["nob"]], now=NOW, options=OPTIONS)
    assert mixes and {m.kind for m in mixes} == {"sound"} and all(m.user is None for m in mixes)
    assert for_you_request(engine, catalog, histories["nob"], now=NOW) is None


def test_clusters_follow_the_sound_and_are_named_by_artists(world) -> None:
    engine, catalog, _, _ = world
    mixes = library_mixes(engine, catalog, options=OPTIONS)
    assert [m.slug for m in mixes] == ["sound-01", "sound-02", "sound-03"]
    groups = sorted({t[0] for t in m.track_ids} for m in mixes)
    assert groups == [{"b"}, {"d"}, {"p"}]
    for mix in mixes:
        group = mix.track_ids[0][0]
        assert mix.title == f"Sound of {' & '.join(sorted(ARTISTS[group]))}" or \
            mix.title == f"Sound of {' & '.join(ARTISTS[group])}" or \
            mix.title == f"Sound of {' & '.join(reversed(ARTISTS[group]))}"
        assert "k-means on dsp" in mix.reason and ARTISTS[group][0] in mix.reason


def test_clusters_are_named_by_musicnn_tags_where_present(world) -> None:
    engine, catalog, _, vectors = world
    names = ["piano", "drums", "bass", "ambient"]
    scores = {"p": [0.9, 0.1, 0.0, 0.6], "d": [0.0, 0.9, 0.1, 0.2], "b": [0.1, 0.0, 0.8, 0.5]}
    tags = field("musicnn", {t: np.asarray(scores[t[0]], dtype=np.float32) for t in vectors}, name="tags")
    mixes = library_mixes(engine, catalog, options=OPTIONS, tagging=Tagging(tags, names))
    titles = {m.track_ids[0][0]: m.title for m in mixes}
    assert titles == {"p": "Sound of piano · ambient", "d": "Sound of drums · ambient",
                      "b": "Sound of bass · ambient"}
    assert all("MusiCNN tags" in m.reason for m in mixes)


def test_too_small_a_library_has_no_clusters(world) -> None:
    engine, catalog, _, _ = world
    few = {k: catalog[k] for k in ("p0", "d0", "b0")}
    assert library_mixes(engine, few, options=MixOptions()) == []


def test_the_mixes_take_the_musicnn_tags_and_vocabulary_the_engine_was_given(world) -> None:
    from navembed_pipeline.lib.models import tag_names
    from navembed_pipeline.lib.recommend import load_tagging

    engine, _, _, vectors = world
    names = tag_names("MSD_musicnn")
    rng = np.random.default_rng(3)
    tags = field("musicnn", {t: rng.random(len(names)).astype(np.float32) for t in vectors}, name="tags")
    source = StaticVectors([engine.vectors.field("dsp"), tags])
    tagging = load_tagging(Recommender(source, engine.catalog, tag_names=names))
    assert tagging is not None and tuple(tagging.names) == names and len(tagging.vectors) == len(vectors)
    assert load_tagging(Recommender(source, engine.catalog)) is None  # no vocabulary given: artists name them
