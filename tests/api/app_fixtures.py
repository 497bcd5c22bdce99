"""Helpers for the API tests: settings in a temporary directory and a running app."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from navembed_api.dagster_client import DagsterClient, SensorTick
from navembed_api.main import create_app
from navembed_api.settings import ApiSettings
from navembed_pipeline.stack import free_port

TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def nowhere_url() -> str:
    """An http URL where nothing listens (a port just freed)."""
    return f"http://127.0.0.1:{free_port()}"


def api_settings(tmp: Path, *, milvus_uri: str, **overrides: Any) -> ApiSettings:
    """Settings confined to ``tmp``: no upload socket, dsp only, Dagster nowhere, an admin token.

    ``milvus_uri`` is required: without one the API would start a (detached) Milvus Lite server.
    """
    values: dict[str, Any] = {"data_dir": tmp / "data", "milvus_uri": milvus_uri, "socket_path": None, "models": "dsp",
                              "admin_token": TOKEN, "dagster_url": nowhere_url(), "dagster_timeout_seconds": 2.0,
                              "models_dir": tmp / "no-models"}
    values.update(overrides)
    return ApiSettings(**values)


@contextmanager
def running_app(settings: ApiSettings) -> Iterator[TestClient]:
    """The app with its lifespan running (clients, models, socket) for the duration."""
    with TestClient(create_app(settings)) as client:
        yield client


def latest_sensor_tick(dagster_url: str, sensor: str = "library_change_sensor") -> SensorTick | None:
    """The latest tick of ``sensor`` (for ``reembed_job``) on a real stack's webserver, asked with the admin token."""
    async def ask() -> SensorTick | None:
        client = DagsterClient(dagster_url, headers=ADMIN)
        try:
            return await client.latest_sensor_tick(sensor, job_name="reembed_job")
        finally:
            await client.aclose()

    return asyncio.run(ask())
