"""The API's errors and the one place they become HTTP answers: ``{"status": "error", "message": ...}``.

API-specific errors extend navembed's ``NavembedError`` family; lib errors map by type too
(a missing file is the caller's 4xx, an unreachable store a 503), so routes simply raise.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from navembed_pipeline.lib.errors import (
    AudioDecodeError,
    ConfigError,
    CueSheetError,
    DeviceError,
    LibraryError,
    ModelLoadError,
    NavembedError,
    StoreError,
    TextNotSupportedError,
    WeightsMissingError,
)

LOGGER = logging.getLogger("navembed.api")
MAX_MESSAGE_CHARS = 500


class ApiError(NavembedError):
    """An error whose HTTP status the raiser knows."""

    status_code = 400


class Unauthorized(ApiError):
    """Missing or wrong admin bearer token."""

    status_code = 401


class ControlDisabled(ApiError):
    """The admin endpoints are off because no admin token is configured."""

    status_code = 503


class NotFound(ApiError):
    status_code = 404


class RunNotFound(NotFound):
    """Dagster does not know the run."""


class Conflict(ApiError):
    """The request clashes with what is running (e.g. a second re-embed)."""

    status_code = 409


class Unprocessable(ApiError):
    """Well-formed but impossible: an unknown model, a model without a text tower.

    ``details`` become fields of the error body beside ``message`` (e.g. the tag ``vocabulary``)."""

    status_code = 422

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details


class OrchestratorUnavailable(ApiError):
    """The Dagster webserver cannot be reached."""

    status_code = 503


class OrchestratorError(ApiError):
    """Dagster answered with an error."""

    status_code = 502


class TerminateRefused(OrchestratorError):
    """Dagster cannot terminate the run yet (e.g. it is still STARTING)."""


class StoreUnavailable(ApiError):
    """The vector store does not answer (e.g. Milvus is being restarted)."""

    status_code = 503


class LibraryUnavailable(ApiError):
    """Navidrome's database cannot be read now (missing, not a database, locked)."""

    status_code = 503


class DiskFull(ApiError):
    """The data dir's disk is (nearly) full: a run could not write its vectors, logs and events."""

    status_code = 503


_LIB_STATUS: tuple[tuple[type[NavembedError], int], ...] = (
    (TextNotSupportedError, 422),
    (ConfigError, 422),
    (AudioDecodeError, 422),
    (CueSheetError, 422),
    (WeightsMissingError, 503),
    (DeviceError, 503),
    (ModelLoadError, 500),
    (StoreError, 503),
    (LibraryError, 503),
)


def status_of(exc: NavembedError) -> int:
    """The HTTP status for a navembed error."""
    if isinstance(exc, ApiError):
        return exc.status_code
    for kind, status in _LIB_STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def short(text: object, limit: int = 80, *, quote: bool = True) -> str:
    """``text`` for an error message: at most ``limit`` characters of it, quoted, with its length if cut.

    Error messages never echo a whole input back (a 50 MB id must not come back as 50 MB).
    """
    value = str(text)
    cut = value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates, escaped
    shown = repr(cut) if quote else cut
    return shown if len(value) <= limit else f"{shown}… ({len(value)} characters)"


def error_body(message: str) -> dict[str, str]:
    """The one error shape; a message is capped at ``MAX_MESSAGE_CHARS``."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f"… ({len(message)} characters)"
    return {"status": "error", "message": message.encode("utf-8", "backslashreplace").decode("utf-8")}


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the one error shape."""

    @app.exception_handler(NavembedError)
    async def _navembed(request: Request, exc: NavembedError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            LOGGER.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        body = {**error_body(str(exc)), **getattr(exc, "details", {})}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(validation_message(exc.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        LOGGER.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}"), status_code=500)


def validation_message(errors: list[dict]) -> str:
    """One readable line per invalid field: ``body.models.0: Input should be a valid string``."""
    parts = []
    for error in errors:
        where = ".".join(short(p, 40, quote=False) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "invalid request: " + "; ".join(parts)
