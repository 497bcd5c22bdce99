"""`make demo`'s entry point, in its quick form, so the demo cannot silently rot.

The demo starts the real stack (Milvus Lite, Dagster webserver + daemon, API) and drives it over
HTTP and the upload socket, so these tests cover the path a new user takes.
"""

import re

import pytest

from navembed_pipeline.cli import main
from navembed_pipeline.lib.store.server import running_uri
from navembed_pipeline.stack import free_port, port_in_use
from tests.lib.models.tiny_muq import build_tiny_muq


def run_demo(root, capsys) -> tuple[int, str, str]:
    ports = [free_port(), free_port()]
    code = main(["demo", "--dir", str(root), "--seconds", "8",
                 "--dagster-port", str(ports[0]), "--api-port", str(ports[1])])
    captured = capsys.readouterr()
    assert not any(port_in_use("127.0.0.1", port) for port in ports)  # the stack was stopped
    assert running_uri(root / "data" / "milvus") is None
    return code, captured.out, captured.err


def test_demo_embeds_through_the_api_and_prints_playlists(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NAVEMBED_MODELS_DIR", str(tmp_path / "no-weights"))
    code, out, err = run_demo(tmp_path / "demo", capsys)
    assert code == 0, out + err
    assert 'POST /batch/start {"models": ["dsp"], "force": true}' in out
    assert re.search(r"embedding 100%\|.*\| 12/12 tracks", err)  # the bar, fed by /batch/progress
    assert "dsp: embedded 11, skipped 0 (unchanged), failed 1" in out  # the deliberately corrupt file
    playlist = out.split("tracks that sound like 'Piano Trio - Morning Keys' (dsp)")[1].split("==>")[0]
    assert "1. " in playlist and "5. " in playlist and "Morning Keys" not in playlist
    assert "yes: duplicate of 'Piano Trio - Morning Keys'" in out
    assert "text tower" not in out  # no muq weights, no text search
    assert out.rstrip().endswith("==> demo finished")


def test_demo_with_muq_weights_also_searches_by_text(tmp_path, capsys, monkeypatch) -> None:
    """Tiny random-initialised MuQ-MuLan weights in the real layout: muq joins the run and text search runs."""
    monkeypatch.setenv("NAVEMBED_MODELS_DIR", str(build_tiny_muq(tmp_path / "models")))
    monkeypatch.setenv("NAVEMBED_MODELS_DEVICE", "cpu")
    code, out, err = run_demo(tmp_path / "demo", capsys)
    assert code == 0, out + err
    assert '"models": ["dsp", "muq"]' in out
    assert "muq: embedded 11, skipped 0 (unchanged), failed 1" in out
    text = out.split("POST /playlist/text")[1].split("==>")[0]
    assert len(re.findall(r"^\s+\d\. [+-]\d\.\d{3}  ", text, flags=re.M)) == 5


def test_demo_fails_loudly_when_the_stack_cannot_start(tmp_path, capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the API's TCP port: the Dagster webserver listens on a private Unix socket behind the API
        code = main(["demo", "--dir", str(tmp_path / "demo"), "--seconds", "1", "--api-port", str(port)])
    err = capsys.readouterr().err
    assert code == 1 and f"port {port} on 127.0.0.1 is already in use" in err


pytestmark = pytest.mark.timeout(600)
