"""Supervision of `navembed up`: a part that dies is restarted with backoff, and runs it broke are re-launched.

``Supervisor.check()`` is called about once a second by ``Stack.wait()``. For each part (Milvus
Lite, the Dagster webserver, the daemon, the API) that exited on its own it logs the event, marks
the part "restarting" in ``logs/stack.json`` (which ``/health`` reports), and starts it again after
1, 2, 4 ... 30 s. A part that dies right after each of ``MAX_QUICK_DEATHS`` restarts in a row is
given up on, and the stack stops. When Milvus dies, the embedding runs active at that moment are
remembered; once Milvus is back (its collections loaded again) each of those that failed is
re-executed once, so an interrupted re-embed completes without a person. Runs are incremental and
writes are idempotent upserts, so a re-execution only embeds what is missing.

After a crash of an earlier `navembed up` on the same data dir (``leftovers.py``), ``after_crash``
does the same for the runs that crash left active or failed: each that ends failed, and that
Dagster's own run retries do not launch again (``dagster/will_retry``), is re-executed once.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from navembed_pipeline.lib.runs import is_embedding_run
from navembed_pipeline.lib.stack_status import FAILED, RESTARTING, RUNNING, PartStatus, write_status

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
STABLE_AFTER_S = 60.0  # a part that ran this long before dying starts its backoff afresh
MAX_QUICK_DEATHS = 6  # restarts in a row that each died within STABLE_AFTER_S
RELAUNCH_TAG = "navembed/relaunch_of"
RELAUNCH_WAIT_S = 600.0  # how long an interrupted run is watched for its end
RELAUNCH_POLL_S = 1.0
CLOCK_SLACK_S = 2.0
ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
ENDED = ("SUCCESS", "FAILURE", "CANCELED")

RUNS_QUERY = """
query Runs($statuses: [RunStatus!]) {
  runsOrError(filter: {statuses: $statuses}, limit: 50) {
    ... on Runs { results { runId status jobName endTime assetSelection { path } } }
  }
}
"""
RUN_STATUS_QUERY = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { runId status tags { key value } } } }"
WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run when run retries are on
WILL_RETRY_WAIT_S = 5.0
REEXECUTE_MUTATION = """
mutation Reexecute($params: ReexecutionParams!) {
  launchPipelineReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""


@dataclass
class Part:
    """A supervised part: how to tell it exited, how to start it again."""

    name: str
    exit_code: Callable[[], int | None]  # None while it runs
    restart: Callable[[], None]
    started: float = field(default_factory=time.monotonic)
    alive_at: float = field(default_factory=time.time)  # wall time it was last seen running
    quick_deaths: int = 0
    restart_at: float | None = None
    status: PartStatus = field(default_factory=lambda: PartStatus(RUNNING, since=time.time()))


class Supervisor:
    """Restarts dead parts with backoff; re-executes embedding runs a Milvus outage failed."""

    def __init__(self, data_dir: Any, *, log: Callable[[str], None],
                 graphql: Callable[[str, dict[str, Any]], dict[str, Any]],
                 on_store_back: Callable[[], None] = lambda: None) -> None:
        self.data_dir = data_dir
        self.log = log
        self.graphql = graphql
        self.on_store_back = on_store_back
        self.parts: dict[str, Part] = {}
        self._interrupted: set[str] = set()
        self._watchers: list[threading.Thread] = []
        self.relaunched: dict[str, str] = {}  # interrupted run id -> its re-execution's run id
        self.stopped = False  # set when the stack stops: exits are then expected, nothing restarts

    def add(self, part: Part) -> None:
        self.parts[part.name] = part
        self._publish()

    def check(self) -> str | None:
        """Handle exits and due restarts; the name of a part given up on, if any."""
        for part in list(self.parts.values()):
            if self.stopped:
                return None
            now = time.monotonic()
            if part.restart_at is None:
                code = part.exit_code()
                if code is None:
                    part.alive_at = time.time()
                    continue
                self._exited(part, code, now)
                if part.status.state == FAILED:
                    return part.name
            elif now >= part.restart_at:
                self._restart(part)
        return None

    def _exited(self, part: Part, code: int, now: float) -> None:
        part.quick_deaths = 1 if now - part.started >= STABLE_AFTER_S else part.quick_deaths + 1
        if part.name == "milvus":
            self._remember_interrupted_runs(since=part.alive_at)
        if part.quick_deaths > MAX_QUICK_DEATHS:
            self.log(f"{part.name} exited with code {code} again: it died right after each of "
                     f"{MAX_QUICK_DEATHS} restarts; giving up")
            self._set(part, FAILED, code, f"gave up after {MAX_QUICK_DEATHS} quick restarts")
            return
        delay = BACKOFF_S[min(part.quick_deaths, len(BACKOFF_S)) - 1]
        part.restart_at = now + delay
        self.log(f"{part.name} exited with code {code}; restarting it in {delay:g} s "
                 f"(restart {part.status.restarts + 1})")
        self._set(part, RESTARTING, code, f"exited with code {code}; restarting in {delay:g} s")

    def _restart(self, part: Part) -> None:
        part.restart_at = None
        part.started = time.monotonic()
        try:
            part.restart()
        except Exception as exc:  # a failed start is one more quick death: backoff, not a crash of the stack
            self.log(f"restarting {part.name} failed: {exc}")
            part.exit_code = _exited_with(-1, part.exit_code)
            return
        restarts = part.status.restarts + 1
        self.log(f"{part.name} is running again (restart {restarts})")
        part.status = PartStatus(RUNNING, restarts, part.status.last_exit_code, time.time(),
                                 f"restarted {restarts} time(s)")
        self._publish()
        if part.name == "milvus":
            self.on_store_back()
            self._relaunch_interrupted_runs()

    def _set(self, part: Part, state: str, code: int | None, message: str) -> None:
        part.status = replace(part.status, state=state, last_exit_code=code, since=time.time(), message=message)
        self._publish()

    def _publish(self) -> None:
        write_status(self.data_dir, {name: part.status for name, part in self.parts.items()})

    # ----- runs a Milvus outage interrupted ------------------------------------------------------
    def _remember_interrupted_runs(self, *, since: float, why: str = "Milvus' exit") -> None:
        """Embedding runs active now, or failed since ``since`` (when Milvus was last seen alive)."""
        try:
            data = self.graphql(RUNS_QUERY, {"statuses": [*ACTIVE, "FAILURE"]})
        except Exception as exc:  # Dagster down too: nothing to remember, the sensor catches up later
            self.log(f"could not list the runs {why} interrupted: {exc}")
            return
        for run in (data.get("runsOrError") or {}).get("results") or []:
            assets = ["/".join(a["path"]) for a in run.get("assetSelection") or []]
            broken = run["status"] in ACTIVE or (run.get("endTime") or 0) >= since - CLOCK_SLACK_S
            if broken and is_embedding_run(run["jobName"], assets):
                self._interrupted.add(run["runId"])
        if self._interrupted:
            self.log(f"embedding run(s) interrupted by {why}: {', '.join(sorted(self._interrupted))}")

    def after_crash(self, *, since: float | None) -> None:
        """Re-launch the embedding runs an earlier instance's crash interrupted: those active now (their
        workers were killed; run monitoring fails them) and those that failed since ``since`` (when its
        guard saw it die; None: unknown, active runs only)."""
        self._remember_interrupted_runs(since=float("inf") if since is None else since, why="the crash")
        self._relaunch_interrupted_runs()

    def _relaunch_interrupted_runs(self) -> None:
        for run_id in sorted(self._interrupted):
            watcher = threading.Thread(target=self._relaunch_when_failed, args=(run_id,), daemon=True,
                                       name=f"relaunch-{run_id[:8]}")
            watcher.start()
            self._watchers.append(watcher)
        self._interrupted.clear()

    def _relaunch_when_failed(self, run_id: str) -> None:
        """Wait for the interrupted run to end; re-execute it if it failed."""
        deadline = time.monotonic() + RELAUNCH_WAIT_S
        status, run = None, {}
        while time.monotonic() < deadline:
            try:
                run = self.graphql(RUN_STATUS_QUERY, {"id": run_id}).get("runOrError") or {}
            except Exception:  # the webserver may be restarting as well: ask again
                run = {}
            status = run.get("status")
            if status in ENDED:
                break
            time.sleep(RELAUNCH_POLL_S)
        if status != "FAILURE":
            self.log(f"run {run_id} ended {status or 'unknown'}; not re-launched")
            return
        if self._dagster_retries(run_id, run):
            self.log(f"run {run_id} failed; Dagster's run retries launch it again")
            return
        params = {"parentRunId": run_id, "strategy": "ALL_STEPS",
                  "extraTags": [{"key": RELAUNCH_TAG, "value": run_id}]}
        try:
            answer = self.graphql(REEXECUTE_MUTATION, {"params": params})["launchPipelineReexecution"]
        except Exception as exc:
            self.log(f"re-launching run {run_id} failed: {exc}")
            return
        if answer.get("__typename") != "LaunchRunSuccess":
            self.log(f"re-launching run {run_id} was refused: {answer.get('message') or answer}")
            return
        self.relaunched[run_id] = answer["run"]["runId"]
        self.log(f"interrupted run {run_id} failed; re-launched as run {self.relaunched[run_id]}")

    def _dagster_retries(self, run_id: str, run: dict[str, Any]) -> bool:
        """Whether Dagster tagged the failed run to be retried (the tag follows the failure shortly)."""
        deadline = time.monotonic() + WILL_RETRY_WAIT_S
        while True:
            tags = {t["key"]: t["value"] for t in run.get("tags") or []}
            if WILL_RETRY_TAG in tags or time.monotonic() >= deadline:
                return tags.get(WILL_RETRY_TAG) == "true"
            time.sleep(RELAUNCH_POLL_S)
            try:
                run = self.graphql(RUN_STATUS_QUERY, {"id": run_id}).get("runOrError") or {}
            except Exception:
                run = {}

    def join(self, timeout: float = 5.0) -> None:
        for watcher in self._watchers:
            watcher.join(timeout)


def _exited_with(code: int, then: Callable[[], int | None]) -> Callable[[], int | None]:
    """An exit-code probe that reports ``code`` once (a start that failed), then asks ``then``."""
    reported = False

    def probe() -> int | None:
        nonlocal reported
        if not reported:
            reported = True
            return code
        return then()

    return probe
