"""End to end with real processes: Milvus Lite, dagster-webserver + dagster-daemon on the project's
workspace, and the API, as `navembed up` starts them, on the sample library with the dsp model.

One stack serves the module; the tests run in order, as a user's session would.
"""

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from navembed_api.dagster_client import SensorTick
from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.navidrome_fixture import FixtureTrack, add_tracks
from navembed_pipeline.sample_data.sample_library import SampleLibrary, write_sample_library
from navembed_pipeline.stack import Stack, free_port
from tests.api.app_fixtures import ADMIN, TOKEN, latest_sensor_tick
from tests.api.upload_fixtures import SETTINGS_ON, ask
from tests.lib.models.tiny_muq import build_tiny_muq

pytestmark = pytest.mark.slow

TRACK_SECONDS = 8
COPIES = 8  # copies of each single-track file: ~90 tracks, so a dsp run spans several progress lines
TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
SENSOR = "library_change_sensor"

@dataclass(frozen=True)
class Running:
    stack: Stack
    library: SampleLibrary
    api: httpx.Client
    store: VectorStore
    socket: Path
    size: int

    def track_ids(self) -> list[str]:
        return [t.id for t in NavidromeLibrary(self.library.db_path).tracks()]


def write_library(root: Path) -> tuple[SampleLibrary, int]:
    """The sample library plus ``COPIES`` copies of each single-track file (as new tracks); its size."""
    library = write_sample_library(root, seconds=TRACK_SECONDS)
    music = root / "music"
    originals = [t for t in NavidromeLibrary(library.db_path).tracks() if t.library_id == 1
                 and t.path not in (library.corrupt_path, library.cue_album_path)]
    copies = []
    for number in range(1, COPIES + 1):
        for track in originals:
            relative = Path("Copies", str(number), track.path.relative_to(music))
            (music / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(track.path, music / relative)
            copies.append(FixtureTrack(path=relative.as_posix(), title=f"{track.title} #{number}",
                                       artist=track.artist, album=track.album, duration=track.duration_seconds))
    add_tracks(library.db_path, copies)
    return library, library.track_count + len(copies)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("e2e")
    library, size = write_library(root / "lib")
    (root / "uploads").mkdir()
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           upload_dir=root / "uploads", models="dsp", admin_token=TOKEN,
                           socket_path=root / "embed.sock", api_port=free_port(), dagster_port=free_port(),
                           sensor_interval_seconds=3600, models_dir=build_tiny_muq(root / "models"))
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, headers=ADMIN, timeout=30) as api:
        store = VectorStore(stack.urls.milvus)
        try:
            yield Running(stack, library, api, store, settings.socket_path, size)
        finally:
            store.close()


def progress(running: Running) -> dict:
    response = running.api.get("/batch/progress")
    assert response.status_code == 200, response.text
    return response.json()


def follow(running: Running, *, until: tuple[str, ...] = TERMINAL, timeout: float = 120.0) -> list[dict]:
    """Poll /batch/progress every 0.2 s until the status is one of ``until``; return every answer."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(progress(running))
        if seen[-1]["status"] in until:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"no {until} within {timeout} s; last: {seen[-1] if seen else None}")


def trace(seen: list[dict]) -> list[tuple[str, int, int]]:
    """(status, processed, polls) runs of the answers seen, for failure messages."""
    runs: list[tuple[str, int, int]] = []
    for answer in seen:
        key = (answer["status"], answer.get("processed_tracks", 0))
        if runs and runs[-1][:2] == key:
            runs[-1] = (*key, runs[-1][2] + 1)
        else:
            runs.append((*key, 1))
    return runs


def mid_run(answer: dict) -> bool:
    return answer["status"] == "running" and 0 < answer["processed_tracks"] < answer["total_tracks"]


def sensor_tick(running: Running) -> SensorTick | None:
    return latest_sensor_tick(running.stack.urls.dagster, SENSOR)


def test_the_stack_is_healthy(running: Running) -> None:
    body = running.api.get("/health").json()
    assert body["status"] == "ok", body
    assert body["socket"]["listening"] is True and body["dagster"]["version"]


def test_the_change_sensors_run_is_described_like_any_other(running: Running) -> None:
    deadline = time.monotonic() + 60
    while (tick := sensor_tick(running)) is None or not tick.finished:
        assert time.monotonic() < deadline, "the library change sensor never ticked"
        time.sleep(0.5)
    if not tick.run_ids:
        pytest.skip(f"the sensor requested no run (tick {tick.status})")
    final = follow(running)[-1]
    assert final["run_id"] == tick.run_ids[0] and final["trigger"] == SENSOR
    assert final["status"] == "completed_with_errors" and final["failed_tracks"] == 1


def test_a_reembed_shows_progress_mid_run_then_completes_with_the_corrupt_file_failed(running: Running) -> None:
    follow(running)  # nothing may be running when we start
    started = running.api.post("/batch/start", json={"models": ["dsp"], "clearExisting": False, "force": True})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["status"] == "started" and isinstance(body["job_id"], int)
    again = running.api.post("/batch/start", json={"models": ["dsp"]})
    assert again.status_code == 409 and again.json()["status"] == "error"
    seen = follow(running)
    assert any(mid_run(a) for a in seen), trace(seen)
    climbing = [a["processed_tracks"] for a in seen if a["status"] == "running"]
    assert climbing == sorted(climbing)
    final = seen[-1]
    assert final["run_id"] == body["run_id"] and final["trigger"] == "api"
    assert final["status"] == "completed_with_errors"
    assert final["failed_tracks"] == 1
    assert final["processed_tracks"] == final["total_tracks"] == running.size and final["progress_percent"] == 100.0
    assert final["estimated_completion"] == final["finished_at"]


def test_a_cancelled_run_stops_within_5_s_and_keeps_what_was_written(running: Running) -> None:
    follow(running)
    ids = running.track_ids()
    before = running.store.get_vectors("dsp", ids)
    assert len(before) == len(ids) - 1  # every track but the corrupt one
    assert running.api.post("/batch/start", json={"models": ["dsp"], "force": True}).status_code == 200
    follow(running, until=("running",))
    while not mid_run(answer := progress(running)):
        assert answer["status"] not in TERMINAL, answer
        time.sleep(0.1)
    asked = time.time()
    cancel = running.api.post("/batch/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelling"
    final = follow(running, timeout=30)[-1]
    assert final["status"] == "cancelled"
    assert final["finished_at"] - asked < 5.0  # Dagster's own end time: polling delays do not count
    after = running.store.get_vectors("dsp", ids)
    assert set(after) == set(before)
    for track, vectors in before.items():
        assert np.allclose(after[track], vectors, atol=1e-6)
    nothing = running.api.post("/batch/cancel")
    assert nothing.status_code == 404 and nothing.json()["status"] == "error"


def test_progress_follows_a_named_run_and_refuses_unknown_ones(running: Running) -> None:
    follow(running)
    started = running.api.post("/batch/start", json={"models": ["dsp"]}).json()
    mine = running.api.get("/batch/progress", params={"run_id": started["run_id"]})
    assert mine.status_code == 200 and mine.json()["run_id"] == started["run_id"]
    final = follow(running)[-1]
    assert final["run_id"] == started["run_id"] and final["skipped_tracks"] == running.size - 1
    unknown = running.api.get("/batch/progress", params={"run_id": "00000000-0000-4000-8000-000000000000"})
    assert unknown.status_code == 404 and "no run" in unknown.json()["message"]
    malformed = running.api.get("/batch/progress", params={"run_id": "../etc"})
    assert malformed.status_code == 422 and malformed.json()["status"] == "error"


def test_the_upload_socket_flags_a_library_track_as_duplicate(running: Running) -> None:
    answer = ask(running.socket, {"music_file": str(running.library.duplicate_pair[1]), "name": "copy.mp3",
                                  "settings": SETTINGS_ON})
    assert answer["status"] == "ok" and answer["allDuplicates"] is True
    assert answer["duplicates"] == ["Piano Trio - Morning Keys"]


def test_fuzzing_the_openapi_spec_finds_no_server_errors(running: Running) -> None:
    """Schemathesis against the live API (admin token sent): every answer is below 500, errors keep their shape."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(f"{running.stack.urls.api}/openapi.json")
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def probe(case) -> None:
                response = case.call(headers=ADMIN, timeout=30)
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if response.status_code >= 500 or (response.status_code >= 400 and
                                                   (not isinstance(body, dict) or body.get("status") != "error")):
                    problems.append(f"{operation.label} {mode.value} -> "  # noqa: B023 - called in this iteration
                                    f"{response.status_code}: {response.text[:300]}")

            try:
                probe()
            except Unsatisfiable:  # e.g. no invalid input exists for an endpoint without parameters
                pass
    assert not problems, "\n".join(problems[:10])
