"""The deep models run through the same assets: tiny random-initialised MuQ-MuLan and Music2Latent,
saved in the real checkpoint layout and loaded by the production loaders from NAVEMBED_MODELS_DIR.

(MERT is covered at the model level only: its loader deliberately refuses any checkpoint that is not
25 × 1024 — a tiny one included — so that wrong weights such as MERT-v1-95M fail loudly.)
"""

import numpy as np
import pytest

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from tests.lib.models.tiny_latent import tiny_architecture, write_tiny_checkpoint
from tests.lib.models.tiny_muq import build_tiny_muq
from tests.pipeline.helpers import bucket_materializations, embed, navembed_instance


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    build_tiny_muq(directory)
    write_tiny_checkpoint(directory)
    return directory


def test_tiny_deep_models_fill_their_collections(sample_library, vector_store, milvus_uri, models_dir) -> None:
    with navembed_instance() as instance, tiny_architecture():
        result = embed(sample_library, milvus_uri, instance, models=("muq", "latent"),
                       job_config={"models_dir": str(models_dir)})
    assert result.success
    readable = [t for t in NavidromeLibrary(sample_library.db_path).tracks() if "Damaged" not in t.path.name]
    ids = [t.id for t in readable]
    for model, field, dim in (("muq", "embedding", 1536), ("muq", "mulan", 512), ("latent", "embedding", 576)):
        per_bucket = bucket_materializations(result, model)
        assert sum(m["embedded"] for m in per_bucket.values()) == len(readable), model
        vectors = vector_store.get_vectors(model, ids, field)
        assert set(vectors) == set(ids)
        rows = np.concatenate(list(vectors.values()))
        assert rows.shape == (len(readable) - 1 + 3, dim)  # CUE album: 3 segments
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)


def test_collections_keep_the_original_names() -> None:
    from navembed_pipeline.lib.store import collection_name

    assert [collection_name(m) for m in ("muq", "mert", "latent", "dsp")] == [
        "embedding", "mert_embedding", "latent_embedding", "dsp_embedding"]
