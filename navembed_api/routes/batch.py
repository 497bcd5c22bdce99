"""``/batch/start|progress|cancel``: re-embed the library through Dagster (admin only)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from navembed_api.deps import AdminDep, ServicesDep
from navembed_api.errors import error_body
from navembed_api.routes import ModelName

RUN_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # Dagster's run ids
router = APIRouter(prefix="/batch", tags=["batch"], dependencies=[AdminDep])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": why, "content": {"application/json": {"example": error_body(why)}}}
    for code, why in ((401, "missing or wrong admin token"), (503, "no admin token configured, or Dagster down"))
}


class BatchStartRequest(BaseModel):
    """The original request; ``models`` defaults to the enabled models."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore",
                              json_schema_extra={"example": {"models": ["dsp"], "clearExisting": False}})

    models: list[ModelName] | None = Field(
        None, max_length=16, description="Models to embed with (default: the enabled ones).")
    clear_existing: bool = Field(False, alias="clearExisting",
                                 description="Rebuild each collection from scratch (into a new collection, "
                                             "switched in when the run completes; searches keep working).")
    force: bool = Field(False, description="Re-embed tracks whose stored vectors are current (in place).")


@router.post("/start", responses={**ERRORS, 409: {"description": "an embedding run is queued or running"},
                                  422: {"description": "unknown model or missing weights"}})
async def start(body: BatchStartRequest, services: ServicesDep) -> dict[str, Any]:
    """Start re-embedding the whole library (one Dagster run over all buckets).

    Without ``clearExisting`` or ``force`` only new and changed tracks are embedded.
    Answers ``{"status": "started", "job_id": ...}`` plus the Dagster run id and its UI link.
    """
    models = body.models if body.models is not None else services.settings.enabled_models()
    return await services.batch.start(models, clear_existing=body.clear_existing, force=body.force)


@router.get("/progress", responses={**ERRORS, 404: {"description": "run_id names no embedding run"}})
async def progress(services: ServicesDep, run_id: Annotated[str | None, Query(
        pattern=RUN_ID_PATTERN, description="Follow this run (the run_id /batch/start answered) instead of "
                                            "the latest embedding run.")] = None) -> dict[str, Any]:
    """Progress of the latest embedding run, however it was started (API, Dagster UI, sensor, schedule).

    ``status`` is one of initialized, running, completed, completed_with_errors, failed, cancelled;
    ``{"status": "no_job"}`` when there has been none. ``estimated_completion`` is a unix time.
    """
    return await services.batch.progress(run_id)


@router.post("/cancel", responses={**ERRORS, 404: {"description": "nothing is queued or running"}})
async def cancel(services: ServicesDep) -> dict[str, Any]:
    """Cancel the queued or running embedding run; vectors already written stay."""
    return await services.batch.cancel()
