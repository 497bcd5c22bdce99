"""The embedded stack behind `navembed up`: Milvus Lite, Dagster webserver + daemon, and the API.

Each part is a child process in its own session (a Ctrl-C is handled here, once, in order),
logging to ``<data_dir>/logs/<part>.log``, sharing one environment: ``DAGSTER_HOME`` under the
data dir and every setting exported as ``NAVEMBED_*`` so Dagster runs and the API see what this
process sees. ``Stack`` is a context manager: tests and `make demo` use it as is.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import AliasChoices, SecretStr

from navembed_pipeline.instance import prepare_dagster_home
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.milvus_server import MilvusLiteServer, running_uri
from navembed_pipeline.lib.settings import Settings

WORKSPACE = """load_from:
  - python_module:
      module_name: navembed_pipeline.definitions
"""
REQUIRED_JOB = "reembed_job"
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
POLL_S = 0.25
LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class StackUrls:
    """Where each part answers."""

    api: str | None
    dagster: str
    milvus: str
    socket: str | None
    logs: Path

    def lines(self) -> list[str]:
        return [f"Dagster UI   {self.dagster}", *([f"API          {self.api}  (docs: {self.api}/docs)"]
                                                 if self.api else []),
                *([f"Socket       {self.socket}"] if self.socket else []),
                f"Milvus       {self.milvus}", f"Logs         {self.logs}"]


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    log: Path


class Stack:
    """Starts the parts in order, health-checks each, stops them in reverse order."""

    def __init__(self, settings: Any, *, api: bool = True, start_timeout: float = START_TIMEOUT_S) -> None:
        self.settings = settings
        self.with_api = api
        self.start_timeout = start_timeout
        self.data_dir = Path(settings.data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self._milvus: MilvusLiteServer | None = None
        self._children: list[_Child] = []
        self.urls: StackUrls | None = None
        self.env: dict[str, str] = {}
        self._workspace: Path | None = None

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self, *, daemon: bool = True) -> StackUrls:
        """Start everything; on any failure stop what started and raise with the log's tail.

        ``daemon=False`` leaves the Dagster daemon for ``start_daemon()``: runs launched before it
        wait in the queue, and the change sensor's first tick then finds them (`navembed demo`).
        """
        try:
            urls = self._start()
            if daemon:
                self.start_daemon()
            return urls
        except BaseException:
            self.stop()
            raise

    def start_daemon(self) -> None:
        """Start the Dagster daemon (run queue, sensors, schedules), if it is not running yet."""
        if any(c.name == "dagster-daemon" for c in self._children):
            return
        try:
            self._spawn("dagster-daemon", [*_tool("dagster-daemon", "dagster._daemon"), "run", "-w",
                                           str(self._workspace)])
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackUrls:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        milvus_uri = self.settings.milvus_uri or self._start_milvus()
        home = prepare_dagster_home(self.settings.dagster_home)
        _create_storage(home)
        workspace = self._workspace = home / "workspace.yaml"
        workspace.write_text(WORKSPACE)
        self.env = {**os.environ, **settings_env(self.settings), "NAVEMBED_MILVUS_URI": milvus_uri,
                    "DAGSTER_HOME": str(home)}
        dagster_url = f"http://{self.settings.dagster_host}:{self.settings.dagster_port}"
        self._spawn("dagster-webserver", [*_tool("dagster-webserver", "dagster_webserver"), "-w", str(workspace),
                                          "-h", self.settings.dagster_host, "-p", str(self.settings.dagster_port)])
        self._wait_for("dagster-webserver", lambda: _dagster_ready(dagster_url))
        api_url = None
        if self.with_api:
            api_url = f"http://{self.settings.api_host}:{self.settings.api_port}"
            self._spawn("api", [sys.executable, "-m", "navembed_api"])
            self._wait_for("api", lambda: _http_ok(f"{api_url}/health"))
        socket_path = getattr(self.settings, "socket_path", None)
        self.urls = StackUrls(api=api_url, dagster=dagster_url, milvus=milvus_uri,
                              socket=str(socket_path) if self.with_api and socket_path else None, logs=self.log_dir)
        return self.urls

    def stop(self) -> None:
        """Stop the children (newest first: API, daemon, webserver), then Milvus."""
        for child in reversed(self._children):
            _stop_group(child.process, STOP_GRACE_S)
        self._children.clear()
        if self._milvus is not None:
            self._milvus.stop()
            self._milvus = None

    def exited(self) -> str | None:
        """The name of a part that has exited on its own, if any."""
        return next((c.name for c in self._children if c.process.poll() is not None), None)

    def wait(self, *, poll: float = 1.0) -> str:
        """Block until a part exits on its own; return its name (Ctrl-C raises KeyboardInterrupt)."""
        while (name := self.exited()) is None:
            time.sleep(poll)
        return name

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- helpers -----------------------------------------------------------------------------
    def _check_ports(self) -> None:
        wanted = [("Dagster webserver", self.settings.dagster_host, self.settings.dagster_port)]
        if self.with_api:
            wanted.append(("API", self.settings.api_host, self.settings.api_port))
        for what, host, port in wanted:
            if port_in_use(host, port):
                raise NavembedError(f"port {port} on {host} is already in use, so the {what} cannot start "
                                    "there; stop whatever holds it or choose another port "
                                    "(NAVEMBED_DAGSTER_PORT / NAVEMBED_API_PORT)")

    def _start_milvus(self) -> str:
        data_dir = self.settings.milvus_data_dir.resolve()
        existing = running_uri(data_dir)
        if existing:  # e.g. started by an earlier CLI command: share it, leave it running
            return existing
        self._milvus = MilvusLiteServer(data_dir)
        return self._milvus.start()

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       env=self.env, cwd=self.data_dir, start_new_session=True)
        self._children.append(_Child(name, process, log))

    def _wait_for(self, name: str, ready: Callable[[], bool]) -> None:
        child = next(c for c in self._children if c.name == name)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for other in self._children:
                if other.process.poll() is not None:
                    raise NavembedError(f"{other.name} exited with code {other.process.returncode} while "
                                        f"starting; {other.log} ends with:\n{_tail(other.log)}")
            if ready():
                return
            time.sleep(POLL_S)
        raise NavembedError(f"{name} did not become ready within {self.start_timeout:.0f} s; "
                            f"{child.log} ends with:\n{_tail(child.log)}")


def _create_storage(home: Path) -> None:
    """Create the instance's storage now: the webserver and daemon would race to migrate a new one."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the environment variable it is read from (first alias, else NAVEMBED_<NAME>)."""
    env: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None and field.default is None:
            continue
        alias = field.validation_alias
        key = alias.choices[0] if isinstance(alias, AliasChoices) else (alias or f"NAVEMBED_{name.upper()}")
        env[str(key)] = "" if value is None else _env_value(value)  # "" = switched off (e.g. socket_path)
    return env


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value.expanduser().resolve())
    return str(value)


def _tool(script: str, module: str) -> list[str]:
    """The console script beside this interpreter, else ``python -m module``."""
    beside = Path(sys.executable).parent / script
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", module]


def _dagster_ready(url: str) -> bool:
    """The webserver answers and has loaded navembed's code location."""
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"
    try:
        body = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    nodes = (body.get("data") or {}).get("repositoriesOrError", {}).get("nodes") or []
    return any(job["name"] == REQUIRED_JOB for node in nodes for job in node["jobs"])


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _stop_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group (its own session), SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip() or "(empty)"
    except OSError as exc:
        return f"(unreadable: {exc})"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for tests and side-by-side stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0

