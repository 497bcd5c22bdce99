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
    for_you = out.split("GET /playlist/for-you?user=alice")[1].split("==>")[0]
    assert "1. " in for_you and "leaving out 1 recent play" in for_you  # alice played Morning Keys yesterday
    assert "3 of 4 users have listening history" in out
    assert "navembed-for-you-alice.m3u8: For you · alice" in out and "ND_PLAYLISTSPATH=navembed" in out
    assert (tmp_path / "demo" / "library" / "music" / "navembed" / "navembed-for-you-bob.m3u8").is_file()
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


def test_demo_embeds_with_musicnn_by_default_once_its_weights_are_installed(tmp_path, capsys, monkeypatch,
                                                                            musicnn_models_dir) -> None:
    """With MusiCNN's weights where ``make setup`` puts them, the default model set (NAVEMBED_MODELS=auto)
    is dsp + musicnn: the job started through /batch/start embeds the demo library with both (one step,
    one decode per file), and the demo prints the tags MusiCNN stored."""
    from navembed_pipeline.lib.models.musicnn.tags import MSD_TAGS

    monkeypatch.setenv("NAVEMBED_MODELS_DIR", str(musicnn_models_dir))
    monkeypatch.setenv("NAVEMBED_MODELS_DEVICE", "cpu")
    code, out, err = run_demo(tmp_path / "demo", capsys)
    assert code == 0, out + err
    assert 'POST /batch/start {"models": ["dsp", "musicnn"], "force": true}' in out
    assert "    dsp: embedded 11, skipped 0 (unchanged), failed 1" in out
    assert "musicnn: embedded 11, skipped 0 (unchanged), failed 1" in out
    tagged = re.findall(r"^    (.+?): (.+)$", out.split("==> MusiCNN tags (MSD_musicnn")[1].split("==>")[0], flags=re.M)
    assert len(tagged) == 4 and tagged[0][0] == "Piano Trio - Morning Keys"  # the seed first
    for _, tags in tagged:
        pairs = [tag.rsplit(" ", 1) for tag in tags.split(", ")]
        scores = [float(score) for _, score in pairs]
        assert len(pairs) == 3 and all(name in MSD_TAGS for name, _ in pairs)
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    sounds = re.findall(r"navembed-sound-\d+\.m3u8: Sound of (.+?) \(\d+ tracks?\)", out)  # named by the tags
    assert sounds and all(tag in MSD_TAGS for sound in sounds for tag in sound.split(" · ")), sounds


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
