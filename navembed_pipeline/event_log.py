"""Dagster's SQLite event log, with batches of asset events written in one transaction, and cheap commits.

Dagster's ``SqliteEventLogStorage`` writes every event in its own transactions (the run's shard, then
the cross-run index), each opening a new SQLAlchemy engine and connection. A run over all 256 buckets
starts with one "planned" event per bucket, which Dagster hands over as one batch when
``DAGSTER_EVENT_BATCH_SIZE`` is set (``instance.py`` sets it); Dagster's SQLite storage still stores a
batch event by event. This subclass stores such a batch in one transaction per database file (256
planned events: ~17 s → ~1.6 s measured here on a loaded machine), with one multi-row insert per file
and one insert-or-update of each asset's row (0.24–0.49 s → 0.09–0.14 s on the idle 2-core machine),
and serializes a planned check's event once instead of once per partition (issue 25: the launch's
share of a small run's fixed cost). ``tests/pipeline/test_event_log.py`` compares every table row for
row with what Dagster's own storage writes.

Each single event still cost file syncs at every commit and a WAL checkpoint with its sync at every
close (closing the last connection of a WAL database checkpoints it): ~55 ms per event here, so a
run's 256 bucket materializations and 256 check evaluations took ~30 s whatever the library's size.
This storage keeps one open connection per recently used file (``ENGINES_KEPT``) with
``synchronous=NORMAL``, SQLite's recommended setting for WAL databases (a commit appends to the WAL
without a sync; a power cut may lose the last commits, never the database), and checkpoints the run
files it wrote every ``CHECKPOINT_SECONDS`` on a background thread. That checkpoint is what modifies a
run's ``.db`` file, which the UI's live view of a run watches (Dagster's
``SqliteEventLogStorageWatchdog``): the UI still follows a run within a second. What is stored, and
where, is exactly what Dagster stores: reads, the live watch and migrations are Dagster's own code.
Configured in ``dagster.yaml`` (the SQLite flavour only; PostgreSQL batches itself).
"""

import atexit
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster._check as check
from dagster import Field, StringSource
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, AssetKeyTable, SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_SECONDS = 15  # Dagster's own value for its SQLite storages
ENGINES_KEPT = 8  # files with an open connection: the index and the runs being written or read
CHECKPOINT_SECONDS = 0.5  # a run file written to is checkpointed (the UI sees its new events) this often


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` writing a batch of asset events in one transaction per file, without syncs."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None) -> None:
        # before Dagster's __init__, which already connects
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._written: set[str] = set()  # run files written to since their last checkpoint
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        home = os.environ.get("DAGSTER_HOME", ".")
        super().__init__(base_dir or os.path.join(home, "history", "runs", ""), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: dict[str, Any]) -> "BatchingSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        """Dagster's ``_connect`` (one lock, one transaction) on the file's one kept connection."""
        with self._db_lock:
            check.str_param(shard, "shard")
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        """One engine per file holding one connection (used under ``_db_lock``); the least recently used closes."""
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is None:
                engine = create_engine(self.conn_string_for_shard(shard), poolclass=StaticPool,
                                       connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                                     "check_same_thread": False})
                event.listen(engine, "connect", _without_commit_syncs)
                self._engines[shard] = engine
                while len(self._engines) > ENGINES_KEPT:
                    _, evicted = self._engines.popitem(last=False)
                    evicted.dispose()  # closing the file's last connection checkpoints it
            self._engines.move_to_end(shard)
            return engine

    def store_event(self, event: EventLogEntry) -> None:
        super().store_event(event)
        self._mark_written(event.run_id)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """One transaction on the run's file and one on the index for the batch's asset events.

        The batch's other events (asset check plans, run events) and batches spanning several runs
        are stored one by one, the way Dagster does.
        """
        if len({event.run_id for event in events}) != 1:
            super().store_event_batch(events)
            return
        assets = [e for e in events if e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS]
        if assets:
            rows = [self._event_to_row(event) for event in assets]
            with self.run_connection(assets[0].run_id) as conn:
                conn.execute(SqlEventLogStorageTable.insert(), rows)  # one statement, compiled once
            with self.index_transaction() as conn:
                inserted = conn.execute(SqlEventLogStorageTable.insert().returning(
                    SqlEventLogStorageTable.c.id, sort_by_parameter_order=True), rows)
                event_ids = [row.id for row in inserted]
                self._store_asset_event_tags(conn, assets, event_ids)
                self._store_asset_entries(conn, assets, event_ids)
            self._mark_written(assets[0].run_id)
        for event in events:
            if not (event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS):
                self.store_event(event)

    def _store_asset_entries(self, conn: Connection, events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> None:
        """Dagster's ``_store_asset_event`` for a batch, one statement per asset key: each event's update
        sets only its own columns, so applying the batch's updates of a key in order leaves the row with,
        per column, the last event's value that sets it — which is what one merged insert-or-update writes
        (a run's 256 planned events: one statement instead of 256 failed inserts and 256 updates)."""
        with_index_cols = self._has_asset_key_index_cols_on_connection(conn)
        merged: dict[str, dict[str, Any]] = {}
        for event, event_id in zip(events, event_ids, strict=True):
            if not (event.dagster_event and event.dagster_event.asset_key):
                continue
            values = self._get_asset_entry_values(event, event_id, with_index_cols)
            if values:
                merged.setdefault(event.dagster_event.asset_key.to_string(), {}).update(values)
        for asset_key, values in merged.items():
            try:
                conn.execute(AssetKeyTable.insert().values(asset_key=asset_key, **values))
            except IntegrityError:
                conn.execute(AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == asset_key))

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """Dagster's rows for a planned check (one per partition), with the event serialized once: Dagster
        serializes it again for every partition, and the event holds the run's whole partition subset (a
        run over 256 buckets: 4 checks × 256 serializations of 256 keys, half of the launch's time)."""
        planned = check.not_none(event.dagster_event).event_specific_data
        partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        values = {"asset_key": planned.asset_key.to_string(), "check_name": planned.check_name, "run_id": event.run_id,
                  "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
                  "evaluation_event": serialize_value(event),
                  "evaluation_event_timestamp": self._event_insert_timestamp(event),
                  "evaluation_event_storage_id": event_id}
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(),
                         [{**values, "partition": partition_key} for partition_key in partition_keys])

    def _mark_written(self, run_id: str) -> None:
        """Have the run's file checkpointed soon (what the UI's live view of the run waits for)."""
        with self._engines_lock:
            self._written.add(run_id)
            if self._checkpointer is None:
                self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                      name="navembed-event-log-checkpoint")
                self._checkpointer.start()
                atexit.register(self.checkpoint)

    def _checkpoint_loop(self) -> None:
        while not self._stopping.wait(CHECKPOINT_SECONDS):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL of every run file written since the last call into the file itself."""
        with self._engines_lock:
            written, self._written = self._written, set()
        for run_id in written:
            with self._db_lock:
                engine = self._engines.get(run_id)
                if engine is None:  # evicted: closing its connection checkpointed it
                    continue
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def dispose(self) -> None:
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        super().dispose()
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def _without_commit_syncs(connection: Any, _record: Any) -> None:
    """Commits append to the WAL without a file sync (checkpoints still sync): SQLite's advice for WAL."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
