"""The failure log is a SQLite table under the data dir; records of the old Milvus collection move into it."""

from pathlib import Path

from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.lib.store.failure_log import FailureLog
from navembed_pipeline.lib.store.schema import (FAILURES_COLLECTION, PLACEHOLDER_FIELD, PLACEHOLDER_VECTOR,
                                                failures_index, failures_schema)


def test_the_latest_error_per_model_and_track_wins_and_clears_per_track(tmp_path: Path) -> None:
    log = FailureLog.in_data_dir(tmp_path)
    log.record("dsp", [("a", "decode failed"), ("b", "too short")])
    log.record("muq", [("a", "out of memory")])
    log.record("dsp", [("a", "file missing")])
    assert log.failed("dsp") == {"a": "file missing", "b": "too short"}
    log.clear("dsp", ["a"])
    assert log.failed("dsp") == {"b": "too short"} and log.failed("muq") == {"a": "out of memory"}


def test_records_are_shared_by_every_process_opening_the_data_dir(tmp_path: Path) -> None:
    FailureLog.in_data_dir(tmp_path).record("dsp", [("t1", "unreadable")])  # the pipeline's run ...
    assert FailureLog.in_data_dir(tmp_path).failed("dsp") == {"t1": "unreadable"}  # ... the API reads it
    assert (tmp_path / "failures.sqlite").is_file()


def test_clearing_many_tracks_at_once(tmp_path: Path) -> None:
    log = FailureLog(tmp_path / "f.sqlite")
    log.record("dsp", [(f"t{i}", "bad") for i in range(1500)])
    log.clear("dsp", [f"t{i}" for i in range(1499)])
    assert log.failed("dsp") == {"t1499": "bad"}


def legacy_rows(model: str, failures: dict[str, str], failed_at: int) -> list[dict]:
    return [{"pk": f"{model}:{track}", "model": model, "track_id": track, "error": error, "failed_at": failed_at,
             PLACEHOLDER_FIELD: PLACEHOLDER_VECTOR} for track, error in failures.items()]


def test_records_of_the_old_milvus_collection_are_moved_then_the_collection_dropped(vector_store, milvus_uri,
                                                                                   tmp_path: Path) -> None:
    milvus = vector_store._milvus  # the data as an older navembed wrote it
    milvus.create(FAILURES_COLLECTION, failures_schema(), failures_index)
    milvus.upsert(FAILURES_COLLECTION, legacy_rows("dsp", {"a": "decode failed", "b": "too short"}, 1_700_000_000)
                  + legacy_rows("muq", {"a": "out of memory"}, 1_700_000_000))
    log = FailureLog.in_data_dir(tmp_path)
    log.record("dsp", [("b", "newer error")])  # written since the upgrade: it wins
    store = VectorStore(milvus_uri, failure_log=log)
    try:
        assert store.failed_tracks("dsp") == {"a": "decode failed", "b": "newer error"}
        assert store.failed_tracks("muq") == {"a": "out of memory"}
        assert not milvus.exists(FAILURES_COLLECTION)
    finally:
        store.close()
    assert FailureLog.in_data_dir(tmp_path).count() == 3  # durable in the data dir


def test_a_store_without_the_old_collection_migrates_nothing(vector_store, milvus_uri, tmp_path: Path) -> None:
    store = VectorStore(milvus_uri, failure_log=FailureLog.in_data_dir(tmp_path))
    try:
        assert store.failed_tracks("dsp") == {}
        assert vector_store._milvus.exists(FAILURES_COLLECTION) is False
    finally:
        store.close()
