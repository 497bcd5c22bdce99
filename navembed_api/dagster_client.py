"""A typed client over the Dagster webserver's GraphQL API (plain GraphQL over httpx).

``DagsterGraphQLClient`` has no event-log or asset-selection support, so the few operations the
API needs are written out here as constants. GraphQL errors come back as HTTP 500 with a JSON
body, so the body is read whatever the status; an unreachable webserver is an
``OrchestratorUnavailable``, an answer that is an error is an ``OrchestratorError``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from navembed_api.errors import OrchestratorError, OrchestratorUnavailable, RunNotFound, TerminateRefused

ACTIVE_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")

VERSION_QUERY = "query Version { version }"

REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on Error { message }
  }
}
"""

RUN_FIELDS = """
fragment RunFields on Run {
  runId status jobName creationTime startTime endTime
  assetSelection { path }
  tags { key value }
}
"""

RUNS_QUERY = RUN_FIELDS + """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { ...RunFields } }
    ... on Error { message }
  }
}
"""

RUN_QUERY = RUN_FIELDS + """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { ...RunFields }
    ... on Error { message }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on Error { message }
  }
}
"""

TERMINATE_RUN_MUTATION = """
mutation TerminateRun($runId: String!) {
  terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) {
    __typename
    ... on TerminateRunSuccess { run { runId status } }
    ... on TerminateRunFailure { message }
    ... on Error { message }
  }
}
"""

LOGS_FOR_RUN_FIELD = """
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp stepKey }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on Error { message }
  }"""

LOGS_FOR_RUN_QUERY = """
query LogsForRun($runId: ID!, $afterCursor: String, $limit: Int) {""" + LOGS_FOR_RUN_FIELD + """
}
"""

# A progress poll's one request: the run's new events, then its status. Dagster resolves ``logsForRun``
# (synchronous) before ``runOrError`` (asynchronous, gathered after the synchronous fields), so the status is
# read after the events: a run that ended in between shows its final lines with its final status. One request
# instead of a status, the events and the status again: about half the webserver's work per poll.
RUN_AND_LOGS_QUERY = RUN_FIELDS + """
query RunAndLogs($runId: ID!, $afterCursor: String, $limit: Int) {""" + LOGS_FOR_RUN_FIELD + """
  runOrError(runId: $runId) {
    __typename
    ... on Run { ...RunFields }
    ... on Error { message }
  }
}
"""

SENSOR_TICK_QUERY = """
query SensorTick($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 1) { status runIds } } }
    ... on Error { message }
  }
}
"""


@dataclass(frozen=True)
class SensorTick:
    """A sensor's latest evaluation: its status (STARTED while it runs, then SKIPPED, SUCCESS or FAILURE)
    and the runs it requested."""

    status: str
    run_ids: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return self.status != "STARTED"


@dataclass(frozen=True)
class RunInfo:
    """One Dagster run as the API needs it."""

    run_id: str
    status: str  # Dagster's RunStatus, e.g. QUEUED, STARTED, SUCCESS, FAILURE, CANCELED
    job_name: str
    asset_keys: tuple[str, ...]  # "/"-joined asset key paths; empty when the run selects none
    tags: dict[str, str]
    creation_time: float
    start_time: float | None
    end_time: float | None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's log: its type, message, time (unix seconds) and error, if any."""

    kind: str
    message: str
    timestamp: float
    step_key: str | None
    error: str | None


@dataclass(frozen=True)
class EventPage:
    events: tuple[RunEvent, ...]
    cursor: str | None
    has_more: bool


@dataclass(frozen=True)
class JobLocation:
    repository_name: str
    location_name: str


class DagsterClient:
    """Async GraphQL client bound to one webserver (``base_url`` without ``/graphql``)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None, public_url: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = (public_url or self.base_url).rstrip("/")  # for links shown to people
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport, headers=headers)
        self._locations: dict[str, JobLocation] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        """The connection to the webserver (the API's authenticated UI proxy reuses it)."""
        return self._http

    async def aclose(self) -> None:
        await self._http.aclose()

    def run_url(self, run_id: str) -> str:
        """The run's page in the Dagster UI."""
        return f"{self.public_url}/runs/{run_id}"

    # ----- queries ----------------------------------------------------------------------------
    async def version(self) -> str:
        return (await self.execute(VERSION_QUERY))["version"]

    async def runs(self, *, limit: int = 50, statuses: Sequence[str] | None = None) -> list[RunInfo]:
        """The latest runs, newest first (optionally only those in ``statuses``)."""
        run_filter = {"statuses": list(statuses)} if statuses else None
        data = await self.execute(RUNS_QUERY, {"filter": run_filter, "limit": limit})
        result = _expect(data["runsOrError"], "Runs")
        return [_run_info(raw) for raw in result["results"]]

    async def run(self, run_id: str) -> RunInfo:
        data = await self.execute(RUN_QUERY, {"runId": run_id})
        result = data["runOrError"]
        if result["__typename"] == "RunNotFoundError":
            raise RunNotFound(f"Dagster has no run {run_id}")
        return _run_info(_expect(result, "Run"))

    async def logs_for_run(self, run_id: str, *, after_cursor: str | None = None, limit: int = 1000) -> EventPage:
        """Events after ``after_cursor`` (all of them when None), at most ``limit``."""
        data = await self.execute(LOGS_FOR_RUN_QUERY, {"runId": run_id, "afterCursor": after_cursor,
                                                       "limit": limit})
        result = data["logsForRun"]
        if result["__typename"] == "RunNotFoundError":
            raise RunNotFound(f"Dagster has no run {run_id}")
        page = _expect(result, "EventConnection")
        return EventPage(tuple(_run_event(raw) for raw in page["events"]), page["cursor"], bool(page["hasMore"]))

    async def run_and_logs(self, run_id: str, *, after_cursor: str | None = None,
                           limit: int = 1000) -> tuple[EventPage, RunInfo]:
        """Events after ``after_cursor`` and then the run's status, in one request (``RUN_AND_LOGS_QUERY``)."""
        data = await self.execute(RUN_AND_LOGS_QUERY, {"runId": run_id, "afterCursor": after_cursor, "limit": limit})
        logs, run = data["logsForRun"], data["runOrError"]
        if "RunNotFoundError" in (logs["__typename"], run["__typename"]):
            raise RunNotFound(f"Dagster has no run {run_id}")
        page = _expect(logs, "EventConnection")
        return (EventPage(tuple(_run_event(raw) for raw in page["events"]), page["cursor"], bool(page["hasMore"])),
                _run_info(_expect(run, "Run")))

    async def job_location(self, job_name: str) -> JobLocation:
        """The repository and code location that define ``job_name`` (cached once found)."""
        if job_name not in self._locations:
            data = await self.execute(REPOSITORIES_QUERY)
            result = _expect(data["repositoriesOrError"], "RepositoryConnection")
            for repo in result["nodes"]:
                for job in repo["jobs"]:
                    self._locations.setdefault(job["name"], JobLocation(repo["name"], repo["location"]["name"]))
            if job_name not in self._locations:
                raise OrchestratorError(f"no code location loaded in Dagster at {self.base_url} defines job "
                                        f"{job_name!r}; is it serving navembed's workspace.yaml?")
        return self._locations[job_name]

    async def latest_sensor_tick(self, sensor_name: str, *, job_name: str) -> SensorTick | None:
        """The latest tick of sensor ``sensor_name``, defined in the code location of ``job_name``; None
        before its first tick."""
        location = await self.job_location(job_name)
        data = await self.execute(SENSOR_TICK_QUERY, {"selector": {
            "repositoryName": location.repository_name, "repositoryLocationName": location.location_name,
            "sensorName": sensor_name}})
        ticks = _expect(data["sensorOrError"], "Sensor")["sensorState"]["ticks"]
        return SensorTick(ticks[0]["status"], tuple(ticks[0]["runIds"] or ())) if ticks else None

    # ----- mutations ---------------------------------------------------------------------------
    async def launch_run(self, job_name: str, *, asset_keys: Sequence[str], run_config: dict[str, Any],
                         tags: dict[str, str]) -> str:
        """Launch (enqueue) one run of ``job_name`` restricted to ``asset_keys``; returns its run id."""
        location = await self.job_location(job_name)
        params = {
            "selector": {"jobName": job_name, "repositoryName": location.repository_name,
                         "repositoryLocationName": location.location_name,
                         "assetSelection": [{"path": key.split("/")} for key in asset_keys]},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        data = await self.execute(LAUNCH_RUN_MUTATION, {"executionParams": params})
        result = data["launchRun"]
        if result["__typename"] == "RunConfigValidationInvalid":
            problems = "; ".join(e["message"] for e in result["errors"])
            raise OrchestratorError(f"Dagster rejected the run config of {job_name}: {problems}")
        return _expect(result, "LaunchRunSuccess")["run"]["runId"]

    async def terminate_run(self, run_id: str) -> str:
        """Ask Dagster to stop ``run_id`` (a queued run is cancelled at once); returns its status."""
        data = await self.execute(TERMINATE_RUN_MUTATION, {"runId": run_id})
        result = data["terminateRun"]
        if result["__typename"] == "RunNotFoundError":
            raise RunNotFound(f"Dagster has no run {run_id}")
        if result["__typename"] == "TerminateRunFailure":
            raise TerminateRefused(result["message"])
        return _expect(result, "TerminateRunSuccess")["run"]["status"]

    # ----- transport ---------------------------------------------------------------------------
    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL operation and return its ``data``."""
        try:
            response = await self._http.post("/graphql", json={"query": query, "variables": variables or {}})
        except httpx.HTTPError as exc:
            raise OrchestratorUnavailable(f"Dagster webserver at {self.base_url} is unreachable "
                                          f"({type(exc).__name__}: {exc}); is `navembed up` running?") from exc
        try:
            body = response.json()
        except ValueError:
            raise OrchestratorError(f"Dagster at {self.base_url} answered HTTP {response.status_code} "
                                    f"without JSON: {response.text[:200]!r}") from None
        if body.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in body["errors"])
            raise OrchestratorError(f"Dagster GraphQL error: {messages}")
        if not isinstance(body.get("data"), dict):
            raise OrchestratorError(f"Dagster at {self.base_url} answered HTTP {response.status_code} "
                                    "without data")
        return body["data"]


def _expect(result: dict[str, Any], typename: str) -> dict[str, Any]:
    """``result`` if it is a ``typename``; any other member of the union becomes an error."""
    if result["__typename"] == typename:
        return result
    detail = result.get("message") or result.get("invalidStepKey") or result.get("stepKey") or ""
    raise OrchestratorError(f"Dagster answered {result['__typename']}" + (f": {detail}" if detail else ""))


def _run_info(raw: dict[str, Any]) -> RunInfo:
    return RunInfo(run_id=raw["runId"], status=raw["status"], job_name=raw["jobName"],
                   asset_keys=tuple("/".join(k["path"]) for k in raw.get("assetSelection") or ()),
                   tags={t["key"]: t["value"] for t in raw.get("tags") or ()},
                   creation_time=float(raw["creationTime"]), start_time=raw.get("startTime"),
                   end_time=raw.get("endTime"))


def _run_event(raw: dict[str, Any]) -> RunEvent:
    error = raw.get("error") or None
    stamp = raw.get("timestamp")
    return RunEvent(kind=raw["__typename"], message=raw.get("message") or "",
                    timestamp=float(stamp) / 1000.0 if stamp else 0.0, step_key=raw.get("stepKey"),
                    error=error.get("message") if error else None)
