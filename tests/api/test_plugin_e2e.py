"""The published Navidrome plugin (audiomuseai.ndp, NeptuneHub/AudioMuse-AI-NV-plugin v8) against real processes.

The sample library is embedded with dsp by the real Dagster assets into a real Milvus Lite server;
the API runs as its own process (``python -m navembed_api``). Every request is built the way the
plugin's Go code builds it — ``url.Values.Encode()`` (keys sorted, ``QueryEscape``d),
``strconv.FormatBool``/``Itoa``, ``Authorization: Bearer <apiToken>`` — and sent byte for byte over a
plain HTTP connection; every answer is decoded as Go's ``json.Unmarshal`` decodes it into the
plugin's structs (a wrong type is an error, a missing field a zero value), then put through the
plugin's own logic (``main.go``), including its artist-radio interleaving.
"""

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary, Track
from navembed_pipeline.sample_data.sample_library import write_sample_library
from navembed_pipeline.stack import free_port, settings_env
from tests.lib.store.milvus_fixture import drop_everything
from tests.pipeline.helpers import embed, navembed_instance

pytestmark = pytest.mark.slow

TOKEN = "plugin-secret"
START_TIMEOUT_S = 60.0
# The plugin's structs (main.go, audiomuse_api.go) as json.Unmarshal sees them.
TRACK = {"item_id": str, "title": str, "author": str, "album": str, "distance": float}
PATH = {"path": [TRACK]}
SONG = {"item_id": str, "title": str}
ARTIST = {"artist": str, "artist_id": str,
          "component_matches": [{"artist1_representative_songs": [SONG], "artist2_representative_songs": [SONG]}]}


# ----- what the Go code does -----------------------------------------------------------------------
def go_encode(params: dict[str, str]) -> str:
    """``url.Values.Encode()``: keys sorted, keys and values QueryEscape'd (space → '+')."""
    return "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}" for k, v in sorted(params.items()))


def go_bool(value: bool) -> str:
    return "true" if value else "false"  # strconv.FormatBool


def go_unmarshal(value: Any, shape: Any) -> Any:
    """``json.Unmarshal`` into a Go value of ``shape``: str, float, [shape] or {json name: shape}."""
    if value is None:  # JSON null leaves Go's zero value
        return [] if isinstance(shape, list) else {} if isinstance(shape, dict) else shape()
    if isinstance(shape, list):
        assert isinstance(value, list), f"cannot unmarshal {type(value).__name__} into a Go slice"
        return [go_unmarshal(v, shape[0]) for v in value]
    if isinstance(shape, dict):
        assert isinstance(value, dict), f"cannot unmarshal {type(value).__name__} into a Go struct"
        by_name = {k.casefold(): v for k, v in value.items()}  # Go matches field names case-insensitively
        return {k: go_unmarshal(by_name.get(k.casefold()), s) for k, s in shape.items()}
    if shape is float:
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{value!r} is not a Go float64"
        return float(value)
    assert isinstance(value, shape), f"cannot unmarshal {value!r} into a Go {shape.__name__}"
    return value


@dataclass
class Plugin:
    """The plugin's HTTP side (host.HTTPSend with its default 10 s timeout) and its config."""

    host: str
    port: int
    token: str = TOKEN
    eliminate_duplicates: bool = True
    radius_similarity: bool = True
    artist_similar_count: int = 10

    def get(self, endpoint: str, params: dict[str, str], *, token: str | None = None) -> tuple[int, Any]:
        token = self.token if token is None else token
        headers = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
        if token:
            headers["Authorization"] = "Bearer " + token
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request("GET", f"/api/{endpoint}?{go_encode(params)}", headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def _ok(self, endpoint: str, params: dict[str, str], shape: Any) -> Any:
        status, body = self.get(endpoint, params)
        assert status == 200, f"AudioMuse-AI returned status {status}: {body}"
        return go_unmarshal(body, shape)

    def similar_tracks(self, item_id: str, count: int) -> list[dict]:
        """getAudioMuseSimilarTracks."""
        return self._ok("similar_tracks", {"item_id": item_id, "n": str(count),
                                           "eliminate_duplicates": go_bool(self.eliminate_duplicates),
                                           "radius_similarity": go_bool(self.radius_similarity)}, [TRACK])

    def sonic_similar_tracks(self, song_id: str, count: int) -> list[tuple[str, float]]:
        """GetSonicSimilarTracks: (id, similarity) with similarity = clamp(1 - distance)."""
        tracks = self.similar_tracks(song_id, count if count > 0 else 10)
        return [(t["item_id"], min(max(1.0 - t["distance"], 0.0), 1.0)) for t in tracks]

    def find_sonic_path(self, start: str, end: str, count: int) -> list[str]:
        count = count if count > 0 else 25
        body = self._ok("find_path", {"start_song_id": start, "end_song_id": end, "count": str(count),
                                      "max_steps": str(count), "path_fix_size": "false", "mood_pct": "100"}, PATH)
        return [item["item_id"] for item in body["path"]]

    def similar_artists(self, artist_id: str, include_component_matches: bool) -> list[dict]:
        return self._ok("similar_artists", {"artist": artist_id, "n": str(self.artist_similar_count),
                                            "include_component_matches": go_bool(include_component_matches)},
                        [ARTIST])

    def similar_songs_by_artist(self, artist_id: str, count: int) -> list[str]:
        """GetSimilarSongsByArtist: deduplicated song slices, interleaved round-robin."""
        seen: set[str] = set()
        slices: list[list[str]] = []
        for artist in self.similar_artists(artist_id, True):
            first, second = [], []
            for match in artist["component_matches"]:
                for songs, side in ((first, "artist1_representative_songs"), (second, "artist2_representative_songs")):
                    for song in match[side]:
                        if song["item_id"] and song["item_id"] not in seen:
                            seen.add(song["item_id"])
                            songs.append(song["item_id"])
            slices += [s for s in (first, second) if s]
        songs: list[str] = []
        index = 0
        while len(songs) < count and slices:
            songs.append(slices[index].pop(0))
            if not slices[index]:
                del slices[index]
                if not slices:
                    break
            else:
                index += 1
            index %= len(slices)
        return songs


# ----- the stack -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Served:
    plugin: Plugin
    tracks: dict[str, Track]
    first_call_seconds: float

    def one(self, title: str, album: str | None = None) -> str:
        return next(t.id for t in self.tracks.values() if t.title == title and (album is None or t.album == album))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("plugin")
    library = write_sample_library(root / "library", seconds=4.0)
    drop_everything(milvus_uri)
    with navembed_instance() as instance:
        assert embed(library, milvus_uri, instance, models=("dsp",)).success
    port = free_port()
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           milvus_uri=milvus_uri, models="dsp", socket_path=None, api_port=port,
                           plugin_token=TOKEN, dagster_url=f"http://127.0.0.1:{free_port()}")
    log = (root / "api.log").open("wb")
    api = subprocess.Popen([sys.executable, "-m", "navembed_api"], env={**os.environ, **settings_env(settings)},
                           stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        plugin = Plugin("127.0.0.1", port)
        _wait_until_up(plugin, api, root / "api.log")
        started = time.monotonic()
        tracks = {t.id: t for t in NavidromeLibrary(library.db_path).tracks()}
        seed = next(t.id for t in tracks.values() if t.title == "Evening Keys")
        plugin.similar_tracks(seed, 10)
        yield Served(plugin, tracks, time.monotonic() - started)
    finally:
        api.terminate()
        api.wait(timeout=30)
        log.close()


def _wait_until_up(plugin: Plugin, api: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert api.poll() is None, f"the API exited: {log.read_text()[-2000:]}"
        try:
            connection = http.client.HTTPConnection(plugin.host, plugin.port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the API did not start: {log.read_text()[-2000:]}")


# ----- the plugin's features ----------------------------------------------------------------------------
def test_the_first_call_after_startup_is_well_within_the_plugins_10_s(served: Served):
    assert served.first_call_seconds < 5.0


def test_instant_mix_gets_library_songs_without_the_seed_or_a_second_copy(served: Served):
    seed = served.one("Evening Keys")
    plugin = Plugin(served.plugin.host, served.plugin.port, radius_similarity=False)
    songs = [t["item_id"] for t in plugin.similar_tracks(seed, 100)]
    assert songs and seed not in songs and set(songs) <= set(served.tracks)
    assert len(songs) == len(set(songs))
    morning = {t.id for t in served.tracks.values() if t.title == "Morning Keys"}
    assert len(morning) == 2 and len(morning & set(songs)) == 1  # the FLAC and its MP3 copy: one recording
    assert served.tracks[songs[0]].title in {"Morning Keys", "Opening Keys", "Live Set"}  # piano first


def test_a_copy_of_the_seed_is_never_offered(served: Served):
    seed = served.one("Morning Keys", album="Keys")
    copy = served.one("Morning Keys", album="Keys (MP3 copy)")
    plugin = Plugin(served.plugin.host, served.plugin.port, radius_similarity=False)
    assert copy not in [t["item_id"] for t in plugin.similar_tracks(seed, 100)]
    plugin.eliminate_duplicates = False
    assert copy == plugin.similar_tracks(seed, 100)[0]["item_id"]


def test_the_default_radius_keeps_the_mix_to_near_songs(served: Served):
    near = served.plugin.similar_tracks(served.one("Evening Keys"), 100)
    everything = Plugin(served.plugin.host, served.plugin.port, radius_similarity=False).similar_tracks(
        served.one("Evening Keys"), 100)
    assert 1 <= len(near) <= len(everything)
    assert all(t["distance"] <= 0.5 for t in near)


def test_sonic_similarity_is_calibrated_and_most_similar_first(served: Served):
    matches = served.plugin.sonic_similar_tracks(served.one("Evening Keys"), 0)  # count 0: the plugin asks 10
    assert 1 <= len(matches) <= 10
    values = [similarity for _, similarity in matches]
    assert values == sorted(values, reverse=True) and all(0.0 <= v <= 1.0 for v in values)
    plugin = Plugin(served.plugin.host, served.plugin.port, radius_similarity=False)
    every = [s for _, s in plugin.sonic_similar_tracks(served.one("Evening Keys"), 100)]
    assert every[-1] < 0.2  # the least alike song of the library is shown as unlike, not as 0.5


def test_a_sonic_path_runs_from_the_start_song_to_the_end_song(served: Served):
    start, end = served.one("Morning Keys", album="Keys"), served.one("White Room")
    path = served.plugin.find_sonic_path(start, end, 5)
    assert path[0] == start and path[-1] == end and len(path) <= 5 and set(path) <= set(served.tracks)
    assert len(served.plugin.find_sonic_path(start, end, 0)) <= 25


def test_similar_artists_are_navidrome_artists(served: Served):
    piano = served.tracks[served.one("Evening Keys")].artist_id
    artists = served.plugin.similar_artists(piano, False)
    artist_ids = {t.artist_id for t in served.tracks.values()}
    assert artists and all(a["artist_id"] in artist_ids and a["artist"] for a in artists)
    assert piano not in [a["artist_id"] for a in artists]
    assert all(a["component_matches"] == [] for a in artists)


def test_artist_radio_interleaves_the_artists_library_songs(served: Served):
    piano = served.tracks[served.one("Evening Keys")].artist_id
    songs = served.plugin.similar_songs_by_artist(piano, 20)
    assert songs and len(songs) == len(set(songs)) and len(songs) <= 20
    assert set(songs) <= set(served.tracks)
    by = [served.tracks[s].artist_id for s in songs]
    assert by[0] == piano and len(set(by)) >= 3  # the seed artist's song, then the others', interleaved
    assert by[1] != piano


def test_the_token_is_checked_and_unknown_ids_are_404(served: Served):
    params = {"item_id": served.one("Evening Keys"), "n": "3", "eliminate_duplicates": "true",
              "radius_similarity": "true"}
    assert served.plugin.get("similar_tracks", params, token="wrong")[0] == 401
    assert served.plugin.get("similar_tracks", {**params, "item_id": "no-such-id"})[0] == 404
    status, body = served.plugin.get("similar_artists", {"artist": "no-such-artist", "n": "10",
                                                         "include_component_matches": "true"})
    assert status == 404 and body["status"] == "error"
