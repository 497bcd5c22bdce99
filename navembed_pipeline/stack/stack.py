"""The embedded stack behind `navembed up`: Milvus Lite, Dagster webserver + daemon, and the API.

Each part is a child process in its own session (a Ctrl-C is handled here, once, in order),
logging to ``<data_dir>/logs/<part>.log``, sharing one environment: ``DAGSTER_HOME`` under the
data dir and every setting exported as ``NAVEMBED_*`` so Dagster runs and the API see what this
process sees. ``Stack`` is a context manager: tests and `make demo` use it as is.

Side doors are closed by default: Milvus Lite listens on an owner-only unix socket, and with the
API the Dagster webserver listens on a unix socket in an owner-only directory (``<data_dir>/run``)
while the API serves its UI and GraphQL at ``/dagster`` behind the admin token. ``wait()``
supervises every part (``supervisor.py``): what dies is restarted with backoff.

Nothing outlives the stack: one instance per data dir (``leftovers.py``: a lock, a pid file, a token
in every part's environment), each part tied to this process (``tether.py``: killed when it dies),
and a guard (``guard.py``) that kills everything carrying the token the moment this process dies,
however it dies. A start after a crash ends what the crash left and re-launches the runs it broke.
"""

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from navembed_pipeline.instance import environment, instance_env, prepare_dagster_home
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.runs import REEMBED_JOB
from navembed_pipeline.lib.stack_status import clear_status
from navembed_pipeline.lib.store import MilvusLiteServer, running_uri
from navembed_pipeline.stack.environment import WORKSPACE, create_storage, private_socket_path, settings_env
from navembed_pipeline.stack.guard import Guard
from navembed_pipeline.stack.holders import describe_holders, port_holders, socket_holders
from navembed_pipeline.stack.leftovers import StackInstance
from navembed_pipeline.stack.processes import Child, http_ok, port_in_use, spawn, stop_group, tool, wait_until_ready
from navembed_pipeline.stack.supervisor import Part, Supervisor

REQUIRED_JOB = REEMBED_JOB
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
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


class Stack:
    """Starts the parts in order, health-checks each, stops them in reverse order."""

    def __init__(self, settings: Any, *, api: bool = True, start_timeout: float = START_TIMEOUT_S) -> None:
        self.settings = settings
        self.with_api = api
        self.start_timeout = start_timeout
        self.data_dir = Path(settings.data_dir).resolve()
        self.log_dir = self.data_dir / "logs"
        self._milvus: MilvusLiteServer | None = None
        self._children: list[Child] = []
        self.urls: StackUrls | None = None
        self.env: dict[str, str] = {}
        self._workspace: Path | None = None
        self.dagster_socket: Path | None = None
        self._milvus_host = settings.milvus_listen
        self._milvus_port: int | None = None
        self.supervisor = Supervisor(self.data_dir, log=self._log, graphql=self.graphql,
                                     on_store_back=self._load_collections)
        self.instance = StackInstance(self.data_dir, log=self._log)
        self._guard: Guard | None = None
        self._claimed = False

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
            self._spawn("dagster-daemon", [*tool("dagster-daemon", "dagster._daemon"), "run", "-w",
                                           str(self._workspace)])
            self._supervise_children()
            self._recover_runs()
        except BaseException:
            self.stop()
            raise

    def _recover_runs(self) -> None:
        """After a crash of the earlier instance (once the daemon runs): re-launch the runs it broke."""
        earlier = self.instance.earlier
        if earlier is None or not any(c.name == "dagster-daemon" for c in self._children):
            return
        self.instance.earlier = None
        self._log(f"the earlier `navembed up` (pid {earlier.pid}) crashed; re-launching the runs it interrupted")
        self.supervisor.after_crash(since=earlier.crashed_at)

    def _start(self) -> StackUrls:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.instance.claim()  # raises if another `navembed up` runs this data dir; ends a crashed one's leftovers
        self._claimed = True
        self._guard = Guard(self.data_dir, self.instance.token, log_dir=self.log_dir,
                            env={**os.environ, **self.instance.env})
        clear_status(self.data_dir)
        self.supervisor.stopped = False
        # The webserver hides behind the API (on a private socket) unless there is no API to guard it.
        if self.with_api and not getattr(self.settings, "dagster_url", ""):
            self.dagster_socket = private_socket_path(self.data_dir / "run", "dagster.sock")
        self._check_ports()
        milvus_uri = self.settings.milvus_uri or self._start_milvus()
        postgres_url = self.settings.postgres_url
        home = prepare_dagster_home(self.settings.dagster_home, postgres=bool(postgres_url))
        with environment(instance_env(home, postgres_url)):
            create_storage(home)
        workspace = self._workspace = home / "workspace.yaml"
        workspace.write_text(WORKSPACE)
        self.env = {**os.environ, **settings_env(self.settings), "NAVEMBED_MILVUS_URI": milvus_uri,
                    **instance_env(home, postgres_url), **self.instance.env}
        api_url = f"http://{self.settings.api_host}:{self.settings.api_port}" if self.with_api else None
        if self.dagster_socket is not None:
            self.env["NAVEMBED_DAGSTER_SOCKET"] = str(self.dagster_socket)
            self.dagster_socket.unlink(missing_ok=True)
            self._spawn("dagster-webserver", [sys.executable, "-m", "navembed_pipeline.stack.dagster_serve", "--uds",
                                              str(self.dagster_socket), "-w", str(workspace), "-l", DAGSTER_PREFIX])
            dagster_url = f"{api_url}{DAGSTER_PREFIX}"
        else:
            dagster_url = f"http://{self.settings.dagster_host}:{self.settings.dagster_port}"
            self._spawn("dagster-webserver", [*tool("dagster-webserver", "dagster_webserver"), "-w",
                                              str(workspace), "-h", self.settings.dagster_host, "-p",
                                              str(self.settings.dagster_port)])
        self._wait_for("dagster-webserver", self._dagster_ready)
        if self.with_api:
            self._spawn("api", [sys.executable, "-m", "navembed_api"])
            self._wait_for("api", lambda: http_ok(f"{api_url}/health"))
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
            stop_group(child.process, STOP_GRACE_S)
        self._children.clear()
        if self._milvus is not None:
            self._milvus.stop()
            self._milvus = None
        self.supervisor.parts.clear()
        if not self._claimed:  # another instance runs this data dir: its files are not ours to touch
            return
        clear_status(self.data_dir)
        if self._guard is not None:
            self._guard.release()
            self._guard = None
        self.instance.release()
        self._claimed = False

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
                raise NavembedError(f"port {port} on {host} is already in use{describe_holders(port_holders(port))}, "
                                    f"so the {what} cannot start there; stop whatever holds it or choose another "
                                    "port (NAVEMBED_DAGSTER_PORT / NAVEMBED_API_PORT)")
        socket_path = getattr(self.settings, "socket_path", None)
        if self.with_api and socket_path and (holders := socket_holders(Path(socket_path))):
            raise NavembedError(f"another server already listens on {socket_path}{describe_holders(holders)}; "
                                "stop it or choose another NAVEMBED_SOCKET_PATH")

    def _start_milvus(self) -> str:
        data_dir = self.settings.milvus_data_dir.resolve()
        existing = running_uri(data_dir)
        if existing:  # e.g. started by an earlier CLI command: share it, leave it running
            return existing
        self._milvus = MilvusLiteServer(data_dir, host=self._milvus_host)
        uri = self._milvus.start()
        self.instance.record("milvus", self._milvus.pid)
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
        self.instance.record("milvus", self._milvus.pid)

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

    def _respawn(self, child: Child) -> None:
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
        """Start a part tied to this process (``tether.py``); the daemon holds the data dir's daemon lock."""
        lock = ["--lock", str(self.instance.daemon_lock), "--what", f"Dagster daemon of {self.data_dir}"] \
            if name == "dagster-daemon" else []
        tethered = [sys.executable, "-m", "navembed_pipeline.stack.tether", "--parent", str(os.getpid()), *lock,
                    "--", *command]
        child = spawn(name, tethered, log_dir=self.log_dir, env=self.env, cwd=self.data_dir)
        child.command = command  # a restart is tethered afresh
        self._children.append(child)
        self.instance.record(name, child.process.pid)

    def _wait_for(self, name: str, ready: Callable[[], bool]) -> None:
        child = next(c for c in self._children if c.name == name)
        wait_until_ready(child, self._children, ready, self.start_timeout)
