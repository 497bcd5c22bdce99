"""The change sensor judges stored vectors with the model options the runs use (regression: weights in
``NAVEMBED_MODELS_DIR`` made every muq row look stale, so every tick launched a no-op full run)."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.library.segments import track_fingerprint
from navembed_pipeline.lib.models import create_model
from navembed_pipeline.lib.models.options import ModelOptions
from navembed_pipeline.lib.runs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from navembed_pipeline.lib.store import VectorRow
from navembed_pipeline.sample_data.navidrome_fixture import touch_track
from navembed_pipeline.sensors import build_library_change_sensor
from tests.lib.models.tiny_muq import build_tiny_muq
from tests.pipeline.helpers import navembed_instance, pipeline_resources


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_muq(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def no_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ``models_dir`` holds weights: a real Hugging Face cache on this machine must not help."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


def store_current_rows(store, library, options: ModelOptions) -> str:
    """Rows for every track as a muq run with ``options`` writes them (version, fingerprint); the version."""
    model = create_model("muq", options)
    try:
        version, fields = model.version, model.vector_fields
    finally:
        model.shutdown()
    store.ensure_collection("muq", fields)
    rng = np.random.default_rng(0)
    rows = []
    for track in NavidromeLibrary(library.db_path).tracks():
        vectors = {name: (v := rng.normal(size=dim).astype(np.float32)) / np.linalg.norm(v)
                   for name, dim in fields.items()}
        rows.append(VectorRow(track_id=track.id, segment=0, name=track.title, offset_seconds=0.0,
                              duration_seconds=track.duration_seconds, model_id="muq", model_version=version,
                              fingerprint=track_fingerprint(track), bucket=bucket_of(track.id), vectors=vectors))
    store.upsert("muq", rows)
    return version


def evaluate(library, uri: str, models_dir: Path) -> dg.SensorResult:
    sensor = build_library_change_sensor(["muq"], interval_seconds=60)
    resources = pipeline_resources(library, uri, models_dir=str(models_dir))
    with navembed_instance() as instance, \
            dg.build_sensor_context(instance=instance, resources=resources) as context:
        return sensor(context)


def test_vectors_of_weights_in_the_models_dir_are_current(sample_library, vector_store, milvus_uri,
                                                          models_dir: Path) -> None:
    version = store_current_rows(vector_store, sample_library, ModelOptions(device="cpu", models_dir=models_dir))
    assert "no-weights" not in version
    result = evaluate(sample_library, milvus_uri, models_dir)
    assert result.run_requests == [] and result.skip_reason.skip_message == "library and vectors agree"


def test_a_changed_track_is_still_dirty_with_the_models_dir_configured(sample_library, vector_store, milvus_uri,
                                                                      models_dir: Path) -> None:
    store_current_rows(vector_store, sample_library, ModelOptions(device="cpu", models_dir=models_dir))
    track = next(iter(NavidromeLibrary(sample_library.db_path).tracks()))
    touch_track(sample_library.db_path, track.id, updated_at=datetime(2026, 6, 1, tzinfo=UTC))
    result = evaluate(sample_library, milvus_uri, models_dir)
    assert [(r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG]) for r in result.run_requests] == \
        [(bucket_of(track.id), bucket_of(track.id))]
