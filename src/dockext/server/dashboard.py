"""The dashboard origin: login, the dashboard page and its JSON API."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from .. import permissions
from ..devmode import DevSettings
from ..engine import Engine
from ..errors import DockextError, reason
from ..installer import Installer
from ..store import Record
from . import docker_api, fsapi, marketplace_api
from .security import TooLarge, error_response, harden, read_body, read_json, token_ok, too_large
from .state import HostState

__all__ = ["STATIC", "create"]

STATIC = Path(str(resources.files("dockext") / "static"))
PUBLIC_PATHS = {"/login", "/static/login.css", "/favicon.ico"}
#: a login form carries one token (48 hex digits): a body over this is not one, and is not read
MAX_LOGIN_BODY = 4096
ICON_TYPES = {
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".ico": "image/x-icon",
}
QUERY_RE = re.compile(r"^\?[^#\s]*$")


def cookie_name(state: HostState) -> str:
    return f"dockext-{state.port}"


def _cookie_values(header: str, name: str) -> list[str]:
    values = []
    for pair in header.split(";"):
        key, eq, value = pair.strip().partition("=")
        if eq and key == name:
            values.append(value.strip().strip('"'))
    return values


def _sessions(request: HTTPConnection, state: HostState) -> list[str]:
    """The session cookies a request carries: every one of our name, not only the one a dict of cookies keeps (an
    extension's page is same-site and may set ``dockext-<port>=x; Domain=dockext.localhost``, which the browser
    then sends too)."""
    return _cookie_values(request.headers.get("cookie", ""), cookie_name(state))


class AuthGate:
    """Every dashboard route needs the session cookie (or the token) except the login page; the API needs the
    session's key as well.

    ``?token=`` on a GET logs in: the cookie is set and the browser is sent to the same URL without the
    token, so it does not stay in the address bar or the history, with the session's key in the fragment
    (``#dockext-key=``), which the dashboard's script keeps in the origin's ``localStorage`` and sends with
    every API call (``X-Dockext-Key``, or ``?key=`` where a browser sets no header: EventSource, WebSocket,
    sendBeacon). A cookie is sent to every port of its host: a process listening on another port of
    ``dockext.localhost`` (another user's, or one an extension's backend publishes) could be sent the cookie by
    an extension's page, and replay it; without the key (per origin, port included) it opens no API (found in a
    security review). Mutating API calls also need the ``X-Dockext`` header and, when the browser sends one, a
    same-origin ``Origin`` (CSRF).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], state: HostState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No header can be set on a browser WebSocket: the cookie and a same-origin Origin are required
            ws = WebSocket(scope, receive, send)
            origin = ws.headers.get("origin")
            if not self._authenticated(ws, api=True) or origin not in self.state.dashboard_origins():
                await ws.close(code=1008)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = request.url.path
        token = request.query_params.get("token")
        if token is not None and request.method == "GET":
            if token_ok(token, self.state.token):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                # one leading slash: "//evil.test/" as a Location is another site (CVE-2023-39968's class)
                target = "/" + path.lstrip("/\\") + ("?" + urlencode(rest) if rest else "")
                response: Response = self._login(target)
            else:
                response = login_page(self.state, "That token is not valid.", status=401)
            await harden(response)(scope, receive, send)
            return
        if path in PUBLIC_PATHS or self._authenticated(request, api=_needs_key(request)):
            if request.method not in ("GET", "HEAD") and path.startswith("/api/") and not self._csrf_ok(request):
                response = error_response(status=403, type_="Forbidden", message="cross-site request refused")
                await harden(response)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if path.startswith("/api/"):
            response = error_response(status=401, type_="Unauthorized", message="log in first")
        else:
            response = RedirectResponse("/login", status_code=303)
        await harden(response)(scope, receive, send)

    def _authenticated(self, request: HTTPConnection, *, api: bool) -> bool:
        """The token (``Authorization: Bearer``), or a valid session cookie: with its key too when ``api``."""
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "token") and token_ok(value.strip(), self.state.token):
            return True
        key = request.headers.get(KEY_HEADER) or request.query_params.get("key") or ""
        for session in _sessions(request, self.state):
            if self.state.sessions.valid(session) and (not api or token_ok(key, self.state.sessions.key(session))):
                return True
        return False

    def _csrf_ok(self, request: Request) -> bool:
        if request.url.path.endswith("/close") and request.method == "POST":
            # navigator.sendBeacon cannot set headers: the Origin check alone guards this idempotent call
            origin = request.headers.get("origin")
            return origin is None or origin in self.state.dashboard_origins()
        if request.headers.get("x-dockext") != "1":
            return False
        origin = request.headers.get("origin")
        return origin is None or origin in self.state.dashboard_origins()

    def _login(self, target: str) -> Response:
        """A new session: its cookie, and a redirect to ``target`` with its key in the fragment (never sent to a
        server, read by the dashboard's script)."""
        session = self.state.sessions.issue()
        response = RedirectResponse(f"{target}#dockext-key={self.state.sessions.key(session)}", status_code=303)
        response.set_cookie(
            cookie_name(self.state), session, httponly=True, samesite="strict", path="/", secure=self.state.tls,
            max_age=self.state.sessions.max_age,
        )
        return response


#: the header that carries the session's key (AuthGate)
KEY_HEADER = "x-dockext-key"
ICON_PATH = re.compile(r"/api/extensions/[^/]+/icon")


def _needs_key(request: Request) -> bool:
    """The API needs the session's key; pages, their files and the icons (``<img>``, which sends no header) the
    cookie alone."""
    path = request.url.path
    return path.startswith("/api/") and not (request.method in ("GET", "HEAD") and ICON_PATH.fullmatch(path))


#: why the dashboard sent the browser to the login page (``/login?why=``): fixed texts, never the query's own
LOGIN_REASONS = {
    "cookies": "Your browser held more cookies for this site than dockext reads (an extension's page can set them "
               "for the dashboard's domain), so dockext had it delete them, your session's too. Log in again.",
}


def login_page(state: HostState, error: str | None = None, status: int = 200) -> HTMLResponse:
    text = (STATIC / "login.html").read_text()
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return harden(HTMLResponse(text.replace("<!--ERROR-->", message), status_code=status), csp=state.dashboard_csp)


def create(
    state: HostState, lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]]
) -> Callable[[Scope, Receive, Send], Any]:
    async def index(request: Request) -> Response:
        response = FileResponse(STATIC / "dashboard" / "index.html")
        response.headers["Cache-Control"] = "no-store"  # after a logout, not even from the browser's cache
        return harden(response, csp=state.dashboard_csp)

    async def login_get(request: Request) -> Response:
        return login_page(state, LOGIN_REASONS.get(request.query_params.get("why", "")))

    async def login_post(request: Request) -> Response:
        body = (await read_body(request, MAX_LOGIN_BODY)).decode(errors="replace")
        token = (parse_qs(body).get("token") or [""])[0].strip()
        if not token_ok(token, state.token):
            return login_page(state, "That token is not valid.", status=401)
        return harden(gate._login("/"))

    async def logout(request: Request) -> Response:
        """Ends the sessions this browser holds, for good (a copy of the cookie is refused too), and drops its
        cookie. Streams already open (a terminal, events) run on until they close."""
        for session in _sessions(request, state):
            state.sessions.revoke(session)
        response = harden(JSONResponse({"loggedOut": True}))
        response.delete_cookie(cookie_name(state), path="/", httponly=True, samesite="strict", secure=state.tls)
        return response

    async def static(request: Request) -> Response:
        rel = request.path_params["path"]
        parts = rel.split("/")
        if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            return harden(Response("Not found", status_code=404))
        path = STATIC.joinpath(*parts)
        if not path.is_file():
            return harden(Response("Not found", status_code=404))
        response = FileResponse(path)
        response.headers["Cache-Control"] = "no-cache"
        return harden(response, csp=state.dashboard_csp)

    async def list_extensions(request: Request) -> Response:
        state.refresh()  # a CLI may have installed something a moment ago
        states = await asyncio.to_thread(_backend_states, state)
        dev = state.dev_settings()
        grants: dict[str, permissions.Grants] | None
        try:
            grants = permissions.load(state.layout)
        except DockextError:
            grants = None  # unreadable: `dockext permissions` says why; docker and host calls are refused meanwhile
        listed = [
            {**_extension_json(state, r, states, dev.get(r.key)), **_access_json(state, r, grants)}
            for r in state.records()
        ]
        # its files are being swapped: no icon URL (the tab shows the letter icon meanwhile)
        listed += [{**_extension_json(state, r, _Backends()), "icon": None, "updating": True} for r in state.updating]
        listed.sort(key=lambda e: (e["title"].lower(), e["key"]))
        return harden(JSONResponse(listed))

    async def set_permissions(request: Request) -> Response:
        """``PUT {"docker"?, "host"?, "web"?, "engine"?, "system"?, "network"?: bool}``: what ``dockext
        permissions set`` does, from the dashboard; a backend grant that changes what the backend runs with
        recreates it before answering."""
        record = state.record(request.path_params["key"])
        if record is None:
            return harden(error_response(status=404, type_="NotInstalled", message="no such extension"))
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body or any(
            k not in permissions.NAMES or not isinstance(v, bool) for k, v in body.items()
        ):
            return harden(error_response(status=400, type_="BadRequest",
                                         message='expected {"docker"?, "host"?, "engine"?, "system"?, "network"?: '
                                                 'true|false}'))
        installer = Installer(state.layout, engine=Engine(state.engine.target))
        try:  # the store's lock may be held by an install, and a backend may be recreated: off the event loop
            grants, recreated = await asyncio.to_thread(installer.set_permissions, record.key, **body)
        except DockextError as exc:
            return harden(error_response(exc))
        finally:
            state.refresh()  # the grants file (and maybe the record) changed: the dashboards are told
        return harden(JSONResponse({"permissions": grants.to_json(), "recreated": recreated}))

    async def icon(request: Request) -> Response:
        record = state.record(request.path_params["key"])
        if record is None or not record.icon:
            return harden(Response("Not found", status_code=404))
        path = state.layout.extension_dir(record.key) / record.icon
        if not path.is_file():  # deleted behind dockext's back: the dashboard shows its placeholder
            return harden(Response("Not found", status_code=404))
        media = ICON_TYPES.get(path.suffix, "application/octet-stream")
        response = FileResponse(path, media_type=media)
        # an SVG icon is extension content: never let it run script, even when opened directly
        return harden(response, csp="default-src 'none'; style-src 'unsafe-inline'; sandbox")

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            seen = -1
            while True:
                if state.generation != seen:
                    seen = state.generation
                    data = json.dumps({"generation": seen, "boot": state.boot})
                    yield f"event: extensions\ndata: {data}\n\n".encode()
                try:
                    await asyncio.wait_for(state.changed.wait(), timeout=15)
                except TimeoutError:
                    yield b": ping\n\n"

        response = StreamingResponse(stream(), media_type="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        return harden(response)

    async def open_instance(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            return error_response(status=400, type_="BadRequest", message="expected a JSON body")
        key = body.get("extension") if isinstance(body, dict) else None
        state.refresh()
        record = state.record(str(key)) if key else None
        if record is None or record.ui is None:
            return error_response(status=404, type_="NotInstalled", message=f"no extension UI {key!r}")
        query = body.get("query") or ""
        if not isinstance(query, str) or (query and not QUERY_RE.match(query)):
            return error_response(status=400, type_="BadRequest", message="query must look like ?a=b")
        theme = body.get("theme")
        if theme not in (None, "light", "dark"):
            return error_response(status=400, type_="BadRequest", message="theme must be light, dark or null")
        inst = state.open_instance(record, request.scope["dockext.origin"], theme=theme)
        origin = state.extension_origin(record)
        url = f"{origin}/i/{inst.cap}/{record.ui.src}{query}"
        return harden(JSONResponse({"instance": inst.id, "url": url, "origin": origin}, status_code=201))

    async def close_instance(request: Request) -> Response:
        inst = state.instance_ids.get(request.path_params["id"])
        if inst is not None:
            await state.close_instance(inst)
        return harden(Response(status_code=204))

    async def engine_info(request: Request) -> Response:
        """Which engine this server manages, as resolved at start (no request to the engine)."""
        target = state.engine.target
        try:
            remote: bool | None = state.engine.remote
        except DockextError:
            remote = None
        return harden(JSONResponse({"host": target.url, "description": target.describe(), "source": target.source,
                                    "tls": target.tls, "remote": remote}))

    async def favicon(request: Request) -> Response:
        return harden(Response(status_code=204))

    routes = [
        Route("/", index),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/favicon.ico", favicon),
        Route("/static/{path:path}", static),
        Route("/api/extensions", list_extensions),
        Route("/api/extensions/{key}/icon", icon),
        Route("/api/extensions/{key}/permissions", set_permissions, methods=["PUT"]),
        Route("/api/events", events),
        Route("/api/engine", engine_info),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/ui-instances", open_instance, methods=["POST"]),
        Route("/api/ui-instances/{id}", close_instance, methods=["DELETE"]),
        Route("/api/ui-instances/{id}/close", close_instance, methods=["POST"]),
        *docker_api.routes(state),
        *fsapi.routes(state),
        *marketplace_api.routes(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={TooLarge: too_large})
    gate = AuthGate(app, state)
    return gate


@dataclass
class _Backends:
    """(running, total) containers per compose project of extension backends (none if the engine is down), and
    the engine's ID (empty when unknown) and address, to tell backends created on another engine."""

    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    engine: str = ""
    engine_at: str = ""
    unreachable: str = ""  # why the engine could not be asked: the states are unknown, not "stopped"

    def get(self, project: str, default: tuple[int, int]) -> tuple[int, int]:
        return self.counts.get(project, default)


def _backend_states(state: HostState) -> _Backends:
    out = _Backends()
    try:
        containers = state.engine.backend_containers()
        out.engine = state.engine.identity()
        out.engine_at = state.engine.target.describe()
    except Exception as exc:  # noqa: BLE001 - the list must render even when the engine is gone
        out.unreachable = reason(exc)
        return out
    for c in containers:
        project = (c.get("Labels") or {}).get("com.docker.compose.project", "")
        running, total = out.get(project, (0, 0))
        out.counts[project] = (running + (c.get("State") == "running"), total + 1)
    return out


def _access_json(state: HostState, r: Record, grants: dict[str, permissions.Grants] | None) -> dict[str, Any]:
    """The user's grants (``dockext permissions``; null if unreadable) and what the backend asked for at install
    (null if it was installed before dockext recorded it)."""
    asked = permissions.read_requested(state.layout.extension_dir(r.key))
    return {
        "permissions": grants.get(r.key, permissions.DEFAULT).to_json() if grants is not None else None,
        "requested": asked.to_json() if asked else None,
        "withheld": list(r.vm.withheld) if r.vm else [],  # backend grants its running backend was made without
    }


def _extension_json(
    state: HostState, r: Record, backends: _Backends, dev: DevSettings | None = None
) -> dict[str, Any]:
    vm = None
    if r.vm is not None:
        running, total = backends.get(r.vm.project, (0, 0))
        # created on another engine than the one reached now (DOCKER_HOST or the context changed): where it is
        elsewhere = r.vm.engine_at or r.vm.engine if r.vm.elsewhere(backends.engine, backends.engine_at) else None
        vm = {"running": running, "total": total, "elsewhere": elsewhere, "unknown": backends.unreachable or None}
    return {
        "id": r.id,
        "key": r.key,
        "title": r.title,
        "provider": r.provider,
        "version": r.version,
        "image": r.image,
        "imageId": r.image_id,  # changes when the extension is updated (the dashboard reloads its open tab)
        "icon": f"/api/extensions/{r.key}/icon" if r.icon else None,
        "ui": {"title": r.ui.title} if r.ui else None,
        "vm": vm,
        "host": {"binaries": list(r.host_binaries)},
        "updating": False,  # True while an update replaces it: listed (its old version), but not served
        "dev": {"uiSource": dev.ui_source, "debug": dev.debug} if dev else None,  # `dockext dev` settings
    }


