"""The definitions load in a real `dagster-webserver` started on the project's workspace."""

import httpx
import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.stack import Stack, free_port

QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        jobs { name }
        sensors { name }
        schedules { name cronSchedule }
        assetNodes { assetKey { path } groupName partitionKeys isPartitioned }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory, milvus_uri):
    from navembed_pipeline.sample_data.sample_library import write_sample_library

    root = tmp_path_factory.mktemp("webserver")
    library = write_sample_library(root / "library", seconds=2)
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, milvus_uri=milvus_uri,
                           models="dsp", dagster_port=free_port())
    with Stack(settings, api=False) as stack:
        yield stack.urls.dagster


def test_webserver_lists_assets_partitions_jobs_sensor_and_schedule(webserver) -> None:
    response = httpx.post(f"{webserver}/graphql", json={"query": QUERY}, timeout=60)
    response.raise_for_status()
    repo = response.json()["data"]["repositoriesOrError"]["nodes"][0]
    assets = {"/".join(a["assetKey"]["path"]): a for a in repo["assetNodes"]}
    assert set(assets) == {"library_tracks", "muq_embeddings", "mert_embeddings", "latent_embeddings",
                           "dsp_embeddings", "musicnn_embeddings"}
    for name in ("muq", "mert", "latent", "dsp", "musicnn"):
        node = assets[f"{name}_embeddings"]
        assert node["isPartitioned"] and len(node["partitionKeys"]) == 256
        assert node["partitionKeys"][0] == "00" and node["partitionKeys"][-1] == "ff"
        assert node["groupName"] == "embeddings"
    assert {"reembed_job", "retry_failed_tracks_job"} <= {j["name"] for j in repo["jobs"]}
    assert [s["name"] for s in repo["sensors"]] == ["library_change_sensor"]
    assert [(s["name"], s["cronSchedule"]) for s in repo["schedules"]] == [("nightly_reconcile_schedule", "0 3 * * *")]
