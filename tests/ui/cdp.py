"""A headless chromium driven over the Chrome DevTools Protocol: navigate, type, read the page, screenshot.

Just what a test needs to act like a person in a real browser (cookies, redirects, the SPA's own fetches
and WebSockets all as chromium does them), with no driver package: chromium's remote-debugging
WebSocket and the ``websockets`` client the project already uses.
"""

import base64
import itertools
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.ui.test_dagster_ui import CHROMIUM_FLAGS

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0


class Browser:
    """One chromium with one tab; a context manager that stops chromium and removes its profile."""

    def __init__(self, executable: str, *, width: int = 1600, height: int = 1000) -> None:
        # chromium's helper processes may still write into the profile as it exits: removing it is best effort
        self._profile = tempfile.TemporaryDirectory(prefix="navembed-cdp-", ignore_cleanup_errors=True)
        self._process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._debugging_port()
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self._socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        except BaseException:
            self._stop_chromium()
            raise
        self._ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _debugging_port(self) -> int:
        marker = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if marker.is_file() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            if self._process.poll() is not None:
                raise AssertionError(f"chromium exited with code {self._process.returncode} while starting")
            time.sleep(0.1)
        raise AssertionError("chromium did not open its debugging port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events meanwhile are dropped)."""
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while time.monotonic() < deadline:
            message = json.loads(self._socket.recv(timeout=CALL_TIMEOUT_S))
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
        raise AssertionError(f"{method}: no answer within {CALL_TIMEOUT_S} s")

    def go(self, url: str) -> None:
        """Navigate the tab to ``url`` (redirects are followed as chromium follows them)."""
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, what: str, timeout: float = 90.0) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except AssertionError:  # the page is between two documents
                value = None
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{what} did not happen within {timeout} s; the page shows: {self.text()[:1500]!r}")

    def text(self) -> str:
        """The page's visible text."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._socket.close()
        finally:
            self._stop_chromium()

    def _stop_chromium(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._profile.cleanup()
