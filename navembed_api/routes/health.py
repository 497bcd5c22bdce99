"""``/health`` (store, Dagster, models, socket) and ``/models``."""

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from navembed_api.deps import ServicesDep
from navembed_api.health_probes import disk_state, navidrome_state, state_files_state, vector_cache_state
from navembed_pipeline.lib.errors import NavembedError
from navembed_pipeline.lib.store import read_refusals
from navembed_pipeline.lib.stack_status import RUNNING, daemons_state, read_status

router = APIRouter(tags=["info"])
HEALTH_TIMEOUT_S = 5.0


@router.get("/models")
def models(services: ServicesDep) -> list[dict[str, Any]]:
    """Every model: dimensions, sample rate, loaded?, device, weights present?, licence."""
    enabled = set(services.settings.enabled_models())
    return [{**entry, "enabled": entry["name"] in enabled} for entry in services.models.describe_all()]


@router.get("/health")
async def health(services: ServicesDep, request: Request) -> dict[str, Any]:
    """``status`` is "ok" when the store and Dagster answer, the disk has room, Navidrome's database reads,
    every state file is sound, no deletions are refused, at most one Dagster daemon serves the instance and
    no vector cache is stale or rebuilding; else "degraded", with ``reasons``.

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
    settings = services.settings
    deletions, disk, navidrome, state_files, daemons = await asyncio.gather(
        asyncio.to_thread(deletion_guard_state, settings.data_dir),
        asyncio.to_thread(disk_state, settings.data_dir, settings.health_min_free_mb),
        asyncio.to_thread(navidrome_state, settings.navidrome_db, settings.path_mapping),
        asyncio.to_thread(state_files_state, settings.data_dir),
        asyncio.to_thread(daemons_state, settings.dagster_home))
    vector_cache = vector_cache_state(getattr(request.app.state, "recommending", None))
    local = (deletions, disk, navidrome, state_files, daemons, vector_cache)
    body = {
        "status": "ok" if store["ok"] and dagster["ok"] and all(section["ok"] for section in local) and all(
            p.get("state") == RUNNING for p in parts.values()) else "degraded",
        "reasons": _reasons(store=store, dagster=dagster, disk=disk, navidrome=navidrome, state_files=state_files,
                            deletions=deletions, daemons=daemons, vector_cache=vector_cache),
        "store": store,
        "dagster": dagster,
        "models": {"enabled": services.settings.enabled_models(), "loaded": services.models.loaded()},
        "socket": {"path": str(services.settings.socket_path) if services.settings.socket_path else None,
                   "listening": bool(socket and socket.listening)},
        "batch_control": services.settings.admin_token_value is not None,
        "stack": parts or None,
        "deletions": deletions,
        "disk": disk,
        "navidrome": navidrome,
        "state_files": state_files,
        "daemons": daemons,  # the Dagster daemons of this instance: more than one is not ok
        "vector_cache": vector_cache,
    }
    return body


def _reasons(**sections: dict[str, Any]) -> list[str]:
    """One line per section that is not ok: what an operator reads first."""
    reasons = []
    for name, section in sections.items():
        if section.get("ok"):
            continue
        if name == "state_files":
            reasons += list(section["broken"].values())
        elif name == "vector_cache":
            reasons += section["errors"]
        elif name == "deletions" and section.get("refused"):
            reasons += [f"deletions refused for {r['model']}: {r['reason']}" for r in section["refused"]]
        else:
            reasons.append(f"{name}: {section.get('error') or section.get('supervisor') or 'not ok'}")
    return reasons


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
