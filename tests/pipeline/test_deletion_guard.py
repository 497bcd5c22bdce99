"""The NAS-offline case through real components: Navidrome flags every file missing, a normal run and the
sensor follow; every vector is kept, the refusal shows in the Dagster check and on ``/health``; when the
files come back nothing is embedded again. Real deletions still happen: a row gone from ``media_file``,
a file missing past the grace period."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from navembed_pipeline.assets import embedding_assets, library_tracks
from navembed_pipeline.checks import DELETIONS_CHECK, VECTORS_CHECK
from navembed_pipeline.lib.duplicates.fingerprint_store import FingerprintStore
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.runs import embed_run_config
from navembed_pipeline.partitions import range_tags
from navembed_pipeline.resources import ModelsResource, NavidromeResource, VectorStoreResource
from navembed_pipeline.sample_data.navidrome_fixture import delete_track, mark_missing
from navembed_pipeline.sensors import build_library_change_sensor
from tests.api.app_fixtures import api_settings, running_app
from tests.pipeline.helpers import bucket_materializations

DSP = dg.AssetKey("dsp_embeddings")
BACK = datetime(2026, 3, 1, tzinfo=UTC)  # when Navidrome's scan sees the files again (it stamps updated_at)


def resources(library, uri: str, data: Path, **store: float) -> dict:
    """The pipeline's resources with the data dir ``data`` (failure log, missing-tracks log)."""
    return {"navidrome": NavidromeResource(db_path=str(library.db_path)),
            "vector_store": VectorStoreResource(uri=uri, failures_db=str(data / "failures.sqlite"),
                                                fingerprints_db=str(data / "fingerprints.sqlite"), **store),
            "models": ModelsResource(device="cpu", decode_workers=1)}


def run(library, uri: str, data: Path, instance: dg.DagsterInstance, first: str = "00", last: str = "ff",
        confirm_deletions: bool = False, **store: float) -> dg.ExecuteInProcessResult:
    return dg.materialize([library_tracks, *embedding_assets], instance=instance, selection=[DSP],
                          resources=resources(library, uri, data, **store), tags=range_tags(first, last),
                          run_config=embed_run_config(["dsp"], confirm_deletions=confirm_deletions))


def sensor_tick(library, uri: str, data: Path, instance: dg.DagsterInstance) -> dg.SensorResult:
    sensor = build_library_change_sensor(["dsp"], interval_seconds=60)
    with dg.build_sensor_context(instance=instance, resources=resources(library, uri, data)) as context:
        return sensor(context)


def deletions_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == DELETIONS_CHECK]
    return evaluation


def totals(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    per_bucket = bucket_materializations(result).values()
    return {key: sum(m[key] for m in per_bucket) for key in ("embedded", "deleted")}


def test_nas_offline_keeps_every_vector_and_its_return_embeds_nothing(sample_library, vector_store, milvus_uri,
                                                                      instance, tmp_path) -> None:
    data = tmp_path / "data"
    first = run(sample_library, milvus_uri, data, instance)
    assert deletions_check(first).passed
    stored = vector_store.all_track_ids("dsp")
    rows = vector_store.count("dsp")
    assert len(stored) == 11  # 12 tracks, one unreadable
    before = vector_store.stored("dsp", stored)

    everything = [row[0] for row in _rows(sample_library.db_path)]
    for track_id in everything:  # the NAS is unreachable while Navidrome scans
        mark_missing(sample_library.db_path, track_id)
    assert NavidromeLibrary(sample_library.db_path).count() == 0

    printed = FingerprintStore(data / "fingerprints.sqlite").versions(stored)
    assert set(printed) == stored  # every readable track fingerprinted by the first run
    offline = run(sample_library, milvus_uri, data, instance)
    assert totals(offline) == {"embedded": 0, "deleted": 0}
    assert FingerprintStore(data / "fingerprints.sqlite").versions(stored) == printed  # fingerprints kept too
    assert vector_store.count("dsp") == rows and vector_store.all_track_ids("dsp") == stored
    check = deletions_check(offline)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "every file of library folder(s)" in check.description and check.metadata["kept_missing"].value == 11
    vectors = [e for e in offline.get_asset_check_evaluations() if e.check_name == VECTORS_CHECK]
    assert vectors and vectors[0].passed  # kept vectors are not "orphans"
    logged = [r for r in instance.all_logs(offline.run_id) if "DELETIONS REFUSED" in r.user_message]
    assert logged and logged[0].level == 30  # a warning in the run's log

    tick = sensor_tick(sample_library, milvus_uri, data, instance)
    assert not tick.run_requests  # nothing to do while the files are kept: no run per tick
    assert "every file of library folder(s)" in tick.skip_reason.skip_message
    assert vector_store.count("dsp") == rows

    settings = api_settings(tmp_path, milvus_uri=milvus_uri, data_dir=data, navidrome_db=sample_library.db_path)
    with running_app(settings) as client:
        health = client.get("/health").json()
    assert health["status"] == "degraded" and not health["deletions"]["ok"]
    (refusal,) = health["deletions"]["refused"]
    assert refusal["model"] == "dsp" and "every file of library folder(s)" in refusal["reason"]

    for track_id in everything:  # the NAS is back; Navidrome's next scan flips them present (new updated_at)
        mark_missing(sample_library.db_path, track_id, missing=False, now=BACK)
    tick = sensor_tick(sample_library, milvus_uri, data, instance)
    requests = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                for r in tick.run_requests]
    back = [run(sample_library, milvus_uri, data, instance, first, last) for first, last in requests]
    assert back and sum(totals(r)["embedded"] for r in back) == 0  # nothing embedded again
    assert all(deletions_check(r).passed for r in back)
    after = vector_store.stored("dsp", stored)
    assert set(after) == stored and all(after[t].fingerprint != before[t].fingerprint for t in stored)
    assert not sensor_tick(sample_library, milvus_uri, data, instance).run_requests  # vectors current again
    with running_app(settings) as client:
        assert client.get("/health").json()["deletions"] == {"ok": True, "refused": []}


def test_a_row_gone_from_navidrome_is_deleted_and_a_missing_file_only_after_its_grace_period(
        sample_library, vector_store, milvus_uri, instance, tmp_path) -> None:
    data = tmp_path / "data"
    run(sample_library, milvus_uri, data, instance)
    stored = sorted(vector_store.all_track_ids("dsp"))
    removed, missing = stored[0], stored[1]
    delete_track(sample_library.db_path, removed)  # Navidrome purged it
    mark_missing(sample_library.db_path, missing)
    within = run(sample_library, milvus_uri, data, instance)
    assert totals(within)["deleted"] == 1 and deletions_check(within).passed
    assert vector_store.stored("dsp", [removed]) == {} and missing in vector_store.stored("dsp", [missing])
    prints = FingerprintStore(data / "fingerprints.sqlite")
    assert set(prints.versions([removed, missing])) == {missing}  # fingerprints follow the same rule
    # The same file, still missing, once the grace period is over (here: a grace period of ~0.4 ms).
    past = run(sample_library, milvus_uri, data, instance, deletion_grace_hours=1e-7)
    assert totals(past)["deleted"] == 1 and vector_store.stored("dsp", [missing]) == {}
    assert prints.versions([missing]) == {}
    assert deletions_check(past).passed


def _rows(db_path: Path) -> list[tuple[str]]:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT id FROM media_file").fetchall()


def test_every_file_of_one_library_folder_missing_deletes_nothing_even_past_the_grace_period(
        sample_library, vector_store, milvus_uri, instance, tmp_path) -> None:
    """One of two library folders unmounted (its only track here: a deletion far below the allowed share),
    seen missing longer than the grace period: nothing is deleted, the check fails with the folder's name."""
    data = tmp_path / "data"
    run(sample_library, milvus_uri, data, instance)
    stored = vector_store.all_track_ids("dsp")
    field = [t.id for t in NavidromeLibrary(sample_library.db_path).tracks() if t.library_id == 2]
    assert field and set(field) <= stored
    for track_id in field:
        mark_missing(sample_library.db_path, track_id)
    past = run(sample_library, milvus_uri, data, instance, deletion_grace_hours=1e-7)
    assert totals(past)["deleted"] == 0 and vector_store.all_track_ids("dsp") == stored
    check = deletions_check(past)
    assert not check.passed and "every file of library folder(s) 'Field Recordings'" in check.description
    assert set(FingerprintStore(data / "fingerprints.sqlite").versions(field)) == set(field)


def test_a_mass_deletion_is_refused_until_a_run_confirms_it(sample_library, vector_store, milvus_uri, instance,
                                                            tmp_path) -> None:
    """Six of eleven rows purged at once (more than 10 %): nothing goes and the check fails; a run with
    ``confirm_deletions`` (the Launchpad's op config, or ``confirmDeletions`` on /batch/start) deletes them."""
    data = tmp_path / "data"
    run(sample_library, milvus_uri, data, instance)
    stored = vector_store.all_track_ids("dsp")
    purged = sorted(stored)[:6]
    for track_id in purged:
        delete_track(sample_library.db_path, track_id)
    refused = run(sample_library, milvus_uri, data, instance)
    assert totals(refused)["deleted"] == 0 and vector_store.all_track_ids("dsp") == stored
    check = deletions_check(refused)
    assert not check.passed and "6 of 11 stored tracks would be deleted at once" in check.description
    confirmed = run(sample_library, milvus_uri, data, instance, confirm_deletions=True)
    assert totals(confirmed)["deleted"] == 6 and deletions_check(confirmed).passed
    assert vector_store.all_track_ids("dsp") == stored - set(purged)
    assert FingerprintStore(data / "fingerprints.sqlite").versions(purged) == {}
