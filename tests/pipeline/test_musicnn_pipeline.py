"""MusiCNN runs through the same embedding asset as every model: real weights converted from the real
wheel (skipped, saying why, only where no package index can be reached), both vectors stored."""

import numpy as np

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.models.musicnn import tag_names
from tests.lib.models.musicnn_fixtures import musicnn_models_dir, musicnn_wheel  # noqa: F401 - fixtures
from tests.pipeline.helpers import bucket_materializations, embed, navembed_instance


def test_musicnn_fills_its_collection_with_vectors_and_tags(sample_library, vector_store, milvus_uri,
                                                            musicnn_models_dir) -> None:
    with navembed_instance() as instance:
        result = embed(sample_library, milvus_uri, instance, models=("musicnn",),
                       job_config={"models_dir": str(musicnn_models_dir)})
    assert result.success
    readable = [t for t in NavidromeLibrary(sample_library.db_path).tracks() if "Damaged" not in t.path.name]
    ids = [t.id for t in readable]
    assert sum(m["embedded"] for m in bucket_materializations(result, "musicnn").values()) == len(readable)
    embeddings = np.concatenate(list(vector_store.get_vectors("musicnn", ids, "embedding").values()))
    tags = np.concatenate(list(vector_store.get_vectors("musicnn", ids, "tags").values()))
    assert embeddings.shape == (len(readable) - 1 + 3, 753)  # CUE album: 3 segments
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    assert tags.shape == (len(embeddings), len(tag_names())) and ((tags >= 0) & (tags <= 1)).all()
