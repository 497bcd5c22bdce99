"""``/batch/start|progress|cancel``: re-embed the library through Dagster (admin only)."""

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from navembed_api import recommender
from navembed_api.batch_progress import TERMINAL
from navembed_api.deps import AdminDep, ServicesDep
from navembed_api.errors import DiskFull, LibraryUnavailable, StoreUnavailable, error_body, short
from navembed_api.health_probes import disk_state, navidrome_state
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.stack_status import RUNNING, read_status
from navembed_pipeline.lib.store import read_failure_summary
from navembed_pipeline.lib.workers import MAX_WORKERS
from navembed_api.routes import ModelName
from navembed_api.routes.health import deletion_guard_state

STORE_PROBE_TIMEOUT_S = 5.0
FINISHED_DAGSTER = ("SUCCESS", "FAILURE", "CANCELED")
RUN_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # Dagster's run ids
router = APIRouter(prefix="/batch", tags=["batch"], dependencies=[AdminDep])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": why, "content": {"application/json": {"example": error_body(why)}}}
    for code, why in ((401, "missing or wrong admin token"),
                      (503, "no admin token configured, Dagster down, or (start) the vector store down, "
                            "Navidrome's database unreadable or the data dir's disk full"))
}


class BatchStartRequest(BaseModel):
    """The original request; ``models`` defaults to the enabled models."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore",
                              json_schema_extra={"example": {"models": ["dsp"], "clearExisting": False}})

    models: list[ModelName] | None = Field(
        None, max_length=16, description="Models to embed with (default: the enabled ones).")
    clear_existing: StrictBool = Field(False, alias="clearExisting",
                                 description="Rebuild each collection from scratch (into a new collection, "
                                             "switched in when the run completes; searches keep working).")
    force: StrictBool = Field(False, description="Re-embed tracks whose stored vectors are current (in place).")
    workers: StrictInt = Field(1, ge=1, le=MAX_WORKERS, description="Embed with this many Dagster runs side by "
                               "side, each over its own range of buckets (one job: progress and cancel cover "
                               "them all). Not with clearExisting.")
    confirm_deletions: StrictBool = Field(False, alias="confirmDeletions",
                                          description="Delete what the deletion guard refused (a mass deletion, "
                                                      "or a whole library folder missing), this run only: see "
                                                      "deletion_guard on /batch/progress and the README.")


@router.post("/start", responses={**ERRORS, 400: {"description": "the body is not acceptable JSON"},
                                  409: {"description": "an embedding run is queued or running"},
                                  413: {"description": "the body is too large"},
                                  422: {"description": "unknown model, missing weights, or a field of the wrong "
                                                       "type (booleans must be true or false)"}})
async def start(body: BatchStartRequest, services: ServicesDep) -> dict[str, Any]:
    """Start re-embedding the whole library (one Dagster run over all buckets).

    Without ``clearExisting`` or ``force`` only new and changed tracks are embedded.
    Answers ``{"status": "started", "job_id": ...}`` plus the Dagster run id and its UI link.
    """
    models = body.models if body.models is not None else services.settings.enabled_models()
    await require_store(services)  # a run started while Milvus is down would only fail
    await require_library(services)  # so would one over a missing, garbage or locked navidrome.db
    await require_disk(services)  # and one with no room to write its vectors, logs and events
    return await services.batch.start(models, clear_existing=body.clear_existing, force=body.force,
                                      workers=body.workers, confirm_deletions=body.confirm_deletions)


@router.get("/progress", responses={**ERRORS, 404: {"description": "run_id names no embedding run"}})
async def progress(request: Request, services: ServicesDep, run_id: Annotated[str | None, Query(
        pattern=RUN_ID_PATTERN, description="Follow this run (the run_id /batch/start answered) instead of "
                                            "the latest embedding run.")] = None) -> dict[str, Any]:
    """Progress of the latest embedding run, however it was started (API, Dagster UI, sensor, schedule).

    ``status`` is one of initialized, running, completed, completed_with_errors, failed, cancelled;
    ``{"status": "no_job"}`` when there has been none. ``estimated_completion`` is a unix time.
    A run (or a worker of a fanned-out run) that has finished is reported ``completed`` only once every
    route serves its results; until then a finished run's ``status`` stays ``running``, with ``serving``
    saying why. ``deletion_guard`` lists deletions the guard refused (nothing deleted; see the README);
    ``failure_log`` counts the recorded failures per model (and ``fingerprint``), the latest with their reason.
    """
    answer = await services.batch.progress(run_id)
    if writer_finished(answer) and not await recommender.catch_up(getattr(request.app.state, "recommending", None)):
        if answer["status"] in ("completed", "completed_with_errors"):
            answer = {**answer, "status": "running", "serving": "the run is over; its results are being loaded "
                                                                "into the API, which serves them once this says completed"}
    data_dir = services.settings.data_dir
    guard, failures = await asyncio.gather(asyncio.to_thread(deletion_guard_state, data_dir),
                                           asyncio.to_thread(failure_log_state, data_dir))
    return {**answer, "deletion_guard": guard, "failure_log": failures}


def failure_log_state(data_dir: Path) -> dict[str, Any]:
    """The failure log (``failures.sqlite``) by key: each model's failed tracks, and ``fingerprint`` for tracks
    whose fingerprint could not be stored; a count and the latest few with their reason. Never raises."""
    try:
        return {"ok": True, "failed": read_failure_summary(data_dir)}
    except NavembedError as exc:
        return {"ok": False, "error": str(exc), "failed": {}}


def writer_finished(answer: dict[str, Any]) -> bool:
    """Whether the run, or any worker run of its job, is over (and may have published writes)."""
    return answer.get("status") in TERMINAL or any(
        worker.get("dagster_status") in FINISHED_DAGSTER for worker in answer.get("workers") or ())


@router.post("/cancel", responses={**ERRORS, 404: {"description": "nothing is queued or running"}})
async def cancel(services: ServicesDep) -> dict[str, Any]:
    """Cancel the queued or running embedding run; vectors already written stay."""
    return await services.batch.cancel()


async def require_library(services: ServicesDep) -> None:
    """503 unless Navidrome's database (when the API is told where it is) reads now: a run reads it first."""
    settings = services.settings
    if settings.navidrome_db is None:  # not configured for the API: the run reads the pipeline's own setting
        return
    state = await asyncio.to_thread(navidrome_state, settings.navidrome_db, settings.path_mapping)
    if not state["ok"]:
        raise LibraryUnavailable(f"{state['error']}; no run was started")


async def require_disk(services: ServicesDep) -> None:
    """503 when the data dir's disk is (nearly) full (``NAVEMBED_HEALTH_MIN_FREE_MB``): the run could not write."""
    settings = services.settings
    state = await asyncio.to_thread(disk_state, settings.data_dir, settings.health_min_free_mb)
    if not state["ok"]:
        raise DiskFull(f"{state['error']}; no run was started")


async def require_store(services: ServicesDep) -> None:
    """503 unless the vector store answers now (the stack restarts a Milvus that died)."""
    milvus = ((read_status(services.settings.data_dir) or {}).get("parts") or {}).get("milvus")
    if milvus and milvus.get("state") != RUNNING:
        raise StoreUnavailable(f"the vector store is {milvus['state']} ({milvus.get('message', '')}); no run "
                               "was started: retry once /health says the store is ok")
    def probe() -> None:
        store = services.store()
        for model in services.settings.enabled_models()[:1]:
            store.count(model)

    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout=STORE_PROBE_TIMEOUT_S)
    except (NavembedError, TimeoutError) as exc:
        raise StoreUnavailable(f"the vector store at {services.store.uri} is not answering "
                               f"({short(str(exc) or 'timed out', 200, quote=False)}); no run was started. "
                               "If navembed up runs it, it is being restarted: retry in a few seconds") from None
