"""The stack on PostgreSQL: a throw-away Postgres cluster, the Dagster instance written from the
``dagster_postgres_url`` setting (the same file as ``deploy/dagster-postgres.yaml``), the real webserver,
daemon and API as `navembed up` starts them, the sample library with dsp.

One stack serves the module and the tests run in order, as a user's session would: the change
sensor's run, the schedule's run, ``/batch/start|progress|cancel`` unchanged, then a job of two
workers over disjoint bucket ranges (every bucket at most once, every one holding tracks exactly once)
and a cancel that stops both.
"""

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import httpx
import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.instance import POSTGRES_URL_ENV, environment, instance_env, instance_yaml
from navembed_pipeline.lib.buckets import BUCKETS, bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from navembed_pipeline.lib.workers import JOB_TAG
from navembed_pipeline.stack import Stack, free_port
from tests.api.app_fixtures import ADMIN, TOKEN
from tests.api.test_e2e import write_library
from tests.pipeline.postgres_cluster import PostgresCluster, postgres_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
SCHEDULE = "nightly_reconcile_schedule"


@dataclass(frozen=True)
class Running:
    stack: Stack
    cluster: PostgresCluster
    library: SampleLibrary
    size: int
    api: httpx.Client
    home: Path
    schedule_at: datetime

    def instance(self) -> dg.DagsterInstance:
        """The stack's instance, opened here (on Postgres, like every process of the stack)."""
        with environment(instance_env(self.home, self.cluster.url)):
            return dg.DagsterInstance.from_config(str(self.home))


def _next_minute(after_seconds: float) -> datetime:
    moment = datetime.now(timezone.utc) + timedelta(seconds=after_seconds)
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, postgres_cluster: PostgresCluster) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("postgres-stack")
    library, size = write_library(root / "lib")
    # The schedule fires once, about three minutes in (its cron names one minute of the day, in UTC): late
    # enough that the daemon, started after the webserver, has seen the schedule before that minute.
    schedule_at = _next_minute(150)
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           models="dsp", admin_token=TOKEN, socket_path=None, api_port=free_port(),
                           dagster_port=free_port(), sensor_interval_seconds=3600,
                           reconcile_cron=f"{schedule_at.minute} {schedule_at.hour} * * *",
                           dagster_postgres_url=postgres_cluster.url, models_dir=root / "no-models")
    with Stack(settings) as stack, httpx.Client(base_url=stack.urls.api, headers=ADMIN, timeout=30) as api:
        yield Running(stack, postgres_cluster, library, size, api, settings.dagster_home, schedule_at)


def progress(running: Running, **params: str) -> dict:
    response = running.api.get("/batch/progress", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def follow(running: Running, *, until: tuple[str, ...] = TERMINAL, timeout: float = 600.0) -> list[dict]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(progress(running))
        if seen[-1]["status"] in until:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"no {until} within {timeout} s; last: {seen[-1] if seen else None}")


def follow_run(running: Running, run_id: str, *, timeout: float = 600.0) -> dict:
    """Poll /batch/progress?run_id= until that run is over; its last answer."""
    answer, deadline = progress(running, run_id=run_id), time.monotonic() + timeout
    while answer["status"] not in TERMINAL:
        assert time.monotonic() < deadline, answer
        time.sleep(0.5)
        answer = progress(running, run_id=run_id)
    return answer


def first_run_tagged(running: Running, key: str, value: str, *, timeout: float) -> str:
    """The id of the first run with tag ``key=value``, waiting up to ``timeout`` s for the daemon to make it."""
    instance, deadline = running.instance(), time.monotonic() + timeout
    while not (runs := instance.get_runs(dg.RunsFilter(tags={key: value}))):
        if time.monotonic() > deadline:
            daemon_log = (running.stack.log_dir / "dagster-daemon.log").read_text()[-3000:]
            pytest.fail(f"no run tagged {key}={value} within {timeout:.0f} s: {daemon_log}")
        time.sleep(1.0)
    return runs[-1].run_id


def materialized_buckets(instance: dg.DagsterInstance, run_ids: list[str]) -> Counter:
    seen: Counter = Counter()
    for run_id in run_ids:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        seen.update(r.event_log_entry.asset_materialization.partition for r in records.records)
    return seen


def test_the_instance_written_for_postgres_is_the_deploy_file(running: Running) -> None:
    written = (running.home / "dagster.yaml").read_text()
    assert written == instance_yaml(postgres=True) == (DEPLOY / "dagster-postgres.yaml").read_text()
    assert f"env: {POSTGRES_URL_ENV}" in written


def test_runs_events_and_schedules_live_in_postgres(running: Running) -> None:
    tables = set(running.cluster.psql("select tablename from pg_tables where schemaname = 'public'").split())
    assert {"runs", "event_logs", "jobs", "job_ticks"} <= tables
    assert not list(running.home.rglob("*.db")), "a SQLite storage file was created beside Postgres"


def test_the_change_sensor_runs_on_postgres(running: Running) -> None:
    final = follow_run(running, first_run_tagged(running, "navembed/trigger", "library_change_sensor", timeout=300))
    assert final["trigger"] == "library_change_sensor", final
    assert final["status"] == "completed_with_errors" and final["failed_tracks"] == 1
    assert final["processed_tracks"] == final["total_tracks"] == running.size
    ticks = running.cluster.psql("select count(*) from job_ticks where selector_id is not null")
    assert int(ticks) >= 1


def test_the_schedule_fires_on_postgres(running: Running) -> None:
    wait = max(0.0, (running.schedule_at - datetime.now(timezone.utc)).total_seconds())
    run_id = first_run_tagged(running, "dagster/schedule_name", SCHEDULE, timeout=wait + 180)
    final = follow_run(running, run_id)
    assert final["trigger"] == SCHEDULE and final["status"] == "completed_with_errors"
    assert final["skipped_tracks"] == running.size - 1  # the sensor's run embedded everything already


def test_start_progress_and_cancel_work_unchanged(running: Running) -> None:
    follow(running)
    started = running.api.post("/batch/start", json={"models": ["dsp"], "force": True})
    assert started.status_code == 200, started.text
    assert running.api.post("/batch/start", json={"models": ["dsp"]}).status_code == 409
    while not (0 < (answer := progress(running))["processed_tracks"] < answer["total_tracks"]):
        assert answer["status"] not in TERMINAL, answer
        time.sleep(0.1)
    assert running.api.post("/batch/cancel").json()["status"] == "cancelling"
    final = follow(running, timeout=120)[-1]
    assert final["run_id"] == started.json()["run_id"] and final["status"] == "cancelled"
    assert running.api.post("/batch/cancel").status_code == 404


def test_two_workers_are_one_job_with_every_bucket_done_exactly_once(running: Running) -> None:
    follow(running)
    started = running.api.post("/batch/start", json={"models": ["dsp"], "force": True, "workers": 2})
    assert started.status_code == 200, started.text
    body = started.json()
    assert len(body["run_ids"]) == 2
    seen = follow(running)
    both = [a for a in seen if sum(w["dagster_status"] == "STARTED" for w in a.get("workers", [])) == 2]
    assert both, "the two workers never ran at the same time"
    final = seen[-1]
    assert final["job"] == body["job"] and final["run_id"] == body["run_id"]
    assert final["status"] == "completed_with_errors" and final["failed_tracks"] == 1
    assert final["processed_tracks"] == final["total_tracks"] == running.size
    assert {w["run_id"] for w in final["workers"]} == set(body["run_ids"])
    instance = running.instance()
    assert {instance.get_run_by_id(r).tags[JOB_TAG] for r in body["run_ids"]} == {body["job"]}
    # Every bucket holding tracks exactly once; an empty bucket that an earlier run already recorded empty
    # is left out (quiet_buckets.py), any other once.
    done = materialized_buckets(instance, body["run_ids"])
    assert set(done.values()) == {1}
    occupied = {bucket_of(t.id) for t in NavidromeLibrary(running.library.db_path).tracks()}
    assert occupied <= set(done)
    for bucket in set(BUCKETS) - set(done):
        latest = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("dsp_embeddings"), asset_partitions=[bucket]), limit=1).records[0]
        metadata = latest.asset_materialization.metadata
        assert latest.run_id not in body["run_ids"]
        assert metadata["tracks"].value == metadata["dagster/row_count"].value == 0


def test_cancel_stops_every_worker_of_the_job(running: Running) -> None:
    follow(running)
    body = running.api.post("/batch/start", json={"models": ["dsp"], "force": True, "workers": 2}).json()
    while not (0 < (answer := progress(running))["processed_tracks"] < answer["total_tracks"]):
        assert answer["status"] not in TERMINAL, answer
        time.sleep(0.1)
    active = [w["run_id"] for w in answer["workers"] if w["dagster_status"] in ("QUEUED", "STARTING", "STARTED")]
    assert running.api.post("/batch/cancel").status_code == 200
    final = follow(running, timeout=120)[-1]
    assert final["status"] == "cancelled" and final["job"] == body["job"]
    instance = running.instance()
    assert active and {instance.get_run_by_id(r).status for r in active} == {dg.DagsterRunStatus.CANCELED}
    assert not [r for r in body["run_ids"] if not instance.get_run_by_id(r).is_finished]
    assert running.api.post("/batch/cancel").status_code == 404


def test_clear_existing_is_refused_with_workers(running: Running) -> None:
    answer = running.api.post("/batch/start", json={"models": ["dsp"], "clearExisting": True, "workers": 2})
    assert answer.status_code == 422 and "workers" in answer.json()["message"]
