"""`navembed up` / `navembed milvus serve` and the stack behind them: settings travel, ports, clean stops."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.cli import build_parser
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.store.server import running_uri
from navembed_pipeline.stack import Stack, free_port, port_in_use, settings_env


def test_every_setting_reaches_the_child_processes_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = ApiSettings(data_dir=tmp_path / "data", navidrome_db=tmp_path / "n.db", music_root=tmp_path,
                           api_port=9100, admin_token="tok", models="dsp,muq", nice=True, socket_path=None,
                           models_dir=tmp_path / "models", dagster_url="http://h:1")
    for key in [k for k in os.environ if k.startswith(("NAVEMBED_", "NAVIDROME_"))]:
        monkeypatch.delenv(key)
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert ApiSettings().model_dump() == original.model_dump()


def test_the_original_port_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAVEMBED_API_PORT", raising=False)
    monkeypatch.setenv("NAVIDROME_RECOMMENDER_PORT", "9555")
    settings = ApiSettings()
    assert settings.api_port == 9555 and settings.api_host == "127.0.0.1"


def test_a_busy_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        for stack in (Stack(ApiSettings(data_dir=tmp_path, api_port=busy)),  # the API's port
                      Stack(ApiSettings(data_dir=tmp_path, dagster_port=busy), api=False)):  # a UI on TCP
            with pytest.raises(NavembedError, match=f"port {busy} .* already in use"):
                stack.start()
    assert not (tmp_path / "milvus").exists()  # nothing was started


def test_the_commands_exist_with_help() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse's tree
    for name in ("up", "api", "milvus"):
        assert commands[name].format_help().strip()


def _read_until(process: subprocess.Popen, marker: str, timeout: float) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not printed within {timeout} s: {''.join(lines)}")


def test_milvus_serve_runs_until_terminated(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "navembed_pipeline.cli", "milvus", "serve", "--data-dir",
                                str(tmp_path), "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        _read_until(process, f"http://127.0.0.1:{port}", 60)
        assert running_uri(tmp_path / "milvus") == f"http://127.0.0.1:{port}"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
    assert running_uri(tmp_path / "milvus") is None and not port_in_use("127.0.0.1", port)


@pytest.mark.slow
def test_navembed_up_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    api_port, dagster_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("NAVEMBED_", "NAVIDROME_"))},
           "NAVEMBED_MODELS": "dsp", "NAVEMBED_ADMIN_TOKEN": "tok", "NAVEMBED_SOCKET_PATH": str(tmp_path / "s.sock")}
    process = subprocess.Popen([sys.executable, "-m", "navembed_pipeline.cli", "up", "--data-dir", str(tmp_path),
                                "--port", str(api_port), "--dagster-port", str(dagster_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        printed = "".join(_read_until(process, "Ctrl-C stops everything", 180))
        assert f"http://127.0.0.1:{api_port}/docs" in printed and f"http://127.0.0.1:{api_port}/dagster" in printed
        assert not port_in_use("127.0.0.1", dagster_port)  # the webserver hides behind the API, on a socket
        health = httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=10).json()
        assert health["dagster"]["ok"] and health["store"]["ok"] and health["socket"]["listening"]
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        process.kill()
    assert not port_in_use("127.0.0.1", api_port) and not port_in_use("127.0.0.1", dagster_port)
    assert running_uri(tmp_path / "milvus") is None and not (tmp_path / "s.sock").exists()
