"""The scale-out path is the same code with other URLs: Postgres instance config, Milvus by URI."""

import shutil
from pathlib import Path

import pytest
from dagster._core.instance.ref import InstanceRef

from navembed_pipeline.definitions import resources_for
from navembed_pipeline.lib.errors import ConfigError, StoreError
from navembed_pipeline.lib.models.mert import MILVUS_STANDALONE_MAX_DIM, check_backend_dimension
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.store import VectorStore

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_postgres_instance_config_is_valid_dagster_config(tmp_path, monkeypatch) -> None:
    shutil.copy(DEPLOY / "dagster-postgres.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://dagster:secret@127.0.0.1:5432/dagster")
    ref = InstanceRef.from_dir(str(tmp_path))
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    assert_dagsters_queue(ref)


def test_embedded_instance_config_is_valid_dagster_config(tmp_path) -> None:
    from navembed_pipeline.instance import prepare_dagster_home

    ref = InstanceRef.from_dir(str(prepare_dagster_home(tmp_path / "home")))
    assert_dagsters_queue(ref)


def assert_dagsters_queue(ref: InstanceRef) -> None:
    """The run coordinator is Dagster's run queue (navembed's looks at it twice a second), built from its config."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    coordinator = ref.run_coordinator_data.rehydrate(QueuedRunCoordinator)
    assert isinstance(coordinator, QueuedRunCoordinator) and coordinator.dequeue_interval_seconds == 0.5


def test_milvus_uri_points_every_component_at_an_external_server(monkeypatch) -> None:
    monkeypatch.setenv("NAVIDROME_MILVUS_URI", "http://milvus.lan:19530")
    resource = resources_for(Settings())["vector_store"]
    assert resource.uri == "http://milvus.lan:19530"


def test_unreachable_external_milvus_is_a_clear_store_error() -> None:
    store = VectorStore("http://127.0.0.1:9", connect_timeout=2)
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        store.count("dsp")


def test_full_mert_vector_is_refused_on_milvus_standalone() -> None:
    with pytest.raises(ConfigError, match="mert_layers"):
        check_backend_dimension(76_800, MILVUS_STANDALONE_MAX_DIM)
    check_backend_dimension(3_072, MILVUS_STANDALONE_MAX_DIM)
