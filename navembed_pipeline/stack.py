"""The embedded stack behind `navembed up`: Milvus Lite, Dagster webserver + daemon, and the API.

Each part is a child process in its own session (a Ctrl-C is handled here, once, in order),
logging to ``<data_dir>/logs/<part>.log``, sharing one environment: ``DAGSTER_HOME`` under the
data dir and every setting exported as ``NAVEMBED_*`` so Dagster runs and the API see what this
process sees. ``Stack`` is a context manager: tests and `make demo` use it as is.

Side doors are closed by default: Milvus Lite listens on an owner-only unix socket, and with the
API the Dagster webserver listens on a unix socket in an owner-only directory (``<data_dir>/run``)
while the API serves its UI and GraphQL at ``/dagster`` behind the admin token. ``wait()``
supervises every part (``supervisor.py``): what dies is restarted with backoff.
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

from navembed_pipeline.instance import environment, instance_env, prepare_dagster_home
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.milvus_server import MilvusLiteServer, private_socket, running_uri
from navembed_pipeline.lib.runs import REEMBED_JOB
from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.stack_status import clear_status
from navembed_pipeline.supervisor import Part, Supervisor

WORKSPACE = """load_from:
  - python_module:
      module_name: navembed_pipeline.definitions
"""
REQUIRED_JOB = REEMBED_JOB
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
POLL_S = 0.25
LOG_TAIL_CHARS = 3000
DAGSTER_PREFIX = "/dagster"  # where the API serves the Dagster UI (and the webserver's path prefix)
DAGSTER_SOCKET_URL = "http://dagster" + DAGSTER_PREFIX  # base URL of the webserver over its unix socket


@dataclass(frozen=True)
class StackUrls:
    """Where each part answers."""

    api: str | None
    dagster: str  # the UI as a browser reaches it (through the API when the webserver is on a socket)
    milvus: str
    socket: str | None
    logs: Path
    dagster_socket: str | None = None  # the webserver's private unix socket, if it listens on one

    def lines(self) -> list[str]:
        guard = "  (admin token; browsers sign in at /login)" if self.dagster_socket else \
            "  (no authentication: reachable by every local account)"
        return [f"Dagster UI   {self.dagster}{guard}", *([f"API          {self.api}  (docs: {self.api}/docs)"]
                                                 if self.api else []),
                *([f"Socket       {self.socket}"] if self.socket else []),
                f"Milvus       {self.milvus}", f"Logs         {self.logs}"]


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    log: Path
    command: list[str]


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
        self.dagster_socket: Path | None = None
        self._milvus_host = settings.milvus_listen
        self._milvus_port: int | None = None
        self.supervisor = Supervisor(self.data_dir, log=self._log, graphql=self.graphql,
                                     on_store_back=self._load_collections)

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
            self._supervise_children()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> StackUrls:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        clear_status(self.data_dir)
        self.supervisor.stopped = False
        # The webserver hides behind the API (on a private socket) unless there is no API to guard it.
        if self.with_api and not getattr(self.settings, "dagster_url", ""):
            self.dagster_socket = _private_socket_path(self.data_dir / "run", "dagster.sock")
        self._check_ports()
        milvus_uri = self.settings.milvus_uri or self._start_milvus()
        postgres_url = self.settings.postgres_url
        home = prepare_dagster_home(self.settings.dagster_home, postgres=bool(postgres_url))
        with environment(instance_env(home, postgres_url)):
            _create_storage(home)
        workspace = self._workspace = home / "workspace.yaml"
        workspace.write_text(WORKSPACE)
        self.env = {**os.environ, **settings_env(self.settings), "NAVEMBED_MILVUS_URI": milvus_uri,
                    **instance_env(home, postgres_url)}
        api_url = f"http://{self.settings.api_host}:{self.settings.api_port}" if self.with_api else None
        if self.dagster_socket is not None:
            self.env["NAVEMBED_DAGSTER_SOCKET"] = str(self.dagster_socket)
            self.dagster_socket.unlink(missing_ok=True)
            self._spawn("dagster-webserver", [sys.executable, "-m", "navembed_pipeline.dagster_serve", "--uds",
                                              str(self.dagster_socket), "-w", str(workspace), "-l", DAGSTER_PREFIX])
            dagster_url = f"{api_url}{DAGSTER_PREFIX}"
        else:
            dagster_url = f"http://{self.settings.dagster_host}:{self.settings.dagster_port}"
            self._spawn("dagster-webserver", [*_tool("dagster-webserver", "dagster_webserver"), "-w",
                                              str(workspace), "-h", self.settings.dagster_host, "-p",
                                              str(self.settings.dagster_port)])
        self._wait_for("dagster-webserver", self._dagster_ready)
        if self.with_api:
            self._spawn("api", [sys.executable, "-m", "navembed_api"])
            self._wait_for("api", lambda: _http_ok(f"{api_url}/health"))
        socket_path = getattr(self.settings, "socket_path", None)
        self.urls = StackUrls(api=api_url, dagster=dagster_url, milvus=milvus_uri,
                              socket=str(socket_path) if self.with_api and socket_path else None, logs=self.log_dir,
                              dagster_socket=str(self.dagster_socket) if self.dagster_socket else None)
        self._supervise_children()
        return self.urls

    def stop(self) -> None:
        """Stop the children (newest first: API, daemon, webserver), then Milvus."""
        self.supervisor.stopped = True
        for child in reversed(self._children):
            _stop_group(child.process, STOP_GRACE_S)
        self._children.clear()
        if self._milvus is not None:
            self._milvus.stop()
            self._milvus = None
        self.supervisor.parts.clear()
        clear_status(self.data_dir)

    def exited(self) -> str | None:
        """Supervise once: restart what died (with backoff); the name of a part given up on, if any."""
        return self.supervisor.check()

    def wait(self, *, poll: float = 1.0) -> str:
        """Supervise until a part is given up on; return its name (Ctrl-C raises KeyboardInterrupt).

        Returns "" when the stack is stopped meanwhile (from another thread).
        """
        while (name := self.exited()) is None:
            if self.supervisor.stopped:
                return ""
            time.sleep(poll)
        return name

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """One GraphQL call to the webserver (over its private socket when it has one); its ``data``."""
        with self._dagster_http() as http:
            body = http.post("/graphql", json={"query": query, "variables": variables}, timeout=30).json()
        if body.get("errors"):
            raise NavembedError(f"Dagster GraphQL error: {body['errors'][0].get('message')}")
        return body.get("data") or {}

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- helpers -----------------------------------------------------------------------------
    def _check_ports(self) -> None:
        wanted = [] if self.dagster_socket else [("Dagster webserver", self.settings.dagster_host,
                                                  self.settings.dagster_port)]
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
        self._milvus = MilvusLiteServer(data_dir, host=self._milvus_host)
        uri = self._milvus.start()
        if uri.startswith("http://"):
            self._milvus_port = int(uri.rsplit(":", 1)[1])  # a restart must come back at the same URI
        self.supervisor.add(Part("milvus", exit_code=lambda: self._milvus.exit_code() if self._milvus else None,
                                 restart=self._restart_milvus))
        return uri

    def _restart_milvus(self) -> None:
        if self._milvus is not None:
            self._milvus.stop(grace=1.0)
        self._milvus = MilvusLiteServer(self.settings.milvus_data_dir.resolve(), host=self._milvus_host,
                                        port=self._milvus_port)
        self._milvus.start()

    def _load_collections(self) -> None:
        """Load every collection again (Milvus Lite brings them back released after a restart)."""
        from pymilvus import MilvusClient

        if self._milvus is None:
            return
        client = MilvusClient(uri=self._milvus.uri, dedicated=True)
        try:
            for name in client.list_collections():
                client.load_collection(name)
        except Exception as exc:  # the store loads a released collection on first use anyway
            self._log(f"loading the collections after the restart failed: {exc}")
        finally:
            client.close()

    def _supervise_children(self) -> None:
        for child in self._children:
            if child.name not in self.supervisor.parts:
                self.supervisor.add(Part(child.name, exit_code=child.process.poll,
                                         restart=lambda c=child: self._respawn(c)))

    def _respawn(self, child: _Child) -> None:
        self._children.remove(child)
        self._spawn(child.name, child.command)
        fresh = self._children[-1]
        self.supervisor.parts[child.name].exit_code = fresh.process.poll
        self.supervisor.parts[child.name].restart = lambda: self._respawn(fresh)

    def _dagster_ready(self) -> bool:
        """The webserver answers and has loaded navembed's code location."""
        query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"
        try:
            data = self.graphql(query, {})
        except (httpx.HTTPError, ValueError, NavembedError):
            return False
        nodes = data.get("repositoriesOrError", {}).get("nodes") or []
        return any(job["name"] == REQUIRED_JOB for node in nodes for job in node["jobs"])

    def _dagster_http(self) -> httpx.Client:
        if self.dagster_socket is not None:
            return httpx.Client(base_url=DAGSTER_SOCKET_URL, transport=httpx.HTTPTransport(uds=str(self.dagster_socket)))
        return httpx.Client(base_url=f"http://{self.settings.dagster_host}:{self.settings.dagster_port}")

    def _log(self, message: str) -> None:
        """A supervision event: to stderr and ``logs/supervisor.log``."""
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} navembed: {message}"
        print(line, file=sys.stderr, flush=True)
        with (self.log_dir / "supervisor.log").open("a") as out:
            out.write(line + "\n")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       env=self.env, cwd=self.data_dir, start_new_session=True)
        self._children.append(_Child(name, process, log, command))

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


def _private_socket_path(folder: Path, name: str) -> Path:
    """``folder/name`` in an owner-only folder (or, if too long for a socket path, a private temp dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return Path(private_socket(folder, name).removeprefix("unix:"))


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

