"""The musicnn asset's tag distribution as Dagster metadata, read from a real Milvus Lite store."""

import dagster as dg
import numpy as np
import pytest

from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.models.musicnn import tag_names
from navembed_pipeline.lib.store import VectorRow, VectorStore
from navembed_pipeline.tag_metadata import bucket_tag_metadata, library_tag_observation
from tests.lib.store.milvus_fixture import drop_everything

NAMES = tag_names("MSD_musicnn")


def scores(**wanted: float) -> np.ndarray:
    vector = np.linspace(0.05, 0.01, len(NAMES)).astype(np.float32)
    for name, value in wanted.items():
        vector[NAMES.index(name)] = value
    return vector


TRACKS = {"t-rock": scores(rock=0.9, pop=0.6, indie=0.5), "t-metal": scores(metal=0.9, rock=0.7, punk=0.4),
          "t-jazz": scores(jazz=0.8, soul=0.5, blues=0.45)}


@pytest.fixture
def store(milvus_uri):
    drop_everything(milvus_uri)
    store = VectorStore(milvus_uri)
    store.ensure_collection("musicnn", {"embedding": 4, "tags": len(NAMES)})
    store.upsert("musicnn", [VectorRow(track_id=t, segment=1, name=t, offset_seconds=0.0, duration_seconds=1.0,
                                       model_id="musicnn", model_version="v", fingerprint="f", bucket=bucket_of(t),
                                       vectors={"embedding": np.ones(4, np.float32), "tags": tags})
                             for t, tags in TRACKS.items()])
    yield store
    store.close()
    drop_everything(milvus_uri)


def test_each_bucket_says_which_tags_its_tracks_carry(store):
    bucket = bucket_of("t-metal")
    empty = next(b for b in ("00", "01", "02", "03") if b not in {bucket_of(t) for t in TRACKS})
    found = bucket_tag_metadata(store, "musicnn", NAMES, [bucket, empty])
    assert found[empty] == {}
    assert found[bucket]["top_tag"] in {"metal", "rock", "punk"}
    assert "| metal | 1 |" in found[bucket]["tag_distribution"].value


def test_the_library_observation_counts_every_tracks_top_three(store):
    observation = library_tag_observation(dg.AssetKey("musicnn_embeddings"), store, "musicnn", NAMES)
    metadata = {k: v.value for k, v in observation.metadata.items()}
    assert metadata["tagged_tracks"] == 3
    assert metadata["tag_counts"] == {"rock": 2, "blues": 1, "indie": 1, "jazz": 1, "metal": 1, "pop": 1,
                                      "punk": 1, "soul": 1}
    assert metadata["library_top_tags"].startswith("rock 2, ")
    assert "| rock | 2 | 67% |" in metadata["library_tag_distribution"]
