"""``/health`` tells the truth: a full disk, an unreadable Navidrome database and a damaged state file
make it "degraded" with the reason (a damaged state file is set aside and rebuilt when next opened), and ``/batch/start`` refuses, with that reason, a run that could
only fail (a missing, garbage or locked navidrome.db)."""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.store.missing_tracks import MissingLog
from navembed_pipeline.lib.store.state_files import damage
from navembed_pipeline.sample_data.navidrome_fixture import FixtureLibrary, FixtureTrack, create_navidrome_db
from tests.api.app_fixtures import ADMIN, api_settings, running_app
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri  # noqa: F401 - fixtures


def navidrome_db(tmp_path: Path) -> Path:
    db = tmp_path / "navidrome.db"
    create_navidrome_db(db, libraries=[FixtureLibrary(1, "Music", "/music")], tracks=[FixtureTrack("a.flac")])
    return db


def test_a_readable_setup_is_ok_on_every_new_section(tmp_path: Path, milvus_uri: str) -> None:
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=navidrome_db(tmp_path))) as client:
        body = client.get("/health").json()
    assert body["navidrome"]["ok"] and body["navidrome"]["tracks"] == 1
    assert body["disk"]["ok"] and body["disk"]["free_mb"] > 0
    assert body["state_files"] == {"ok": True, "broken": {}, "set_aside": []} and body["deletions"]["ok"]
    assert all("dagster" in reason for reason in body["reasons"])  # the test's Dagster is nowhere: only that


def test_a_full_disk_is_degraded_with_the_free_space(tmp_path: Path, milvus_uri: str) -> None:
    settings = api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=navidrome_db(tmp_path),
                            health_min_free_mb=1 << 40)  # more than any disk here has free: "full"
    with running_app(settings) as client:
        body = client.get("/health").json()
        refused = client.post("/batch/start", json={"models": ["dsp"]}, headers=ADMIN)
    assert body["status"] == "degraded" and not body["disk"]["ok"]
    assert any("nearly) full" in reason for reason in body["reasons"]), body["reasons"]
    assert refused.status_code == 503, refused.text  # /batch/start refuses the run, with the reason
    assert "nearly) full" in refused.json()["message"] and "no run was started" in refused.json()["message"]


def test_batch_start_can_confirm_refused_deletions(tmp_path: Path, milvus_uri: str) -> None:
    """The way to undo a refused mass deletion from the API: ``confirmDeletions`` reaches every op's config."""
    from navembed_api.batch import BatchControl
    from tests.api.test_dagster_client_mock_transport import REPOS, RUN_A, FakeWebserver, data, runs

    web = FakeWebserver({"Runs": runs(), "Repositories": REPOS, "LaunchRun": data(
        launchRun={"__typename": "LaunchRunSuccess", "run": {"runId": RUN_A, "status": "QUEUED"}})})
    with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=navidrome_db(tmp_path))) as client:
        client.app.state.services.batch = BatchControl(web.client())
        plain = client.post("/batch/start", json={"models": ["dsp"]}, headers=ADMIN)
        confirmed = client.post("/batch/start", json={"models": ["dsp"], "confirmDeletions": True}, headers=ADMIN)
    assert plain.status_code == confirmed.status_code == 200, (plain.text, confirmed.text)
    first, second = (sent["executionParams"]["runConfigData"]["ops"] for sent in web.sent("LaunchRun"))
    assert all("confirm_deletions" not in op["config"] for op in first.values())
    assert second and all(op["config"]["confirm_deletions"] is True for op in second.values())


@pytest.mark.parametrize("damage", ["missing", "garbage", "locked"])
def test_an_unreadable_navidrome_db_is_degraded_and_refuses_a_run(tmp_path: Path, milvus_uri: str,
                                                                  damage: str) -> None:
    db = navidrome_db(tmp_path)
    holder = None
    if damage == "missing":
        db.unlink()
        expected = "no such file"
    elif damage == "garbage":
        db.write_bytes(b"this is not a database at all" * 100)
        expected = "not an SQLite database"
    else:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # what a writer mid-transaction (a rollback-journal scan) holds
        expected = "locked"
    try:
        with running_app(api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=db)) as client:
            health = client.get("/health").json()
            refused = client.post("/batch/start", json={"models": ["dsp"]}, headers=ADMIN)
    finally:
        if holder is not None:
            holder.close()
    assert health["status"] == "degraded" and not health["navidrome"]["ok"]
    assert expected in health["navidrome"]["error"]
    assert refused.status_code == 503 and expected in refused.json()["message"]
    assert "no run was started" in refused.json()["message"]


OWNERS = {"failures.sqlite": FailureLog, "fingerprints.sqlite": lambda p: FingerprintStore(p).versions([]),
          "missing.sqlite": MissingLog}


@pytest.mark.parametrize("name", list(OWNERS))
def test_a_damaged_state_file_is_named_then_set_aside_and_rebuilt(tmp_path: Path, milvus_uri: str, name: str) -> None:
    settings = api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=navidrome_db(tmp_path))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / name
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [(str(i) * 50,) for i in range(2000)])
    raw = bytearray(path.read_bytes())
    raw[100:100 + 4096] = b"\xff" * 4096  # a torn write over the schema page
    path.write_bytes(bytes(raw))
    with running_app(settings) as client:
        first = client.get("/health").json()
        # Named on /health: as broken, or already set aside by the API's own use of it (store, guard).
        named = list(first["state_files"]["broken"]) + [n.split(".corrupt-")[0] for n in first["state_files"]["set_aside"]]
        assert named == [name], first["state_files"]
        OWNERS[name](path)  # what the pipeline does with it on its next run
        second = client.get("/health").json()
    assert second["state_files"]["broken"] == {} and second["store"]["ok"], second
    (aside,) = second["state_files"]["set_aside"]
    assert aside.startswith(f"{name}.corrupt-") and (settings.data_dir / aside).read_bytes() == bytes(raw)
    assert damage(path) is None  # rebuilt, sound


def _torn(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [(str(i) * 50,) for i in range(2000)])
    raw = bytearray(path.read_bytes())
    raw[100:100 + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(raw))


def test_a_file_set_aside_while_health_reads_it_is_named_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's own use of a damaged file sets it aside while ``/health`` is reading the data dir: it is
    named once, as set aside, not both broken and set aside."""
    from navembed_api import health_probes
    from navembed_pipeline.lib.store.state_files import set_aside_if_damaged

    old, new = tmp_path / "failures.sqlite", tmp_path / "missing.sqlite"
    _torn(old)
    assert set_aside_if_damaged(old) is not None  # set aside before this probe: history, not news
    _torn(old)
    _torn(new)
    read = health_probes._file_error

    def read_then_set_aside(path: Path) -> str | None:
        error = read(path)
        if path == new:
            set_aside_if_damaged(path)  # another thread, between this probe's read and its listing
        return error

    monkeypatch.setattr(health_probes, "_file_error", read_then_set_aside)
    state = health_probes.state_files_state(tmp_path)
    assert list(state["broken"]) == ["failures.sqlite"]  # damaged again after its earlier setting aside
    assert [n.split(".corrupt-")[0] for n in state["set_aside"]] == ["failures.sqlite", "missing.sqlite"]
    assert not state["ok"]


def test_batch_progress_carries_the_refused_deletions(tmp_path: Path, milvus_uri: str) -> None:
    from navembed_api.batch import BatchControl
    from tests.api.test_dagster_client_mock_transport import RUN_B, FakeWebserver, raw_run, runs

    settings = api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=navidrome_db(tmp_path))
    MissingLog(settings.data_dir / "missing.sqlite").refuse("dsp", "every file of library folder(s) 'NAS' is "
                                                           "missing", 1200, 1.0)
    web = FakeWebserver({"Runs": runs(raw_run(RUN_B, "SUCCESS", job="__ASSET_JOB", assets=("library_tracks",)))})
    with running_app(settings) as client:
        client.app.state.services.batch = BatchControl(web.client())
        body = client.get("/batch/progress", headers=ADMIN).json()
    assert body["status"] == "no_job" and not body["deletion_guard"]["ok"]
    (refusal,) = body["deletion_guard"]["refused"]
    assert refusal == {"model": "dsp", "reason": "every file of library folder(s) 'NAS' is missing",
                       "would_delete": 1200, "refused_at": 1.0}


def test_damaged_model_weights_are_named_on_models_and_refuse_a_run(tmp_path: Path, milvus_uri: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A weights cache that is there but cannot be read: ``/models`` says so (never "not present") and
    ``/batch/start`` refuses the model's run with the folder and the way out."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    for repo in ("OpenMuQ/MuQ-MuLan-large", "OpenMuQ/MuQ-large-msd-iter", "FacebookAI/xlm-roberta-base"):
        (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").mkdir(parents=True)  # a ref that is a folder
    settings = api_settings(tmp_path, milvus_uri=milvus_uri, navidrome_db=navidrome_db(tmp_path), models="dsp,muq")
    with running_app(settings) as client:
        muq = next(m for m in client.get("/models").json() if m["name"] == "muq")
        refused = client.post("/batch/start", json={"models": ["muq"]}, headers=ADMIN)
    assert muq["weights_present"] is True and "download again" in muq["weights_error"]
    assert refused.status_code == 422 and "download again" in refused.json()["message"], refused.text
    assert "not on this machine" not in refused.json()["message"]
