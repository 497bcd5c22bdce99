"""The FastAPI app: ``create_app(settings)`` with a lifespan that owns every client and server."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from navembed_api.batch import BatchControl, weights_checker
from navembed_api.dagster_client import DagsterClient
from navembed_api.deps import Services
from navembed_api.errors import install_error_handlers
from navembed_api import recommender
from navembed_api.model_pool import ModelPool
from navembed_api.rename import Renamer
from navembed_api.limits import BODY_LIMIT_RESPONSES, BodyLimits
from navembed_api.routes import batch, dagster_ui, health, plugin, recommend, text, tracks
from navembed_api.settings import ApiSettings
from navembed_api.socket_server import UploadSocketServer
from navembed_api.store_handle import StoreHandle
from navembed_api.uploads import UploadService
from navembed_pipeline.lib.duplicates import FingerprintStore

LOGGER = logging.getLogger("navembed.api")
DESCRIPTION = """The API Navidrome talks to: re-embed control over Dagster (`/batch/*`, admin token),
text embeddings (`/embed_text`), model and health information. Uploads are embedded through the Unix
socket (see README). Every error is `{"status": "error", "message": ...}`."""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The app for ``settings`` (read from the environment when None)."""
    settings = settings or ApiSettings()
    app = FastAPI(title="navembed", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan(settings))
    install_error_handlers(app)
    app.add_middleware(BodyLimits, max_bytes=settings.api_max_request_bytes)
    for router in (batch.router, text.router, health.router, recommend.router, tracks.router, plugin.router,
                   dagster_ui.router):
        app.include_router(router, responses=BODY_LIMIT_RESPONSES)  # BodyLimits answers these on any route
    return app


def _lifespan(settings: ApiSettings):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings)
        app.state.services = services
        if settings.admin_token_value is None:
            LOGGER.warning("NAVEMBED_ADMIN_TOKEN is not set: /batch/* refuses every request until it is")
        recommending = await recommender.start(services)  # built now, not on the first request
        app.state.recommending = recommending
        if recommending is not None:
            app.state.recommender, app.state.sonic = recommending.engine, recommending.sonic
        try:
            if services.socket is not None:
                await services.socket.start()
            yield
        finally:
            await recommender.stop(recommending)
            await close_services(services)

    return lifespan


def open_services(settings: ApiSettings) -> Services:
    dagster = DagsterClient(settings.dagster_base_url, timeout=settings.dagster_timeout_seconds,
                            public_url=settings.dagster_public_url, transport=dagster_transport(settings))
    models = ModelPool(settings.model_options)
    store = StoreHandle(uri=settings.milvus_uri, token=settings.milvus_token, data_dir=settings.milvus_data_dir,
                        failures_db=settings.failures_db)
    services = Services(settings=settings, dagster=dagster, models=models, store=store,
                        batch=BatchControl(dagster, models_dir_check=weights_checker(settings.weights_dir)))
    if settings.socket_path is not None:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        uploads = UploadService(roots=settings.allowed_roots, models=models, model_names=settings.enabled_models(),
                                store=store, renamer=Renamer(timeout=settings.rename_timeout_seconds, api_key=key),
                                fingerprints=FingerprintStore(settings.fingerprints_db),
                                tag_names=recommender.tag_vocabulary(settings.model_options))
        services.socket = UploadSocketServer(settings.socket_path, uploads.handle,
                                             max_request_bytes=settings.socket_max_request_bytes,
                                             idle_timeout=settings.socket_idle_timeout_seconds,
                                             workers=settings.socket_workers)
    return services


def dagster_transport(settings: ApiSettings) -> httpx.AsyncBaseTransport | None:
    """Over the webserver's private unix socket when it has one (`navembed up`), else plain TCP."""
    return httpx.AsyncHTTPTransport(uds=str(settings.dagster_socket)) if settings.dagster_socket else None


async def close_services(services: Services) -> None:
    if services.socket is not None:
        await services.socket.stop()
    await services.batch.aclose()
    await services.dagster.aclose()
    services.models.close()
    services.store.close()


def serve(settings: ApiSettings) -> None:
    """Run the API with uvicorn until interrupted (``navembed api``)."""
    import uvicorn

    single_threaded_blas()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


def single_threaded_blas() -> None:
    """One BLAS thread per API process: its products are small (a request's candidates against a seed), and
    on 2 cores OpenBLAS's own threads made a 117 x 327 product take 100 ms instead of 0.8 ms when the CPU was
    busy. Requests run side by side on uvicorn's thread pool instead (measured: benchmarks/plugin_profile)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
