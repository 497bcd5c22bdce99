"""The Unix-socket upload endpoint Navidrome's Go server talks to.

Framing is the original's: one JSON request per connection, answered with one JSON line; the Go
client half-closes after writing, but a client that keeps the connection open and ends each
request with a newline gets one answer line per request line. Requests are capped in size,
idle clients are dropped, many clients are served at once, and at most ``workers`` requests
embed at a time (the rest wait their turn). The socket is created mode 0660 (owner and group:
run navembed in Navidrome's group).
"""

import asyncio
import contextlib
import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navembed_api.errors import error_body, status_of
from navembed_api.limits import MAX_JSON_DEPTH, InvalidInput, json_depth, parse_json
from navembed_pipeline.lib.errors import NavembedError

LOGGER = logging.getLogger("navembed.api.socket")
SOCKET_MODE = 0o660
READ_CHUNK = 64 * 1024
SKIP_LIMIT_FACTOR = 16  # an oversized request is read (and dropped) up to 16x the limit before answering


class UploadSocketServer:
    """Serves ``handler(request) -> answer`` on a Unix socket (an asyncio server)."""

    def __init__(self, path: Path, handler: Callable[[Any], dict[str, Any]], *, max_request_bytes: int,
                 idle_timeout: float, workers: int) -> None:
        self.path = Path(path)
        self.handler = handler
        self.max_request_bytes = max_request_bytes
        self.idle_timeout = idle_timeout
        self._workers = asyncio.Semaphore(workers)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        """Bind the socket (replacing a stale socket file, never any other file) and serve."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise NavembedError(f"{self.path} exists and is not a socket; choose another socket_path")
            if await _answers(self.path):
                raise NavembedError(f"another server already listens on {self.path}")
            self.path.unlink()
        old_umask = os.umask(0o117)  # the socket is born 0660: no window where others can connect
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, path=str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        LOGGER.info("upload socket listening on %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._conversation(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # one broken client must never take the server down
            LOGGER.exception("upload socket client failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests until the client is done: EOF, a request without newline, or an error."""
        buffer = bytearray()
        while True:
            raw = await self._next_request(reader, buffer)
            if raw is None:
                return
            answer = _error(raw.error) if raw.error else await self._answer(raw.data)
            writer.write(json.dumps(answer).encode("utf-8") + b"\n")
            await writer.drain()
            if not raw.more:
                return

    async def _next_request(self, reader: asyncio.StreamReader, buffer: bytearray) -> "_Raw | None":
        """The next request: a line, a complete JSON object, or what came before EOF; None when done."""
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                if line.strip():
                    return _Raw(line, more=True)
                continue
            if len(buffer) > self.max_request_bytes:
                buffer.clear()
                await self._skip_rest(reader)  # read it all, so the client (still writing) gets the answer
                return _Raw(b"", error=f"request larger than {self.max_request_bytes} bytes")
            if buffer.strip() and _is_json_object(buffer):  # a client that neither ends the line nor closes
                data = bytes(buffer)
                buffer.clear()
                return _Raw(data)
            try:
                chunk = await asyncio.wait_for(reader.read(READ_CHUNK), timeout=self.idle_timeout)
            except TimeoutError:
                if buffer.strip():
                    return _Raw(b"", error=f"incomplete request: nothing more received for {self.idle_timeout:g} s")
                return None
            if not chunk:  # EOF: whatever is buffered is the (one) request
                data = bytes(buffer)
                buffer.clear()
                return _Raw(data) if data.strip() else None
            buffer += chunk

    async def _skip_rest(self, reader: asyncio.StreamReader) -> None:
        """Discard input up to the end of the line or the connection, within a time and size bound."""
        budget = SKIP_LIMIT_FACTOR * self.max_request_bytes
        while budget > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(READ_CHUNK), timeout=self.idle_timeout)
            except TimeoutError:
                return
            if not chunk or b"\n" in chunk:
                return
            budget -= len(chunk)

    async def _answer(self, data: bytes) -> dict[str, Any]:
        if len(data) > self.max_request_bytes:
            return _error(f"request larger than {self.max_request_bytes} bytes")
        try:
            request = parse_json(data)  # depth-capped, finite numbers, valid Unicode only
        except InvalidInput as exc:
            return _error(str(exc))
        if not isinstance(request, dict):
            return _error("invalid request: expected a JSON object")
        async with self._workers:
            try:
                return await asyncio.to_thread(self.handler, request)
            except NavembedError as exc:
                level = logging.WARNING if status_of(exc) >= 500 else logging.INFO
                LOGGER.log(level, "upload refused: %s", exc)
                return _error(str(exc))
            except Exception as exc:  # reported to the client, logged with its trace here
                LOGGER.exception("upload failed")
                return _error(f"internal error: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class _Raw:
    """Bytes of one request (or why none could be read); ``more``: the client may send another."""

    data: bytes
    error: str | None = None
    more: bool = False


def _is_json_object(buffer: bytearray) -> bool:
    """Whether the buffer holds a whole request; one nested too deeply is "whole" (it is refused)."""
    if json_depth(bytes(buffer)) > MAX_JSON_DEPTH:
        return True
    try:
        return isinstance(json.loads(buffer), dict)
    except (ValueError, RecursionError):
        return False


def _error(message: str) -> dict[str, str]:
    return error_body(message)  # capped: an error never echoes a whole request back


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout=1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
