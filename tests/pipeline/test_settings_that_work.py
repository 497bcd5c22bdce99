"""Settings reach the code they name: MERT's layer choice, and the 32,768-d cap of Milvus standalone."""

import pytest

from navembed_pipeline.definitions import resources_for
from navembed_pipeline.lib.errors import ConfigError
from navembed_pipeline.lib.models.mert import MILVUS_STANDALONE_MAX_DIM
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.store import VectorStore
from navembed_pipeline.lib.store.schema import STANDALONE_MAX_DIM


@pytest.mark.parametrize(("layers", "dimension"), [("mean", 3_072), ("6,12", 3_072), ("all", 76_800)])
def test_the_mert_layers_setting_reaches_the_model_the_runs_use(layers: str, dimension: int) -> None:
    models = resources_for(Settings(mert_layers=layers))["models"]
    model = models.get("mert")
    try:
        assert model.vector_fields == {"embedding": dimension}
    finally:
        models.teardown_after_execution(None)


def test_an_unknown_layer_choice_is_refused_when_the_settings_load() -> None:
    with pytest.raises(ValueError, match="mert_layers"):
        Settings(mert_layers="every other one")


def test_a_configured_milvus_uri_is_capped_like_milvus_standalone(milvus_uri: str, tmp_path) -> None:
    assert STANDALONE_MAX_DIM == MILVUS_STANDALONE_MAX_DIM
    store = resources_for(Settings(milvus_uri=milvus_uri, data_dir=tmp_path))["vector_store"].client()
    try:
        assert store.max_dimension == STANDALONE_MAX_DIM
    finally:
        store.close()


def test_a_vector_longer_than_the_cap_is_refused_before_anything_is_created(vector_store, milvus_uri) -> None:
    capped = VectorStore(milvus_uri, max_dimension=STANDALONE_MAX_DIM)
    try:
        with pytest.raises(ConfigError, match="NAVEMBED_MERT_LAYERS"):
            capped.ensure_collection("mert", {"embedding": 76_800})
        with pytest.raises(ConfigError, match="76,800-d"):
            capped.begin_rebuild("mert", {"embedding": 76_800})
        assert capped.count("mert") == 0 and not capped.pending_rebuilds("mert")
        capped.ensure_collection("mert", {"embedding": 3_072})  # what fits is created as before
    finally:
        capped.close()
