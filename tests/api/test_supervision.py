"""`navembed up` as a fault would meet it: side doors closed, and a Milvus killed mid-run recovered without a person.

One real stack (Milvus Lite, Dagster webserver + daemon, the API) over a generated library big enough
that a dsp re-embed is still running when Milvus, the run's worker process or the daemon is killed with
SIGKILL.
"""

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from navembed_api.settings import ApiSettings
from navembed_pipeline.instance import environment, instance_env
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.run_launcher import worker_started
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from navembed_pipeline.stack import Stack, free_port
from tests.api.app_fixtures import ADMIN, TOKEN
from tests.api.test_e2e import write_library

pytestmark = pytest.mark.slow
VERSION_QUERY = {"query": "{ version }"}


@dataclass
class Up:
    stack: Stack
    api: httpx.Client
    library: SampleLibrary
    size: int
    supervising: threading.Thread | None = None

    def supervise(self) -> None:
        """What `navembed up` does after starting: ``Stack.wait()``, here on a thread."""
        if self.supervising is None:
            self.supervising = threading.Thread(target=self.stack.wait, daemon=True)
            self.supervising.start()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("supervised")
    library, size = write_library(root / "lib")
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           models="dsp", admin_token=TOKEN, socket_path=None, api_port=free_port(),
                           sensor_interval_seconds=3600, dagster_timeout_seconds=60)
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, headers=ADMIN, timeout=30) as api:
        yield Up(stack, api, library, size)


def _listening_tcp_pids() -> str:
    return subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=False).stdout


def test_milvus_listens_only_on_an_owner_only_unix_socket(up: Up) -> None:
    assert up.stack.urls.milvus.startswith("unix:")
    sock = Path(up.stack.urls.milvus.removeprefix("unix:"))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert f"pid={up.stack._milvus.pid}," not in _listening_tcp_pids()  # noqa: SLF001


def test_dagster_graphql_is_unreachable_without_the_token(up: Up) -> None:
    dagster = up.stack.urls.dagster
    assert dagster == f"{up.stack.urls.api}/dagster"
    anonymous = httpx.post(f"{dagster}/graphql", json=VERSION_QUERY, timeout=30)
    assert anonymous.status_code == 401 and "admin token" in anonymous.json()["message"]
    wrong = httpx.post(f"{dagster}/graphql", json=VERSION_QUERY, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    assert up.api.post("/dagster/graphql", json=VERSION_QUERY).json()["data"]["version"]
    # The webserver itself listens on no TCP port, only on a socket in an owner-only directory.
    sock = Path(up.stack.urls.dagster_socket)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    webserver = next(c for c in up.stack._children if c.name == "dagster-webserver")  # noqa: SLF001
    assert f"pid={webserver.process.pid}," not in _listening_tcp_pids()


def test_a_browser_signs_in_once_and_then_gets_the_dagster_ui(up: Up) -> None:
    with httpx.Client(base_url=up.stack.urls.api, timeout=30) as browser:
        page = browser.get("/dagster/runs", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2Fdagster%2Fruns")
        assert browser.post("/login", data={"token": "nope", "next": "/dagster/runs"}).status_code == 401
        signed_in = browser.post("/login", data={"token": TOKEN, "next": "/dagster/runs"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dagster/runs"
        assert TOKEN not in browser.cookies.get("navembed_session", "")
        ui = browser.get("/dagster/runs", headers={"Accept": "text/html"})
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        assert browser.post("/dagster/graphql", json=VERSION_QUERY).json()["data"]["version"]
        evil = browser.post("/login", data={"token": TOKEN, "next": "https://evil.example/"})
        assert evil.headers["location"] == "/dagster/"  # no open redirect
        script = re.search(r'<script[^>]+src="(/dagster/[^"]+\.js)"', ui.text)
        assert script, ui.text[:500]
        bundle = browser.get(script.group(1))
        assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
        assert httpx.get(f"{up.stack.urls.api}{script.group(1)}", timeout=30).status_code == 401


def test_live_run_logs_stream_over_the_proxied_websocket_for_the_admin_only(up: Up) -> None:
    url = up.stack.urls.api.replace("http://", "ws://") + "/dagster/graphql"
    with ws_connect(url, subprotocols=["graphql-ws"], additional_headers=ADMIN, open_timeout=30) as socket:
        socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(socket.recv(timeout=30))["type"] == "connection_ack"
    with pytest.raises(InvalidStatus), ws_connect(url, subprotocols=["graphql-ws"], open_timeout=30):
        pass
    origin = {**ADMIN, "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus), ws_connect(url, subprotocols=["graphql-ws"], additional_headers=origin,
                                                  open_timeout=30):
        pass


def _health(up: Up) -> dict:
    return up.api.get("/health").json()


def _wait(what: str, check, timeout: float = 180.0, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _progress(up: Up, run_id: str) -> dict:
    return up.api.get("/batch/progress", params={"run_id": run_id}).json()


def test_milvus_killed_mid_run_is_restarted_and_the_run_completes_with_every_track(up: Up) -> None:
    started = up.api.post("/batch/start", json={"models": ["dsp"]})
    assert started.status_code == 200, started.text
    run_id = started.json()["run_id"]
    _wait("the run to be mid-way", lambda: 0 < _progress(up, run_id).get("processed_tracks", 0) < up.size
          or _progress(up, run_id)["status"] == "running", poll=0.1)
    os.kill(up.stack._milvus.pid, signal.SIGKILL)  # noqa: SLF001

    # Before the supervisor acts: the store is down, and the API says so instead of starting doomed runs.
    _wait("the store to be reported down", lambda: not _health(up)["store"]["ok"], timeout=30)
    refused = up.api.post("/batch/start", json={"models": ["dsp"]})
    assert refused.status_code == 503 and "vector store" in refused.json()["message"]

    up.supervise()
    _wait("Milvus to be restarted", lambda: (h := _health(up))["store"]["ok"] and h["stack"]["milvus"]["restarts"] == 1)
    log = (up.stack.log_dir / "supervisor.log").read_text()
    assert "milvus exited with code -9; restarting it" in log and "milvus is running again" in log

    final_run = run_id
    if _wait("the interrupted run to end", lambda: _progress(up, run_id)["status"] not in ("running", "initialized"),
             timeout=300) and _progress(up, run_id)["status"] == "failed":
        relaunched = _wait("the interrupted run to be re-launched", lambda: up.stack.supervisor.relaunched.get(run_id))
        final_run = relaunched
    done = _wait("the run to complete", lambda: (p := _progress(up, final_run))["status"] not in (
        "running", "initialized") and p, timeout=600)
    assert done["status"] in ("completed", "completed_with_errors"), done

    again = up.api.post("/batch/start", json={"models": ["dsp"]})  # a re-run after recovery works too
    assert again.status_code == 200, again.text
    _wait("the re-run to complete", lambda: _progress(up, again.json()["run_id"])["status"] in (
        "completed", "completed_with_errors"), timeout=600)

    _assert_every_track_stored(up)
    print((up.stack.log_dir / "supervisor.log").read_text())  # the story, for a person reading the output


def _assert_every_track_stored(up: Up) -> None:
    """Every track of the library has dsp vectors, except the corrupt file, recorded as failed."""
    ids = {t.id for t in NavidromeLibrary(up.library.db_path).tracks()}
    store = VectorStore(up.stack.urls.milvus, failure_log=FailureLog(up.stack.settings.failures_db))
    try:
        stored, failed = set(store.stored("dsp", sorted(ids))), set(store.failed_tracks("dsp"))
    finally:
        store.close()
    assert stored | failed == ids and len(stored) == len(ids) - 1 and len(failed) == 1  # the corrupt file


def test_a_killed_dagster_webserver_is_restarted_and_the_ui_answers_again(up: Up) -> None:
    up.supervise()
    webserver = next(c for c in up.stack._children if c.name == "dagster-webserver")  # noqa: SLF001
    os.killpg(webserver.process.pid, signal.SIGKILL)
    _wait("the webserver to be restarted", lambda: (h := _health(up))["dagster"]["ok"]
          and h["stack"]["dagster-webserver"]["restarts"] == 1, timeout=300)
    assert up.api.post("/dagster/graphql", json=VERSION_QUERY).json()["data"]["version"]
    assert "dagster-webserver exited with code -9" in (up.stack.log_dir / "supervisor.log").read_text()


# ----- a run whose worker dies (on its own, or with the daemon that launched it) -------------------------
RUN_STATUS = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
RETRIES = """query Retries($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/parent_run_id", value: $id}]}) { ... on Runs { results { runId } } }
}"""


def _dagster(up: Up, query: str, **variables: str) -> dict:
    return up.api.post("/dagster/graphql", json={"query": query, "variables": variables}).json()["data"]


def _run_status(up: Up, run_id: str) -> str:
    return _dagster(up, RUN_STATUS, id=run_id)["runOrError"]["status"]


def _completed_run_after(up: Up, run_id: str) -> list[str]:
    """Follow ``run_id`` through the runs Dagster re-launched after it failed, to one that succeeded."""
    chain = [run_id]
    while (status := _wait(f"run {chain[-1]} to end", lambda: (st := _run_status(up, chain[-1])) in (
            "SUCCESS", "FAILURE", "CANCELED") and st, timeout=600)) == "FAILURE":
        assert len(chain) <= 3, f"runs {chain} all failed"
        retries = _wait(f"a re-launch of failed run {chain[-1]}",
                        lambda: _dagster(up, RETRIES, id=chain[-1])["runsOrError"]["results"], timeout=180)
        chain.append(retries[0]["runId"])
    assert status == "SUCCESS", chain
    return chain


def _start_forced_run(up: Up) -> tuple[str, tuple[int, float]]:
    """A full re-embed (every track, stored or not) caught while its worker process embeds; (run id, worker)."""
    started = up.api.post("/batch/start", json={"models": ["dsp"], "force": True})
    assert started.status_code == 200, started.text
    run_id = started.json()["run_id"]
    home = up.stack.settings.dagster_home
    with environment(instance_env(home)), dg.DagsterInstance.from_config(str(home)) as instance:
        worker = _wait("the run worker to start", lambda: worker_started(instance, run_id), poll=0.1)
    _wait("the run to be mid-way", lambda: 0 < _progress(up, run_id).get("processed_tracks", 0) < up.size, poll=0.1)
    return run_id, worker


def test_a_killed_run_worker_is_noticed_and_its_run_relaunched_with_every_track(up: Up) -> None:
    up.supervise()
    run_id, (pid, _) = _start_forced_run(up)
    os.kill(pid, signal.SIGKILL)
    chain = _completed_run_after(up, run_id)
    assert len(chain) >= 2 and _run_status(up, run_id) == "FAILURE"  # monitoring marked it; a retry finished
    _assert_every_track_stored(up)


def test_a_killed_daemon_is_restarted_and_the_run_it_launched_completes_with_every_track(up: Up) -> None:
    up.supervise()
    run_id, (pid, _) = _start_forced_run(up)
    daemon = next(c for c in up.stack._children if c.name == "dagster-daemon")  # noqa: SLF001
    restarts = _health(up)["stack"]["dagster-daemon"]["restarts"]
    os.killpg(daemon.process.pid, signal.SIGKILL)  # the daemon and every process it started
    _wait("the daemon to be restarted", lambda: _health(up)["stack"]["dagster-daemon"]["restarts"] == restarts + 1,
          timeout=300)
    assert "dagster-daemon exited with code -9" in (up.stack.log_dir / "supervisor.log").read_text()
    chain = _completed_run_after(up, run_id)
    print(f"worker {pid} of run {run_id}: runs {chain}")
    _assert_every_track_stored(up)
