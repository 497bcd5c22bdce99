"""The real compiled Navidrome plugin (``audiomuseai.ndp``) in the Extism runtime Navidrome embeds, against a live stack.

The stack is ``navembed up``'s: Milvus Lite, dagster-webserver + dagster-daemon and the API as processes,
on the sample library, once with the dsp model and once with the set a user gets after ``make setup`` (dsp +
MusiCNN, whose fused searches go through the joined copy of both models' vectors). The plugin's ``plugin.wasm`` is loaded by the Extism Python SDK
with WASI, configured as the README tells users (``apiUrl`` and the plugin's settings, strings as Navidrome
passes them) and allowed to reach 127.0.0.1 only; its exports are called with the JSON requests Navidrome
sends. A run through ``/batch/start`` then embeds a new artist and rewrites a changed track in place, and
the plugin is asked again the moment ``/batch/progress`` says the run completed: read your writes.
"""

import hashlib
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import extism
import httpx
import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.library import NavidromeLibrary, Track, write_audio
from navembed_pipeline.sample_data.navidrome_fixture import FixtureTrack, add_tracks, touch_track
from navembed_pipeline.sample_data.sample_library import SAMPLE_RATE, SampleLibrary, write_sample_library
from navembed_pipeline.sample_data.synth import render
from navembed_pipeline.stack import Stack, free_port
from tests.api.app_fixtures import ADMIN, TOKEN
from tests.api.test_e2e import TERMINAL, follow, sensor_tick
from tests.lib.models.musicnn_fixtures import musicnn_models_dir, musicnn_wheel  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).parent / "navidrome_plugin" / "audiomuseai.ndp"
SHARED_PLUGIN = Path(__file__).parents[3] / "shared" / "navidrome-plugin" / "audiomuseai.ndp"
PLUGIN_SHA256 = "9c424351ac3003b00a3e6fb54aaec1304e6cc905530f7d56943bca5b8245be9d"  # NeptuneHub/...@599d5a0
TRACK_SECONDS = 16.0  # copies are told by fingerprint, which needs 10 s of it (12 s clips give 9.3 s)
TRACK_COUNT = 200  # the plugin's trackCount (its default): the n it asks for
PIANO = {"Morning Keys", "Evening Keys", "Opening Keys", "New Keys", "Live Set"}  # Live Set opens with piano
FRESH_ARTIST = "Fresh Arrival"
FRESH = (("Fresh Arrival/First Light/01 New Keys.flac", "New Keys", "piano", 5),
         ("Fresh Arrival/First Light/02 New Breaks.flac", "New Breaks", "drums", 6))
REWRITTEN = "White Room"  # its file becomes a piano piece: the run rewrites its row in place


# ----- the plugin, as Navidrome runs it ------------------------------------------------------------------
def load_plugin(api_url: str) -> extism.Plugin:
    """``plugin.wasm`` of the .ndp with the README's settings, HTTP allowed to the API's host only."""
    with zipfile.ZipFile(PLUGIN) as ndp:
        wasm = ndp.read("plugin.wasm")
    config = {"apiUrl": api_url, "trackCount": str(TRACK_COUNT), "artistSimilarCount": "10",
              "eliminateDuplicates": "true", "radiusSimilarity": "true"}
    return extism.Plugin({"wasm": [{"data": wasm}], "allowed_hosts": ["127.0.0.1"], "config": config}, wasi=True)


def similar_by_track(plugin: extism.Plugin, track: Track, count: int = 20) -> list[str]:
    """Instant Mix: Navidrome's request for ``track``; the song ids the plugin answers."""
    request = {"id": track.id, "name": track.title, "artist": track.artist, "count": count}
    return _songs(plugin.call("nd_get_similar_songs_by_track", json.dumps(request).encode()))


def similar_by_artist(plugin: extism.Plugin, artist_id: str, name: str, count: int = 20) -> list[str]:
    """Artist radio: Navidrome's request for the artist; the song ids the plugin answers."""
    request = {"id": artist_id, "name": name, "count": count}
    return _songs(plugin.call("nd_get_similar_songs_by_artist", json.dumps(request).encode()))


def _songs(output: bytes) -> list[str]:
    songs = json.loads(output)["songs"] or []
    assert all(isinstance(s.get("id"), str) and s["id"] for s in songs), songs
    return [s["id"] for s in songs]


def attempt(call, *args) -> list[str] | str:
    """The songs, or the plugin's error (what Navidrome would log before falling back to Last.fm)."""
    try:
        return call(*args)
    except extism.Error as exc:
        return f"plugin error: {exc}"


# ----- the stack ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """What test_e2e's helpers (``sensor_tick``, ``follow``) use: the stack and an admin client of its API."""

    stack: Stack
    api: httpx.Client


@dataclass(frozen=True)
class Live:
    stack: Stack
    library: SampleLibrary
    api: httpx.Client
    plugin: extism.Plugin
    first_radio: list[str] | str  # artist radio asked the moment the first run was reported completed

    def tracks(self) -> dict[str, Track]:
        return {t.id: t for t in NavidromeLibrary(self.library.db_path).tracks()}

    def named(self, title: str) -> Track:
        return next(t for t in self.tracks().values() if t.title == title)

    def titles(self, ids: list[str]) -> list[str]:
        tracks = self.tracks()
        return [f"{tracks[i].artist} - {tracks[i].title}" if i in tracks else f"(not a library track: {i})"
                for i in ids]


@pytest.fixture(scope="module", params=["dsp", "dsp,musicnn"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    fused = "musicnn" in request.param
    root = tmp_path_factory.mktemp("plugin-binary")
    library = write_sample_library(root / "lib", seconds=TRACK_SECONDS)
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           models=request.param, models_dir=request.getfixturevalue("musicnn_models_dir") if fused else None,
                           admin_token=TOKEN, socket_path=None, api_port=free_port(), dagster_port=free_port(),
                           sensor_interval_seconds=3600)
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, headers=ADMIN, timeout=60) as api:
        plugin = load_plugin(stack.urls.api)
        piano = _first_run(stack, api)
        if fused:  # the fused searches below go through the joined copy, not shortlists
            _until_joined(api, settings.enabled_models())
        first_radio = attempt(similar_by_artist, plugin, piano.artist_id, piano.artist)  # nothing in between
        print(f"artist radio right after the first run: {first_radio}")
        yield Live(stack, library, api, plugin, first_radio)


def _first_run(stack: Stack, api: httpx.Client) -> Track:
    """The library embedded once: by the change sensor's first tick, else by a run started here; the
    piano track, read before the run completes."""
    deadline = time.monotonic() + 120
    while (tick := sensor_tick(Control(stack, api))) is None or not tick.finished:
        assert time.monotonic() < deadline, "the library change sensor never ticked"
        time.sleep(0.5)
    if not tick.run_ids:
        started = api.post("/batch/start", json={"models": stack.settings.enabled_models()})
        assert started.status_code == 200, started.text
    piano = next(t for t in NavidromeLibrary(stack.settings.navidrome_db).tracks() if t.title == "Evening Keys")
    final = follow(Control(stack, api), timeout=300)[-1]
    assert final["status"] in ("completed", "completed_with_errors"), final
    return piano


def _until_joined(api: httpx.Client, models: list[str], timeout: float = 120.0) -> None:
    """Wait until ``/health`` shows the joined copy of ``models``' vectors served."""
    deadline = time.monotonic() + timeout
    while True:
        joined = api.get("/health").json()["vector_cache"]["joined"]
        if any(entry["models"] == sorted(models) and entry["tracks"] and entry["error"] is None for entry in joined):
            return
        assert time.monotonic() < deadline, f"no joined copy of {models}: {joined}"
        time.sleep(0.5)


def _until_known(live: Live, track: Track, timeout: float = 120.0) -> None:
    """Wait until the API's artist index has ``track``'s artist (at once once it reads its writes)."""
    deadline = time.monotonic() + timeout
    while isinstance(attempt(similar_by_artist, live.plugin, track.artist_id, track.artist), str):
        assert time.monotonic() < deadline, f"the API never learnt of {track.artist}"
        time.sleep(1.0)


@dataclass(frozen=True)
class AfterRun:
    """What the plugin answered just before two runs, and the moment /batch/progress said each completed:
    one embedding a new artist, then one rewriting a changed track's row in place (no row added, none
    removed: only the store generation tells the API)."""

    fresh_artist_id: str
    fresh_track_id: str
    before_artist: list[str] | str
    final: dict
    artist_radio: list[str] | str  # the first call after "completed"
    fresh_mix: list[str] | str
    before_rewritten: list[str] | str
    rewrite_final: dict
    rewritten_mix: list[str] | str  # the first call after that run's "completed"


def _run(live: Live) -> dict:
    started = live.api.post("/batch/start", json={"models": live.stack.settings.enabled_models()})
    assert started.status_code == 200, started.text
    return follow(live, timeout=300)[-1]


@pytest.fixture(scope="module")
def after_run(live: Live) -> AfterRun:
    # The API has loaded the vectors and built its artist index (a user has been listening).
    _until_known(live, live.named("Evening Keys"))
    music = live.library.root / "music"
    for path, title, style, seed in FRESH:
        write_audio(music / path, render(style, seconds=TRACK_SECONDS, sample_rate=SAMPLE_RATE, seed=seed),
                    SAMPLE_RATE, tags={"title": title, "artist": FRESH_ARTIST, "album": "First Light"})
    add_tracks(live.library.db_path, [FixtureTrack(path=path, title=title, artist=FRESH_ARTIST, album="First Light",
                                                   album_artist=FRESH_ARTIST, duration=TRACK_SECONDS)
                                      for path, title, _, _ in FRESH])
    fresh = next(t for t in live.tracks().values() if t.artist == FRESH_ARTIST)
    before_artist = attempt(similar_by_artist, live.plugin, fresh.artist_id, FRESH_ARTIST)
    final = _run(live)
    artist_radio = attempt(similar_by_artist, live.plugin, fresh.artist_id, FRESH_ARTIST)  # nothing in between
    fresh_mix = attempt(similar_by_track, live.plugin, fresh)

    rewritten = live.named(REWRITTEN)
    before_rewritten = attempt(similar_by_track, live.plugin, rewritten)
    # White Room's file changes (a scan would see a new size and mtime): same track, same row, new vectors.
    write_audio(rewritten.path, render("piano", seconds=TRACK_SECONDS, sample_rate=SAMPLE_RATE, seed=7), SAMPLE_RATE,
                tags={"title": rewritten.title, "artist": rewritten.artist, "album": rewritten.album})
    touch_track(live.library.db_path, rewritten.id, updated_at=datetime.now(UTC), size=rewritten.path.stat().st_size)
    rewrite_final = _run(live)
    rewritten_mix = attempt(similar_by_track, live.plugin, rewritten)  # nothing in between
    result = AfterRun(fresh.artist_id, fresh.id, before_artist, final, artist_radio, fresh_mix, before_rewritten,
                      rewrite_final, rewritten_mix)
    for name in ("before_artist", "artist_radio", "fresh_mix", "before_rewritten", "rewritten_mix"):
        value = getattr(result, name)
        print(f"{name}: {value if isinstance(value, str) else live.titles(value)}")
    return result


# ----- the binary ---------------------------------------------------------------------------------------------
def test_the_vendored_plugin_is_the_published_binary() -> None:
    assert hashlib.sha256(PLUGIN.read_bytes()).hexdigest() == PLUGIN_SHA256
    if SHARED_PLUGIN.exists():  # CI's ../shared copy: the same bytes
        assert SHARED_PLUGIN.read_bytes() == PLUGIN.read_bytes()
    with zipfile.ZipFile(PLUGIN) as ndp:
        manifest = json.loads(ndp.read("manifest.json"))
    assert manifest["id"] == "audiomuseai" and {"apiUrl", "trackCount"} <= set(manifest["config"]["schema"]["properties"])


# ----- Instant Mix and artist radio from the real plugin ------------------------------------------------------
def test_instant_mix_of_every_embedded_track_is_library_songs_without_the_seed(live: Live) -> None:
    tracks = live.tracks()
    seeds = [t for t in tracks.values() if t.path != live.library.corrupt_path]
    for seed in seeds:
        songs = similar_by_track(live.plugin, seed)
        print(f"Instant Mix of {seed.artist} - {seed.title}: {live.titles(songs)}")
        assert set(songs) <= set(tracks), (seed.title, songs)
        assert seed.id not in songs and len(songs) == len(set(songs)) and len(songs) <= TRACK_COUNT
        copies = {t.id for t in seeds if (t.artist, t.title) == (seed.artist, seed.title)} - {seed.id}
        assert not copies & set(songs), (seed.title, live.titles(songs))  # Eliminate Duplicates: no copy of it
    mix = similar_by_track(live.plugin, live.named("Evening Keys"))
    assert mix and tracks[mix[0]].title in PIANO  # piano first, as the replay test finds through the API
    assert [tracks[s].title for s in mix].count("Morning Keys") == 1  # the FLAC and its MP3 copy: one recording


def test_the_corrupt_track_gets_an_error_navidrome_falls_back_from(live: Live) -> None:
    corrupt = next(t for t in live.tracks().values() if t.path == live.library.corrupt_path)
    with pytest.raises(extism.Error, match="status 409"):  # known to Navidrome, no vectors: 409
        similar_by_track(live.plugin, corrupt)


def test_artist_radio_is_library_songs_of_the_artist_then_of_similar_artists(live: Live) -> None:
    tracks = live.tracks()
    piano = live.named("Evening Keys")
    songs = similar_by_artist(live.plugin, piano.artist_id, piano.artist, 20)
    print(f"artist radio of {piano.artist}: {live.titles(songs)}")
    assert songs and set(songs) <= set(tracks) and len(songs) == len(set(songs)) and len(songs) <= 20
    by = [tracks[s].artist_id for s in songs]
    assert by[0] == piano.artist_id and len(set(by)) >= 3  # this version: the artist's own songs, then the others'


# ----- read your writes: the moment a run completes, the plugin gets its results -------------------------------
def test_artist_radio_the_moment_the_first_run_completed(live: Live) -> None:
    songs = live.first_radio
    assert isinstance(songs, list) and songs, songs  # lagging: "AudioMuse-AI returned status 404"
    assert set(songs) <= set(live.tracks())


def test_before_the_run_the_new_artist_is_unknown(after_run: AfterRun) -> None:
    assert isinstance(after_run.before_artist, str) and "status 404" in after_run.before_artist


def test_the_runs_completed(after_run: AfterRun) -> None:
    for final in (after_run.final, after_run.rewrite_final):
        assert final["status"] in ("completed", "completed_with_errors") and final["status"] in TERMINAL, final
    assert after_run.rewrite_final["processed_tracks"] == after_run.rewrite_final["total_tracks"]


def test_artist_radio_for_an_artist_the_run_just_embedded(live: Live, after_run: AfterRun) -> None:
    songs = after_run.artist_radio
    assert isinstance(songs, list), songs  # on a cache that lags the run: "AudioMuse-AI returned status 404"
    tracks = live.tracks()
    assert songs and set(songs) <= set(tracks) and len(songs) == len(set(songs))
    by = [tracks[s].artist_id for s in songs]
    assert by[0] == after_run.fresh_artist_id and len(set(by)) >= 2


def test_instant_mix_of_a_track_the_run_just_embedded(live: Live, after_run: AfterRun) -> None:
    songs = after_run.fresh_mix
    assert isinstance(songs, list) and songs, songs
    tracks = live.tracks()
    assert set(songs) <= set(tracks) and after_run.fresh_track_id not in songs


def test_a_track_rewritten_in_place_is_mixed_by_its_new_sound(live: Live, after_run: AfterRun) -> None:
    tracks = live.tracks()
    before, after = after_run.before_rewritten, after_run.rewritten_mix
    assert isinstance(before, list) and isinstance(after, list), (before, after)
    assert not before or tracks[before[0]].title not in PIANO  # noise: its neighbours were not the pianos
    assert after and tracks[after[0]].title in PIANO and live.named(REWRITTEN).id not in after
