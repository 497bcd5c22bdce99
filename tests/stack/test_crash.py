"""`kill -9` of `navembed up` mid-run: nothing of its data dir is left 5 s later, and the next `navembed up`
on the same data dir comes up healthy (one daemon) and finishes the interrupted work, one row per segment.

A real stack started as a person starts it (`python -m navembed_pipeline.cli up`), over the generated
library of ``test_e2e`` (about 90 tracks): a dsp run is still running when the top process is killed.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.instance import environment, instance_env
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.pids import PROC, environ, own_pids, pid_alive, processes_with_env, same_process, start_ticks
from navembed_pipeline.lib.store import VectorStore, running_uri
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.run_launcher import worker_started
from navembed_pipeline.stack import free_port, port_in_use, settings_env
from tests.api.app_fixtures import ADMIN, TOKEN
from tests.api.test_e2e import write_library

pytestmark = [pytest.mark.slow, pytest.mark.webserver]
UP_MARKER = "Ctrl-C stops everything"
RUNS = """query Runs($tag: String!) {
  runsOrError(filter: {tags: [{key: "dagster/parent_run_id", value: $tag}]}) { ... on Runs { results { runId } } }
}"""
RUN = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


def _wait(what: str, check: Callable[[], Any], timeout: float = 180.0, poll: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(poll)
    raise AssertionError(f"{what} did not happen within {timeout} s")


class Up:
    """`navembed up` as a child process, its output in a file (a pipe nobody reads would block it)."""

    def __init__(self, env: dict[str, str], data: Path, output: Path) -> None:
        self.output = output
        with output.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "navembed_pipeline.cli", "up", "--data-dir",
                                             str(data)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _wait("`navembed up` to be up", lambda: UP_MARKER in output.read_text() or self.process.poll() is not None)
        assert self.process.poll() is None, output.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(90)


def _descendants(top: int) -> set[int]:
    """Every process below ``top`` in the process tree, now."""
    children: dict[int, list[int]] = {}
    for pid in own_pids():
        try:
            parent = int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [top]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _of_data_dir(data: Path) -> list[int]:
    """Live processes whose settings point at ``data`` (every part gets ``NAVEMBED_DATA_DIR``; this test does not)."""
    return [pid for pid in processes_with_env("NAVEMBED_DATA_DIR", str(data)) if pid_alive(pid)]


@pytest.fixture
def crash_site(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], int, Any]]:
    library, size = write_library(tmp_path / "lib")
    data = (tmp_path / "data").resolve()
    api_port = free_port()
    settings = ApiSettings(data_dir=data, navidrome_db=library.db_path, music_root=library.root, models="dsp",
                           admin_token=TOKEN, socket_path=tmp_path / "embed.sock", api_port=api_port,
                           sensor_interval_seconds=3600, dagster_timeout_seconds=60)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("NAVEMBED_", "NAVIDROME_"))},
           **settings_env(settings)}
    yield data, env, api_port, (library, size, settings)
    for pid in _of_data_dir(data):  # whatever a failed assertion left: never leak a stack into the next test
        os.kill(pid, signal.SIGKILL)


def test_kill_9_of_navembed_up_mid_run_leaves_nothing_and_the_next_start_finishes_the_work(crash_site, tmp_path) -> None:
    data, env, api_port, (library, size, settings) = crash_site
    first = Up(env, data, tmp_path / "up-1.log")
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=ADMIN, timeout=30)
    try:
        started = api.post("/batch/start", json={"models": ["dsp"]})
        assert started.status_code == 200, started.text
        run_id = started.json()["run_id"]
        home = settings.dagster_home
        with environment(instance_env(home)), dg.DagsterInstance.from_config(str(home)) as instance:
            worker, _ = _wait("the run worker to start", lambda: worker_started(instance, run_id), poll=0.1)
        _wait("the run to be mid-way", lambda: 0 < api.get("/batch/progress", params={"run_id": run_id}).json().get(
            "processed_tracks", 0) < size, poll=0.1)

        # ----- the crash ----------------------------------------------------------------------------
        tree = _descendants(first.process.pid) | set(_of_data_dir(data))
        snapshot = {pid: start_ticks(pid) for pid in tree}
        assert worker in snapshot and len(snapshot) >= 6, snapshot  # Milvus, webserver, daemon, API, code server, worker
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        time.sleep(5.0)
        alive = {pid: environ(pid).get("_", "?") for pid, ticks in snapshot.items() if same_process(pid, ticks)}
        assert alive == {}, f"left alive 5 s after the kill: {alive}"
        assert _of_data_dir(data) == []
        assert not port_in_use("127.0.0.1", api_port) and running_uri(settings.milvus_data_dir) is None
        guard_log = (data / "logs" / "supervisor.log").read_text()
        assert "died without stopping" in guard_log, guard_log

        # ----- the next start finishes the work -----------------------------------------------------
        second = Up(env, data, tmp_path / "up-2.log")
        try:
            health = api.get("/health").json()
            assert health["store"]["ok"] and health["dagster"]["ok"], health
            assert health["daemons"]["ok"] and len(health["daemons"]["pids"]) == 1, health["daemons"]
            assert health["status"] == "ok", health["reasons"]
            chain = _completed_run_after(api, run_id)
            print(f"run {run_id} interrupted by the crash; finished by runs {chain[1:]}")
            _assert_one_row_per_segment_of_every_track(library, settings)
            log = (data / "logs" / "supervisor.log").read_text()
            assert f"the earlier `navembed up` (pid {first.process.pid}) crashed" in log, log
        finally:
            second.stop()
        assert second.process.returncode == 0, (tmp_path / "up-2.log").read_text()[-3000:]
        assert _of_data_dir(data) == []  # a clean stop leaves nothing either
    finally:
        api.close()
        if first.process.poll() is None:
            first.process.kill()


def _dagster(api: httpx.Client, query: str, **variables: str) -> dict:
    return api.post("/dagster/graphql", json={"query": query, "variables": variables}).json()["data"]


def _completed_run_after(api: httpx.Client, run_id: str) -> list[str]:
    """Follow ``run_id`` through its re-executions (Dagster's retries, the supervisor's) to one that succeeded."""
    chain = [run_id]
    while (status := _wait(f"run {chain[-1]} to end", lambda: (st := _dagster(api, RUN, id=chain[-1])[
            "runOrError"]["status"]) in ("SUCCESS", "FAILURE", "CANCELED") and st, timeout=600)) == "FAILURE":
        assert len(chain) <= 3, f"runs {chain} all failed"
        again = _wait(f"a re-execution of failed run {chain[-1]}",
                      lambda: _dagster(api, RUNS, tag=chain[-1])["runsOrError"]["results"], timeout=180)
        assert len(again) == 1, f"run {chain[-1]} was re-executed {len(again)} times: {again}"
        chain.append(again[0]["runId"])
    assert status == "SUCCESS" and len(chain) >= 2, chain
    return chain


def _assert_one_row_per_segment_of_every_track(library: Any, settings: ApiSettings) -> None:
    ids = {t.id for t in NavidromeLibrary(library.db_path).tracks()}
    store = VectorStore(running_uri(settings.milvus_data_dir), failure_log=FailureLog(settings.failures_db))
    try:
        stored, failed = set(store.stored("dsp", sorted(ids))), set(store.failed_tracks("dsp"))
        buckets = set(store.track_buckets("dsp").values())
        rows = [(r["track_id"], r["segment"]) for r in store.rows_in_buckets("dsp", buckets, ["track_id", "segment"])]
    finally:
        store.close()
    assert stored | failed == ids and len(stored) == len(ids) - 1 and len(failed) == 1  # the corrupt file
    assert len(rows) == len(set(rows)) and {track for track, _ in rows} == stored
