"""The Dagster UI and GraphQL at ``/dagster``, behind the admin token: an authenticated reverse proxy.

Dagster's open-source webserver has no authentication. `navembed up` runs it on a unix socket in an
owner-only directory, so nothing but this API (same account) can reach it, and this router passes
requests through only with the admin token: ``Authorization: Bearer <NAVEMBED_ADMIN_TOKEN>`` for
scripts, or a session cookie for browsers, set by ``/login`` after the token is typed in once. The
cookie holds an HMAC of the token (never the token), is HttpOnly and SameSite=Strict (no cross-site
request carries it); WebSocket upgrades (Dagster's live run logs) must also come from this origin.
"""

import asyncio
import hashlib
import hmac
import html
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from navembed_api.deps import ServicesDep
from navembed_api.errors import NotFound, Unauthorized
from navembed_api.settings import DAGSTER_PREFIX, ApiSettings

router = APIRouter(include_in_schema=False)
COOKIE = "navembed_session"
SESSION_CONTEXT = b"navembed: Dagster UI session"
PROXY_TIMEOUT_S = 120.0
MAX_LOGIN_BYTES = 4096
POLICY_VIOLATION = 1008  # WebSocket close code
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length", "cookie", "authorization"})
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>navembed: sign in</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:4em auto">
<h1>navembed</h1><p>The Dagster UI needs the admin token (<code>NAVEMBED_ADMIN_TOKEN</code>).</p>{error}
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<input type="password" name="token" autofocus size="40" aria-label="admin token">
<button type="submit">Sign in</button></form></body></html>"""


def session_value(token: str) -> str:
    """The cookie for ``token``: an HMAC, so the cookie jar never holds the token itself."""
    return hmac.new(token.encode(), SESSION_CONTEXT, hashlib.sha256).hexdigest()


def is_admin(settings: ApiSettings, headers: Any, cookies: dict[str, str]) -> bool:
    """A Bearer admin token, or the session cookie ``/login`` set; never when no token is configured."""
    expected = settings.admin_token_value
    if expected is None:
        return False
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return True
    return hmac.compare_digest(cookies.get(COOKIE, "").encode(), session_value(expected).encode())


def _safe_next(target: str) -> str:
    """Only a path of the Dagster UI is a place to go after signing in (no open redirect)."""
    return target if target.startswith(DAGSTER_PREFIX) and not target.startswith("//") else DAGSTER_PREFIX + "/"


@router.get("/login")
def login_form(next: Annotated[str, Query(max_length=2000)] = DAGSTER_PREFIX + "/") -> HTMLResponse:  # noqa: A002
    """A one-field form: the admin token."""
    return HTMLResponse(LOGIN_PAGE.format(error="", next=html.escape(_safe_next(next))))


@router.post("/login")
async def login(request: Request, services: ServicesDep) -> Response:
    """Check the typed token; on success set the session cookie and go where the user was heading."""
    raw = await request.body()
    form = parse_qs(raw[:MAX_LOGIN_BYTES].decode("utf-8", "replace"))
    token, target = (form.get("token") or [""])[0], _safe_next((form.get("next") or [""])[0])
    expected = services.settings.admin_token_value
    if expected is None or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        error = "<p style='color:#b00'>Wrong token" + ("" if expected else ": no admin token is configured") + "</p>"
        return HTMLResponse(LOGIN_PAGE.format(error=error, next=html.escape(target)), status_code=401)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(COOKIE, session_value(expected), httponly=True, samesite="strict", path="/")
    return answer


@router.get("/logout")
def logout() -> Response:
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer


@router.api_route(DAGSTER_PREFIX, methods=METHODS)
@router.api_route(DAGSTER_PREFIX + "/{path:path}", methods=METHODS)
async def dagster(request: Request, services: ServicesDep) -> Response:
    """Pass the request to the Dagster webserver on its private socket, for the admin only."""
    settings = services.settings
    if settings.dagster_socket is None:
        raise NotFound("the Dagster UI is served here only when `navembed up` runs the webserver on its "
                       f"private socket; this API uses the webserver at {settings.dagster_base_url}")
    if not is_admin(settings, request.headers, request.cookies):
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        raise Unauthorized("the Dagster UI and GraphQL need the admin token: 'Authorization: Bearer "
                           "<NAVEMBED_ADMIN_TOKEN>', or sign in at /login")
    http = services.dagster.http
    upstream = http.build_request(
        request.method, "http://dagster" + request.url.path, params=request.url.query or None,
        headers=[(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP],
        content=await request.body(), timeout=PROXY_TIMEOUT_S)
    try:
        answer = await http.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        return Response(f"the Dagster webserver is not answering ({type(exc).__name__}); the stack restarts it "
                        "if it died", status_code=503, media_type="text/plain")
    headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP]
    return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, headers=dict(headers),
                             background=BackgroundTask(answer.aclose))


@router.websocket(DAGSTER_PREFIX + "/{path:path}")
async def dagster_socket(websocket: WebSocket) -> None:
    """Dagster's GraphQL subscriptions (live run logs), for the admin, from this origin only."""
    settings: ApiSettings = websocket.app.state.services.settings
    origin = websocket.headers.get("origin")
    same_origin = origin is None or urlsplit(origin).netloc == websocket.headers.get("host")
    if settings.dagster_socket is None or not same_origin or \
            not is_admin(settings, websocket.headers, websocket.cookies):
        await websocket.close(code=POLICY_VIOLATION)
        return
    from websockets.asyncio.client import unix_connect

    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    query = f"?{websocket.url.query}" if websocket.url.query else ""
    async with unix_connect(str(settings.dagster_socket), uri=f"ws://dagster{websocket.url.path}{query}",
                            subprotocols=protocols or None) as upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _pump(websocket, upstream)


async def _pump(websocket: WebSocket, upstream: Any) -> None:
    """Relay messages both ways until either side closes."""

    async def from_browser() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await upstream.send(message["text"] if message.get("text") is not None else message["bytes"])

    async def from_dagster() -> None:
        async for message in upstream:
            await (websocket.send_text(message) if isinstance(message, str) else websocket.send_bytes(message))

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(from_dagster())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await upstream.close()
    try:
        await websocket.close()
    except RuntimeError:  # already closed by the browser
        pass
