"""The NAS-offline case on a real stack (Milvus Lite, dagster-webserver + dagster-daemon, the API, as
`navembed up` starts them): the sample library is embedded; Navidrome then flags every ``media_file`` row
missing, as its scan does while the music folder is unreachable; a normal run follows (``/batch/start``)
and the library change sensor is evaluated by Dagster itself (GraphQL ``sensorDryRun``).

Every vector is kept, and the refusal shows where an operator looks: ``/health``, ``/batch/progress``
and the ``deletions_safe`` asset check as Dagster's GraphQL reports it. When the files come back, a run
embeds nothing again, the check passes and ``/health`` is ok.
"""

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from navembed_api.dagster_client import DagsterClient, SensorTick
from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.sample_data.navidrome_fixture import mark_missing
from navembed_pipeline.sample_data.sample_library import SampleLibrary, write_sample_library
from navembed_pipeline.stack import Stack, free_port
from tests.api.app_fixtures import ADMIN, TOKEN, latest_sensor_tick

pytestmark = pytest.mark.slow

TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
SENSOR = "library_change_sensor"
BACK = datetime(2026, 3, 1, tzinfo=UTC)  # Navidrome's next scan sees the files again (it stamps updated_at)
DRY_RUN = """
mutation DryRun($selector: SensorSelector!) {
  sensorDryRun(selectorData: $selector, cursor: null) {
    __typename
    ... on DryRunInstigationTick { evaluationResult { skipReason runRequests { runKey } error { message } } }
    ... on PythonError { message }
  }
}
"""
CHECK_QUERY = """
query Check($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) {
    runId status evaluation { success severity description }
  }
}
"""


@dataclass(frozen=True)
class Running:
    stack: Stack
    library: SampleLibrary
    api: httpx.Client
    store: VectorStore
    data: Path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("nas")
    library = write_sample_library(root / "lib", seconds=6)
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           models="dsp", admin_token=TOKEN, socket_path=root / "embed.sock",
                           api_port=free_port(), dagster_port=free_port(), sensor_interval_seconds=3600)
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, headers=ADMIN, timeout=60) as api:
        store = VectorStore(stack.urls.milvus)
        try:
            yield Running(stack, library, api, store, settings.data_dir)
        finally:
            store.close()


def graphql(running: Running, query: str, variables: dict) -> dict:
    async def ask() -> dict:
        client = DagsterClient(running.stack.urls.dagster, headers=ADMIN)
        try:
            location = await client.job_location("reembed_job")
            selector = {"repositoryName": location.repository_name,
                        "repositoryLocationName": location.location_name}
            return await client.execute(query, {k: ({**selector, **v} if k == "selector" else v)
                                                for k, v in variables.items()})
        finally:
            await client.aclose()

    return asyncio.run(ask())


def latest_tick(running: Running) -> SensorTick | None:
    return latest_sensor_tick(running.stack.urls.dagster, SENSOR)


def progress(running: Running, run_id: str | None = None) -> dict:
    response = running.api.get("/batch/progress", params={"run_id": run_id} if run_id else None)
    assert response.status_code == 200, response.text
    return response.json()


def follow(running: Running, run_id: str | None = None, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while (answer := progress(running, run_id))["status"] not in (*TERMINAL, "no_job"):
        assert time.monotonic() < deadline, answer
        time.sleep(0.5)
    return answer


def normal_run(running: Running) -> dict:
    """``/batch/start`` without force or clearExisting (what the sensor and the schedule start), followed to its end."""
    started = running.api.post("/batch/start", json={"models": ["dsp"]})
    assert started.status_code == 200, started.text
    final = follow(running, started.json()["run_id"])
    assert final["status"] in ("completed", "completed_with_errors"), final
    return final


def sensor_dry_run(running: Running) -> dict:
    """The library change sensor evaluated now by Dagster's code server (the UI's "Test sensor")."""
    data = graphql(running, DRY_RUN, {"selector": {"sensorName": SENSOR}})["sensorDryRun"]
    assert data["__typename"] == "DryRunInstigationTick", data
    result = data["evaluationResult"]
    assert result["error"] is None, result["error"]
    return result


def deletions_check(running: Running) -> dict:
    (execution,) = graphql(running, CHECK_QUERY, {"key": {"path": ["dsp_embeddings"]},
                                                  "name": "deletions_safe"})["assetCheckExecutions"]
    return execution


def wait_for_the_first_sensor_tick(running: Running) -> None:
    """The daemon ticks the sensor once at start (it may start a run of the new library): let it finish."""
    deadline = time.monotonic() + 90
    while True:
        tick = latest_tick(running)
        if tick is not None and tick.finished:
            break
        assert time.monotonic() < deadline, "the library change sensor never ticked"
        time.sleep(0.5)
    for run_id in tick.run_ids:
        follow(running, run_id)


def test_an_offline_nas_keeps_every_vector_says_so_everywhere_and_its_return_embeds_nothing(running: Running) -> None:
    wait_for_the_first_sensor_tick(running)
    if running.store.count("dsp") < 11:
        normal_run(running)
    ids = sorted(running.store.all_track_ids("dsp"))
    assert len(ids) == 11  # 12 tracks, one unreadable
    before = running.store.get_vectors("dsp", ids)
    fingerprints = FingerprintStore(running.data / "fingerprints.sqlite")
    printed = fingerprints.versions(ids)
    assert printed  # the engine fingerprinted the readable tracks
    assert running.api.get("/health").json()["status"] == "ok"

    everything = [t.id for t in NavidromeLibrary(running.library.db_path).tracks()]
    for track_id in everything:  # the NAS is unreachable while Navidrome scans
        mark_missing(running.library.db_path, track_id)

    offline = normal_run(running)
    assert offline["models"]["dsp"]["embedded"] == 0
    assert sorted(running.store.all_track_ids("dsp")) == ids  # every vector kept
    assert set(fingerprints.versions(ids)) == set(printed)  # and every fingerprint
    check = deletions_check(running)
    assert check["runId"] == offline["run_id"] and check["status"] == "FAILED", check
    assert check["evaluation"]["severity"] == "ERROR" and not check["evaluation"]["success"]
    assert "every file of library folder(s)" in check["evaluation"]["description"]
    guard = offline["deletion_guard"]
    assert not guard["ok"] and [r["model"] for r in guard["refused"]] == ["dsp"]
    health = running.api.get("/health").json()
    assert health["status"] == "degraded" and not health["deletions"]["ok"]
    assert any("deletions refused for dsp" in r and "every file of library folder(s)" in r
               for r in health["reasons"]), health["reasons"]

    tick = sensor_dry_run(running)
    assert not tick["runRequests"]  # no run per tick while the files are kept
    assert "every file of library folder(s)" in tick["skipReason"]
    assert sorted(running.store.all_track_ids("dsp")) == ids

    for track_id in everything:  # the NAS is back; Navidrome's scan flips every row present again
        mark_missing(running.library.db_path, track_id, missing=False, now=BACK)
    back = normal_run(running)
    assert back["models"]["dsp"]["embedded"] == 0  # nothing embedded again
    after = running.store.get_vectors("dsp", ids)
    assert set(after) == set(before)
    assert all(np.allclose(after[t], before[t], atol=1e-6) for t in ids)
    check = deletions_check(running)
    assert check["runId"] == back["run_id"] and check["status"] == "SUCCEEDED", check
    assert back["deletion_guard"] == {"ok": True, "refused": []}
    assert not sensor_dry_run(running)["runRequests"]  # the vectors are current again
    health = running.api.get("/health").json()
    assert health["status"] == "ok" and health["deletions"] == {"ok": True, "refused": []}, health["reasons"]
