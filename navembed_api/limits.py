"""Caps on what a client may send, for the HTTP API and the upload socket alike.

A body larger than the cap is a 413 before it is read in full; JSON is decoded strictly: nested at
most ``MAX_JSON_DEPTH`` levels (checked before parsing, since Python's parser recurses and a deep
enough document is a RecursionError), no ``NaN``/``Infinity`` or numbers that overflow to them,
and no lone surrogates (``"\\ud800"`` decodes to a string no UTF-8 writer, Milvus included, accepts).
"""

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from navembed_api.errors import ApiError, error_body, short

MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


BODY_LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not acceptable JSON (nested too deeply, NaN/Infinity, lone surrogates)",
          "content": {"application/json": {"example": error_body("invalid json: nested 40 levels deep, at most 32 "
                                                                 "are accepted")}}},
    413: {"description": "the body is larger than NAVEMBED_API_MAX_REQUEST_BYTES",
          "content": {"application/json": {"example": error_body("request body larger than the 1048576 bytes "
                                                                 "accepted")}}},
}


class InvalidInput(ApiError):
    """The body is not acceptable JSON (too deep, not JSON, not finite, not valid Unicode)."""

    status_code = 400


class PayloadTooLarge(ApiError):
    status_code = 413


def json_depth(data: bytes) -> int:
    """How deeply ``data``'s arrays and objects nest (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b'""', data)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode ``data`` strictly (see the module doc); InvalidInput says what is wrong."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = json_depth(raw)
    if depth > max_depth:
        raise InvalidInput(f"invalid json: nested {depth} levels deep, at most {max_depth} are accepted")
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidInput(f"invalid json: nested more than {max_depth} levels deep") from None
    except ValueError as exc:
        raise InvalidInput(f"invalid json: {short(str(exc), 120)}") from None
    where = lone_surrogate(value)
    if where is not None:
        raise InvalidInput(f"invalid text at {where}: it holds a lone UTF-16 surrogate (e.g. \\ud800), "
                           "which is not a character; send valid Unicode")
    return value


def lone_surrogate(value: Any, where: str = "body") -> str | None:
    """Where the first string (or key) holding a lone surrogate is, or None."""
    if isinstance(value, str):
        return None if _encodable(value) else where
    if isinstance(value, dict):
        for key, item in value.items():
            if not _encodable(key):
                return f"{where} (a key)"
            found = lone_surrogate(item, f"{where}.{short(key, 40, quote=False)}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate(item, f"{where}.{index}")
            if found:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (only finite numbers are accepted)")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {short(text, 40, quote=False)} is out of range (only finite numbers are accepted)")
    return number


class BodyLimits:
    """ASGI middleware: 413 for bodies over ``max_bytes``, 400 for JSON bodies ``parse_json`` refuses.

    The body read here is handed on unchanged, so routes parse it as usual.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, f"request body of {declared} bytes is larger than the "
                                          f"{self.max_bytes} bytes accepted")
            return
        body, more, disconnected = bytearray(), True, False
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send, 413, f"request body larger than the {self.max_bytes} bytes accepted")
                return
        if body and "json" in headers.get("content-type", "") and not disconnected:
            try:
                parse_json(bytes(body))
            except InvalidInput as exc:
                await self._refuse(send, exc.status_code, str(exc))
                return
        await self.app(scope, _replay(bytes(body), receive, disconnected), send)

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        payload = json.dumps(error_body(message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive, disconnected: bool) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent and not disconnected:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
