"""The batching SQLite event log stores exactly what Dagster's own stores, a batch in one go."""

import os
import time
from pathlib import Path

import dagster as dg
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from navembed_pipeline.event_log import BatchingSqliteEventLogStorage
from navembed_pipeline.instance import open_instance

KEY = dg.AssetKey("dsp_embeddings")
BUCKETS = [f"{i:02x}" for i in range(12)]


def _entry(event: DagsterEvent, run_id: str) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=10, user_message="", run_id=run_id, timestamp=time.time(),
                         step_key="step", job_name="job", dagster_event=event)


def _planned(run_id: str) -> list[EventLogEntry]:
    return [_entry(DagsterEvent.build_asset_materialization_planned_event(
        "job", "step", AssetMaterializationPlannedData(KEY, partition=bucket)), run_id) for bucket in BUCKETS]


def _materialized(run_id: str, buckets: list[str]) -> list[EventLogEntry]:
    return [_entry(DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name="job",
                                event_specific_data=StepMaterializationData(dg.AssetMaterialization(
                                    KEY, partition=bucket, metadata={"embedded": 3},
                                    tags={"dagster/data_version": f"v-{bucket}"}))), run_id)
            for bucket in buckets]


def _what_is_stored(storage: SqliteEventLogStorage) -> tuple:
    planned = storage.get_event_records(dg.EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, KEY))
    return (len(storage.get_records_for_run("r1").records), sorted(storage.get_materialized_partitions(KEY)),
            sorted(r.partition_key for r in planned),
            [r.asset_materialization.metadata["embedded"].value for r in storage.fetch_materializations(KEY, limit=99).records])


def test_a_batch_of_planned_events_is_stored_as_dagster_stores_them_one_by_one(tmp_path) -> None:
    stored = {}
    for name, cls in (("dagster", SqliteEventLogStorage), ("batching", BatchingSqliteEventLogStorage)):
        storage = cls(str(tmp_path / name))
        storage.store_event_batch(_planned("r1"))
        for event in _materialized("r1", BUCKETS[:5]):
            storage.store_event(event)
        stored[name] = _what_is_stored(storage)
        storage.dispose()
    assert stored["batching"] == stored["dagster"]
    assert stored["batching"][1] == BUCKETS[:5] and stored["batching"][2] == BUCKETS


def _tables(base: Path, run_id: str) -> dict[str, list[tuple]]:
    """Every row of the run's file and of the cross-run index's tables, as stored (less ``create_timestamp``,
    the database clock's second at the insert)."""
    import sqlite3

    out = {}
    for name, tables in ((run_id, ("event_logs",)), ("index", ("event_logs", "asset_keys", "asset_event_tags",
                                                                "asset_check_executions"))):
        with sqlite3.connect(base / f"{name}.db") as conn:
            for table in tables:
                columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] != "create_timestamp"]
                out[f"{name}.{table}"] = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1").fetchall()
    return out


def test_a_mixed_batch_leaves_every_table_row_for_row_as_dagsters_one_by_one(tmp_path) -> None:
    """Planned events of two assets and materializations (which carry tags) in one batch, over an asset row
    that already exists: the batching storage's files hold exactly the rows Dagster's own would, ids,
    serialized events, tags and each asset's last run and timestamps included."""
    from dagster._core.definitions.partitions.subset import DefaultPartitionsSubset
    from dagster._core.events import AssetCheckEvaluationPlanned

    other = dg.AssetKey("musicnn_embeddings")
    before = _materialized("r0", BUCKETS[:1])
    checks = [_entry(DagsterEvent(event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED.value,
                                  job_name="job", step_key="step", event_specific_data=AssetCheckEvaluationPlanned(
                                      asset_key=KEY, check_name=name, partitions_subset=subset)), "r1")
              for name, subset in (("deletions_safe", DefaultPartitionsSubset(set(BUCKETS))), ("whole", None))]
    batch = [*_planned("r1"), _entry(DagsterEvent.build_asset_materialization_planned_event(
        "job", "step", AssetMaterializationPlannedData(other, partition="00")), "r1"), *_materialized("r1", BUCKETS[:3]), *checks]
    stored = {}
    for name, cls in (("dagster", SqliteEventLogStorage), ("batching", BatchingSqliteEventLogStorage)):
        storage = cls(str(tmp_path / name))
        for event in before:
            storage.store_event(event)
        if name == "dagster":
            for event in batch:
                storage.store_event(event)
        else:
            storage.store_event_batch(batch)
        storage.dispose()
        stored[name] = _tables(tmp_path / name, "r1")
    assert stored["batching"] == stored["dagster"]
    assert len(stored["batching"]["index.event_logs"]) == 1 + len(batch)
    assert len(stored["batching"]["index.asset_keys"]) == 2
    assert stored["batching"]["index.asset_event_tags"], "the materializations' tags are stored"
    assert len(stored["batching"]["index.asset_check_executions"]) == len(BUCKETS) + 1  # a row per planned partition


def test_navembeds_instance_uses_the_batching_event_log_with_batches_on(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", os.environ.get("DAGSTER_HOME", ""))  # restored after the test
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")
    instance = open_instance(tmp_path / "dagster")
    try:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        assert int(os.environ["DAGSTER_EVENT_BATCH_SIZE"]) >= len(BUCKETS)
        # where Dagster's own SQLite event log keeps it: existing run history stays readable
        assert Path(instance.event_log_storage._base_dir) == (tmp_path / "dagster").resolve() / "history" / "runs"
    finally:
        instance.dispose()


def test_a_watcher_in_another_process_sees_events_as_the_run_writes_them(tmp_path) -> None:
    """Commits skip file syncs and keep their connection open, yet another reader (the webserver) sees
    each event at once, and Dagster's live watch of the run (file modifications) fires within a second."""
    import threading

    writer = BatchingSqliteEventLogStorage(str(tmp_path / "runs"))
    reader = SqliteEventLogStorage(str(tmp_path / "runs"))  # Dagster's own, as the webserver reads
    seen: list[str] = []
    arrived = threading.Event()

    def on_event(entry: EventLogEntry, _cursor: str) -> None:
        seen.append(entry.dagster_event.event_specific_data.materialization.partition)
        if len(seen) >= 3:
            arrived.set()

    try:
        writer.store_event(_materialized("r1", BUCKETS[:1])[0])  # creates the run's file
        reader.watch("r1", None, on_event)
        for event in _materialized("r1", BUCKETS[1:3]):
            writer.store_event(event)
            assert len(reader.get_records_for_run("r1").records) == BUCKETS.index(
                event.dagster_event.event_specific_data.materialization.partition) + 1
        assert arrived.wait(10), f"the live watch saw {seen}"
        assert seen == BUCKETS[:3]
    finally:
        reader.end_watch("r1", on_event)
        reader.dispose()
        writer.dispose()
