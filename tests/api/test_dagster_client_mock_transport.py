"""GraphQL request/response mapping of the Dagster client and BatchControl, over httpx.MockTransport.

Pure shape tests: they pin what is sent and how answers are read. The same paths run against a real
dagster-webserver + daemon in test_e2e.py.
"""

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from navembed_api.batch import BatchControl
from navembed_api.dagster_client import DagsterClient
from navembed_api.errors import Conflict, NotFound, OrchestratorError, OrchestratorUnavailable, RunNotFound
from navembed_pipeline.lib.runs import Progress

RUN_A = "aaaaaaaa-0000-0000-0000-000000000000"
RUN_B = "bbbbbbbb-0000-0000-0000-000000000000"


def raw_run(run_id: str, status: str, *, job: str = "reembed_job",
            assets: tuple[str, ...] = ("dsp_embeddings",)) -> dict:
    return {"runId": run_id, "status": status, "jobName": job, "creationTime": 1.0, "startTime": 2.0,
            "endTime": None, "assetSelection": [{"path": [a]} for a in assets], "tags": []}


class FakeWebserver:
    """Answers GraphQL operations by name from ``answers``; records every request body."""

    def __init__(self, answers: dict[str, Callable[[dict], tuple[int, Any]]]) -> None:
        self.answers = answers
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        name = operation_name(body["query"])
        status, payload = self.answers[name](body["variables"])
        if isinstance(payload, str):
            return httpx.Response(status, text=payload)
        return httpx.Response(status, json=payload)

    def client(self) -> DagsterClient:
        return DagsterClient("http://dagster.test", transport=httpx.MockTransport(self))

    def sent(self, name: str) -> list[dict]:
        return [r["variables"] for r in self.requests if operation_name(r["query"]) == name]


def operation_name(query: str) -> str:
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    assert match, query
    return match.group(1)


def data(**fields: Any) -> Callable[[dict], tuple[int, Any]]:
    return lambda variables: (200, {"data": fields})


def runs(*items: dict) -> Callable[[dict], tuple[int, Any]]:
    def answer(variables: dict) -> tuple[int, Any]:
        statuses = (variables.get("filter") or {}).get("statuses")
        chosen = [r for r in items if not statuses or r["status"] in statuses]
        return 200, {"data": {"runsOrError": {"__typename": "Runs", "results": chosen}}}
    return answer


REPOS = data(repositoriesOrError={"__typename": "RepositoryConnection", "nodes": [
    {"name": "__repository__", "location": {"name": "navembed_pipeline.definitions"},
     "jobs": [{"name": "reembed_job"}, {"name": "__ASSET_JOB"}]}]})


def test_graphql_errors_arrive_as_http_500_with_a_json_body() -> None:
    web = FakeWebserver({"Version": lambda v: (500, {"errors": [{"message": "Cannot query field 'x'"}]})})
    with pytest.raises(OrchestratorError, match="Cannot query field 'x'"):
        asyncio.run(web.client().version())


def test_an_answer_without_json_names_the_status() -> None:
    web = FakeWebserver({"Version": lambda v: (502, "<html>bad gateway</html>")})
    with pytest.raises(OrchestratorError, match="HTTP 502"):
        asyncio.run(web.client().version())


def test_an_unreachable_webserver_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = DagsterClient("http://dagster.test", transport=httpx.MockTransport(refuse))
    with pytest.raises(OrchestratorUnavailable, match="unreachable"):
        asyncio.run(client.version())


def test_start_launches_one_run_over_every_bucket_with_the_models_assets() -> None:
    web = FakeWebserver({"Runs": runs(), "Repositories": REPOS, "LaunchRun": data(
        launchRun={"__typename": "LaunchRunSuccess", "run": {"runId": RUN_A, "status": "QUEUED"}})})
    answer = asyncio.run(BatchControl(web.client()).start(["dsp", "muq", "dsp"], clear_existing=True))
    assert answer["status"] == "started" and answer["run_id"] == RUN_A and answer["job_id"] == 0xAAAAAAAA
    assert answer["models"] == ["dsp", "muq"]
    (sent,) = web.sent("LaunchRun")
    params = sent["executionParams"]
    assert params["selector"] == {"jobName": "reembed_job", "repositoryName": "__repository__",
                                  "repositoryLocationName": "navembed_pipeline.definitions",
                                  "assetSelection": [{"path": ["dsp_embeddings"]}, {"path": ["muq_embeddings"]}]}
    tags = {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]}
    assert tags == {"dagster/asset_partition_range_start": "00", "dagster/asset_partition_range_end": "ff",
                    "navembed/trigger": "api"}
    assert params["runConfigData"]["ops"]["muq_embeddings"]["config"]["clear_existing"] is True


def test_rejected_run_config_names_the_problems() -> None:
    web = FakeWebserver({"Runs": runs(), "Repositories": REPOS, "LaunchRun": data(launchRun={
        "__typename": "RunConfigValidationInvalid", "errors": [{"message": "Missing required config entry"}]})})
    with pytest.raises(OrchestratorError, match="Missing required config entry"):
        asyncio.run(BatchControl(web.client()).start(["dsp"]))


def test_start_refuses_while_an_embedding_run_is_active_but_not_for_other_runs() -> None:
    busy = FakeWebserver({"Runs": runs(raw_run(RUN_A, "QUEUED", job="__ASSET_JOB"))})
    with pytest.raises(Conflict, match=RUN_A):
        asyncio.run(BatchControl(busy.client()).start(["dsp"]))
    other = FakeWebserver({"Runs": runs(raw_run(RUN_B, "STARTED", job="__ASSET_JOB", assets=("library_tracks",))),
                           "Repositories": REPOS, "LaunchRun": data(
        launchRun={"__typename": "LaunchRunSuccess", "run": {"runId": RUN_A, "status": "QUEUED"}})})
    assert asyncio.run(BatchControl(other.client()).start(["dsp"]))["run_id"] == RUN_A


def test_no_embedding_run_ever_is_no_job() -> None:
    web = FakeWebserver({"Runs": runs(raw_run(RUN_B, "SUCCESS", job="__ASSET_JOB", assets=("library_tracks",)))})
    assert asyncio.run(BatchControl(web.client()).progress()) == {"status": "no_job"}


def test_each_poll_reads_only_the_events_logged_since_the_last_one() -> None:
    pages = {None: ("c1", True, 5), "c1": ("c2", False, 9), "c2": ("c2", False, None)}

    def logs(variables: dict) -> tuple[int, Any]:
        cursor, more, processed = pages[variables["afterCursor"]]
        events = [] if processed is None else [{"__typename": "LogMessageEvent", "timestamp": "1000",
                                                "stepKey": "dsp_embeddings",
                                                "message": Progress("dsp", 20, processed, processed, 0, 0, 0, None,
                                                                    1.0, 1.0).to_log_line()}]
        return 200, {"data": {"logsForRun": {"__typename": "EventConnection", "cursor": cursor, "hasMore": more,
                                             "events": events}}}

    def logs_and_run(variables: dict) -> tuple[int, Any]:  # a running run: its events, then its status
        status, payload = logs(variables)
        payload["data"]["runOrError"] = {"__typename": "Run", **raw_run(RUN_A, "STARTED")}
        return status, payload

    web = FakeWebserver({"Runs": runs(raw_run(RUN_A, "STARTED")), "RunAndLogs": logs_and_run})
    control = BatchControl(web.client())
    assert asyncio.run(control.progress())["processed_tracks"] == 9
    assert [v["afterCursor"] for v in web.sent("RunAndLogs")] == [None, "c1"]
    assert asyncio.run(control.progress())["processed_tracks"] == 9
    assert [v["afterCursor"] for v in web.sent("RunAndLogs")] == [None, "c1", "c2"]


def progress_page(processed: int, cursor: str, status: str, *, run: dict | None = None) -> dict:
    """A ``RunAndLogs`` answer: one progress line of ``processed`` tracks, then the run (``RUN_A`` in ``status``)."""
    line = Progress("dsp", 20, processed, processed, 0, 0, 0, None, 1.0, 1.0).to_log_line()
    return {"data": {
        "logsForRun": {"__typename": "EventConnection", "cursor": cursor, "hasMore": False, "events": [
            {"__typename": "LogMessageEvent", "timestamp": "1000", "stepKey": "dsp_embeddings", "message": line}]},
        "runOrError": run or {"__typename": "Run", **raw_run(RUN_A, status)}}}


def test_a_poll_of_a_run_reads_its_new_events_and_then_its_status_in_one_request() -> None:
    answers = iter([progress_page(4, "c1", "STARTED"), progress_page(20, "c2", "SUCCESS")])
    web = FakeWebserver({"RunAndLogs": lambda variables: (200, next(answers))})
    control = BatchControl(web.client())
    first = asyncio.run(control.progress(RUN_A))
    assert (first["status"], first["processed_tracks"]) == ("running", 4)
    last = asyncio.run(control.progress(RUN_A))  # the run ended: its last line comes with its final status
    assert (last["status"], last["processed_tracks"]) == ("completed", 20)
    assert [operation_name(r["query"]) for r in web.requests] == ["RunAndLogs", "RunAndLogs"]
    assert [v["afterCursor"] for v in web.sent("RunAndLogs")] == [None, "c1"]


def test_a_poll_of_a_run_that_embeds_nothing_is_not_found_and_not_followed() -> None:
    other = {"__typename": "Run", **raw_run(RUN_B, "STARTED", job="sonic_mixes_job", assets=("sonic_mixes",))}
    web = FakeWebserver({"RunAndLogs": lambda variables: (200, progress_page(4, "c1", "STARTED", run=other))})
    control = BatchControl(web.client())
    with pytest.raises(NotFound, match="sonic_mixes_job run, not an embedding run"):
        asyncio.run(control.progress(RUN_B))
    assert control._runs == {} and control._run_locks == {}  # noqa: SLF001 - nothing kept for it


def test_a_poll_of_a_run_dagster_does_not_know_is_run_not_found() -> None:
    missing = {"__typename": "RunNotFoundError", "message": f"Run {RUN_B} could not be found."}
    web = FakeWebserver({"RunAndLogs": data(logsForRun=missing, runOrError=missing)})
    control = BatchControl(web.client())
    with pytest.raises(RunNotFound, match=RUN_B):
        asyncio.run(control.progress(RUN_B))
    assert control._run_locks == {}  # noqa: SLF001


def test_an_executing_run_is_shown_before_a_newer_queued_one() -> None:
    web = FakeWebserver({"Runs": runs(raw_run(RUN_B, "QUEUED"), raw_run(RUN_A, "STARTED"))})
    assert asyncio.run(BatchControl(web.client()).latest_run()).run_id == RUN_A


def test_cancel_terminates_every_active_embedding_run() -> None:
    web = FakeWebserver({"Runs": runs(raw_run(RUN_B, "QUEUED"), raw_run(RUN_A, "CANCELING")), "TerminateRun": data(
        terminateRun={"__typename": "TerminateRunSuccess", "run": {"runId": RUN_B, "status": "CANCELED"}})})
    answer = asyncio.run(BatchControl(web.client()).cancel())
    assert answer == {"status": "cancelling", "job_id": 0xBBBBBBBB, "run_id": RUN_B}
    assert web.sent("TerminateRun") == [{"runId": RUN_B}]  # the one already cancelling is left alone


def test_cancel_with_nothing_running_is_not_found() -> None:
    web = FakeWebserver({"Runs": runs(raw_run(RUN_A, "SUCCESS"))})
    with pytest.raises(NotFound, match="no embedding run"):
        asyncio.run(BatchControl(web.client()).cancel())


def test_a_run_still_starting_is_terminated_as_soon_as_dagster_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("navembed_api.batch.CANCEL_POLL_S", 0.01)
    states = iter(["STARTING", "STARTED"])

    def terminate(variables: dict) -> tuple[int, Any]:
        if len(web.sent("TerminateRun")) == 1:
            return 200, {"data": {"terminateRun": {"__typename": "TerminateRunFailure", "message":
                         f"Run {RUN_A} could not be terminated due to having status STARTING."}}}
        return 200, {"data": {"terminateRun": {"__typename": "TerminateRunSuccess",
                                               "run": {"runId": RUN_A, "status": "CANCELING"}}}}

    web = FakeWebserver({"Runs": runs(raw_run(RUN_A, "STARTING")), "TerminateRun": terminate,
                         "Run": lambda v: (200, {"data": {"runOrError": {"__typename": "Run",
                                                                         **raw_run(RUN_A, next(states))}}})})

    async def scenario() -> dict:
        control = BatchControl(web.client())
        answer = await control.cancel()
        await asyncio.wait_for(asyncio.gather(*control._retries), timeout=5)  # noqa: SLF001 - await the retry
        return answer

    assert asyncio.run(scenario())["status"] == "cancelling"
    assert web.sent("TerminateRun") == [{"runId": RUN_A}, {"runId": RUN_A}]
