"""``/health`` is degraded, with the reason, when more than one Dagster daemon serves the instance
(each would launch every queued run and sensor tick): real processes looked up in /proc."""

import os
import subprocess
import sys
import time
from pathlib import Path

from navembed_pipeline.lib.pids import cmdline
from tests.api.app_fixtures import api_settings, running_app
from tests.lib.store.milvus_fixture import milvus_server, milvus_uri  # noqa: F401 - fixtures


def _fake_daemon(folder: Path, dagster_home: Path) -> subprocess.Popen:
    """A process that looks like `dagster-daemon run` of ``dagster_home`` from outside (argv and environment)."""
    script = folder / "dagster-daemon"
    script.write_text("import time\ntime.sleep(120)\n")
    process = subprocess.Popen([sys.executable, str(script), "run", "-w", "workspace.yaml"],
                               env={**os.environ, "DAGSTER_HOME": str(dagster_home.resolve())})
    deadline = time.monotonic() + 10
    while "run" not in cmdline(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def test_a_second_daemon_of_the_instance_makes_health_degraded(tmp_path: Path, milvus_uri: str) -> None:
    settings = api_settings(tmp_path, milvus_uri=milvus_uri)
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    daemons = [_fake_daemon(tmp_path, home), _fake_daemon(tmp_path, home),
               _fake_daemon(tmp_path, tmp_path / "elsewhere")]  # another instance's daemon does not count
    try:
        with running_app(settings) as client:
            two = client.get("/health").json()
            daemons[1].kill()
            daemons[1].wait()
            one = client.get("/health").json()
    finally:
        for daemon in daemons:
            daemon.kill()
            daemon.wait()
    assert two["status"] == "degraded" and not two["daemons"]["ok"]
    assert two["daemons"]["pids"] == sorted([daemons[0].pid, daemons[1].pid])
    assert any(reason.startswith("daemons: 2 Dagster daemons serve") for reason in two["reasons"]), two["reasons"]
    assert one["daemons"] == {"ok": True, "pids": [daemons[0].pid]}
    assert not any(reason.startswith("daemons:") for reason in one["reasons"])
