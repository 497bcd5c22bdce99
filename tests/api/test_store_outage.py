"""While Milvus is down, the API serves what it can from its in-process copy and says what it cannot."""

import os
import signal
import time
from pathlib import Path

from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.lib.store.server import MilvusLiteServer
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from tests.api.app_fixtures import ADMIN, api_settings, running_app
from tests.pipeline.helpers import embed, navembed_instance


def _exited(server: MilvusLiteServer, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.exit_code() is not None:  # reaps it: a killed child is a zombie until then
            return True
        time.sleep(0.05)
    return False


def test_playlists_keep_coming_from_the_copy_while_milvus_is_down(sample_library: SampleLibrary,
                                                                  tmp_path: Path) -> None:
    server = MilvusLiteServer(tmp_path / "milvus")
    uri = server.start()
    try:
        with navembed_instance() as instance:
            embed(sample_library, uri, instance)
        settings = api_settings(tmp_path, milvus_uri=uri, navidrome_db=sample_library.db_path)
        ids = {t.title: t.id for t in NavidromeLibrary(sample_library.db_path).tracks()}
        body = {"seeds": [ids["Morning Keys"]], "models": ["dsp"], "size": 5}
        with running_app(settings) as client:
            before = client.post("/playlist/similar", json=body)
            assert before.status_code == 200, before.text
            huge = "x" * 50_000  # an unknown id: the 404 quotes a short prefix, not 50 kB
            for unknown in (client.get(f"/similar/{huge}"), client.post("/playlist/similar", json={"seeds": [huge]})):
                assert unknown.status_code == 404 and len(unknown.text) < 700, unknown.text[:300]
            assert "404" in client.app.openapi()["paths"]["/similar/{track_id}"]["get"]["responses"]

            os.kill(server.pid, signal.SIGKILL)
            assert _exited(server)

            during = client.post("/playlist/similar", json=body)
            assert during.status_code == 200, during.text
            assert [t["id"] for t in during.json()["tracks"]] == [t["id"] for t in before.json()["tracks"]]
            assert client.get(f"/similar/{ids['Breakbeat']}", params={"size": 3}).status_code == 200
            health = client.get("/health").json()
            assert health["status"] == "degraded" and not health["store"]["ok"]
            refused = client.post("/batch/start", json={"models": ["dsp"]}, headers=ADMIN)
            assert refused.status_code == 503 and "vector store" in refused.json()["message"]
    finally:
        server.stop()
