"""``/health`` (store, Dagster, models, socket) and ``/models``."""

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from navembed_api.deps import ServicesDep
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.library.missing_tracks import read_refusals
from navembed_pipeline.lib.stack_status import RUNNING, read_status

router = APIRouter(tags=["info"])
HEALTH_TIMEOUT_S = 5.0


@router.get("/models")
def models(services: ServicesDep) -> list[dict[str, Any]]:
    """Every model: dimensions, sample rate, loaded?, device, weights present?, licence."""
    enabled = set(services.settings.enabled_models())
    return [{**entry, "enabled": entry["name"] in enabled} for entry in services.models.describe_all()]


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, Any]:
    """``status`` is "ok" when the store and Dagster answer, else "degraded" (with the reasons).

    Under `navembed up`, ``stack`` lists each supervised part (running / restarting / failed, restarts,
    last exit code); a part being restarted makes its section not ok even before a probe fails.
    """
    store, dagster = await asyncio.gather(_store(services), _dagster(services))
    socket = services.socket
    stack = read_status(services.settings.data_dir)  # what `navembed up` says about its parts, if it runs
    parts = (stack or {}).get("parts", {})
    for section, part in ((store, "milvus"), (dagster, "dagster-webserver")):
        if part in parts and parts[part].get("state") != RUNNING:
            section["ok"] = False
            section["supervisor"] = f"{part} is {parts[part]['state']}: {parts[part].get('message', '')}"
    deletions = await asyncio.to_thread(deletion_guard_state, services.settings.data_dir)
    body = {
        "status": "ok" if store["ok"] and dagster["ok"] and deletions["ok"] and all(
            p.get("state") == RUNNING for p in parts.values()) else "degraded",
        "store": store,
        "dagster": dagster,
        "models": {"enabled": services.settings.enabled_models(), "loaded": services.models.loaded()},
        "socket": {"path": str(services.settings.socket_path) if services.settings.socket_path else None,
                   "listening": bool(socket and socket.listening)},
        "batch_control": services.settings.admin_token_value is not None,
        "stack": parts or None,
        "deletions": deletions,
    }
    return body


def deletion_guard_state(data_dir: Path) -> dict[str, Any]:
    """The deletion guard's standing refusals (``missing.sqlite``): not ok while a run's deletions are refused."""
    try:
        refusals = read_refusals(data_dir)
    except NavembedError as exc:
        return {"ok": False, "error": str(exc), "refused": []}
    return {"ok": not refusals, "refused": [
        {"model": r.model, "reason": r.reason, "would_delete": r.would_delete, "refused_at": r.refused_at}
        for r in refusals]}


async def _store(services: ServicesDep) -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        store = services.store()
        return {"ok": True, "uri": store.uri, "rows": {m: store.count(m) for m in services.settings.enabled_models()}}

    try:
        return await asyncio.wait_for(asyncio.to_thread(probe), timeout=HEALTH_TIMEOUT_S)
    except (NavembedError, TimeoutError) as exc:
        return {"ok": False, "uri": services.store.uri, "error": str(exc) or "timed out"}


async def _dagster(services: ServicesDep) -> dict[str, Any]:
    try:
        version = await asyncio.wait_for(services.dagster.version(), timeout=HEALTH_TIMEOUT_S)
        return {"ok": True, "url": services.dagster.base_url, "version": version}
    except (NavembedError, TimeoutError) as exc:
        return {"ok": False, "url": services.dagster.base_url, "error": str(exc) or "timed out"}
