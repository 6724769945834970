"""An extension's own origin: its UI files, the injected SDK, exec, and the proxy to its backend.

Every path is ``/i/<cap>/...``. The router already matched the ``Host`` to an installed extension; here the
capability must name a live UI instance *of that same extension*. Identity therefore comes from the
server's own records, never from anything the page sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .. import execution
from ..errors import BackendNotReady, DockextError
from ..store import Record
from . import docker_api, streams
from .security import error_response, harden
from .state import HostState, Instance

__all__ = ["create"]

SDK_DIR = Path(str(resources.files("dockext") / "static" / "sdk"))
HEAD_RE = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
HTML_RE = re.compile(rb"<html(\s[^>]*)?>", re.IGNORECASE)
DOCTYPE_RE = re.compile(rb"^\s*<!doctype[^>]*>", re.IGNORECASE)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection",
}
NOT_FORWARDED = HOP_BY_HOP | {"host", "cookie", "origin", "referer", "x-dockext", "content-length"}
MAX_BODY = 64 << 20
BUFFERED_RESPONSE = 256 << 10  # backend answers up to this size (with a Content-Length) are sent in one piece
MAX_EXEC_REQUEST = 1 << 20
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("image/svg+xml", ".svg")


@cache
def _sdk_source() -> str:
    return (SDK_DIR / "themes.js").read_text() + "\n" + (SDK_DIR / "ddclient.js").read_text()


def create(state: HostState) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _websocket(state, WebSocket(scope, receive, send))
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        record: Record = scope["dockext.record"]
        response = await _dispatch(state, record, request)
        # Chromium rejects IPv6 literals in frame-ancestors (and logs it on every page): leave them out
        frame_ancestors = " ".join(o for o in state.dashboard_origins() if "[" not in o)
        response.headers["Content-Security-Policy"] = f"frame-ancestors {frame_ancestors}"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        await harden(response)(scope, receive, send)

    return app


async def _dispatch(state: HostState, record: Record, request: Request) -> Response:
    found = _instance(state, record, request.url.path)
    if found is None:
        return Response("This extension view has been closed. Reopen the tab.", status_code=404)
    inst, rest = found
    if rest == "__dockext__/ddclient.js":
        return _sdk(state, inst)
    if rest == "__dockext__/exec":
        return await _exec(state, inst, request)
    if rest == "__dockext__/vm" or rest.startswith("__dockext__/vm/"):
        return await _proxy(state, inst, request)
    if rest.startswith("__dockext__/docker/"):
        if request.headers.get("x-dockext") != "1":
            return error_response(status=403, type_="Forbidden", message="missing X-Dockext header")
        return await docker_api.for_extension(state, inst, request, rest[len("__dockext__/docker/"):])
    if rest.startswith("__dockext__/"):
        return Response("Not found", status_code=404)
    if request.method not in ("GET", "HEAD"):
        return Response("Method not allowed", status_code=405)
    return _static(inst, rest, request)


def _instance(state: HostState, record: Record, path: str) -> tuple[Instance, str] | None:
    parts = path.split("/", 3)  # ["", "i", cap, rest]
    if len(parts) < 3 or parts[1] != "i":
        return None
    inst = state.instances.get(parts[2])
    if inst is None or inst.record.origin_slug != record.origin_slug:
        return None
    return inst, parts[3] if len(parts) > 3 else ""


async def _websocket(state: HostState, ws: WebSocket) -> None:
    """WebSockets on an extension origin: the capability, and an Origin equal to this extension's own."""
    record: Record = ws.scope["dockext.record"]
    found = _instance(state, record, ws.url.path)
    if found is None or ws.headers.get("origin") != state.extension_origin(record):
        await ws.close(code=1008)
        return
    inst, rest = found
    if rest == "__dockext__/stream":
        await streams.handle(state, inst, ws)
        return
    await ws.close(code=1008)


def _sdk(state: HostState, inst: Instance) -> Response:
    config = json.dumps(state.config_for(inst))
    body = f"window.__dockextConfig = {config};\n{_sdk_source()}"
    response = Response(body, media_type="text/javascript")
    response.headers["Cache-Control"] = "no-store"
    return response


def _static(inst: Instance, rest: str, request: Request) -> Response:
    ui = inst.record.ui
    assert ui is not None
    if rest == "":
        base = f"/i/{inst.cap}/{ui.src}"
        return RedirectResponse(base + (f"?{request.url.query}" if request.url.query else ""), status_code=307)
    root = inst.ext_dir / "ui"
    path = _resolve(root, rest)
    if path is not None and path.is_dir():
        path = _resolve(root, rest.rstrip("/") + "/index.html")
    if path is None or not path.is_file():
        return Response("Not found", status_code=404)
    if path.suffix.lower() in (".html", ".htm"):
        return _html(inst, path)
    response = FileResponse(path)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _resolve(root: Path, rest: str) -> Path | None:
    """The file ``rest`` names under ``root``, or None if it could leave it (``..``, links, odd bytes)."""
    parts = rest.split("/")
    if any(p in (".", "..") or "\\" in p or "\0" in p for p in parts):
        return None
    parts = [p for p in parts if p]
    real_root = os.path.realpath(root)
    candidate = os.path.join(real_root, *parts)
    # realpath == the plain join means no component is a symlink (one planted after install included)
    if os.path.realpath(candidate) != candidate.rstrip("/") or not (
        candidate == real_root or candidate.startswith(real_root + os.sep)
    ):
        return None
    return Path(candidate)


def _html(inst: Instance, path: Path) -> Response:
    data = path.read_bytes()
    tag = f'<script src="/i/{inst.cap}/__dockext__/ddclient.js"></script>'.encode()
    m = HEAD_RE.search(data) or HTML_RE.search(data) or DOCTYPE_RE.search(data)
    data = data[: m.end()] + tag + data[m.end():] if m else tag + data
    response = Response(data, media_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


async def _exec(state: HostState, inst: Instance, request: Request) -> Response:
    if request.method != "POST":
        return Response("Method not allowed", status_code=405)
    if request.headers.get("x-dockext") != "1":
        return error_response(status=403, type_="Forbidden", message="missing X-Dockext header")
    raw = await request.body()
    if len(raw) > MAX_EXEC_REQUEST:
        return error_response(status=413, type_="TooLarge", message="exec request too large")
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return error_response(status=400, type_="BadRequest", message="expected a JSON body")
    if not isinstance(body, dict):
        return error_response(status=400, type_="BadRequest", message="expected a JSON object")
    try:
        plan = execution.plan(
            inst.record, inst.ext_dir, str(body.get("cli")), body.get("cmd"), body.get("args", []),
            body.get("options") if isinstance(body.get("options"), dict) else None,
            docker_host=state.engine.host,
        )
    except DockextError as exc:
        return error_response(exc)
    # The page may go away (reload, tab closed) before the command ends: then its process group ends too.
    run = asyncio.ensure_future(inst.processes.run(plan))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    if run.cancelled():
        return Response(status_code=499)
    try:
        result = run.result()
    except DockextError as exc:
        return error_response(exc)
    return JSONResponse(result.to_json())


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _proxy(state: HostState, inst: Instance, request: Request) -> Response:
    sock = state.backend_socket(inst.record)
    if sock is None:
        return _proxy_error(BackendNotReady("this extension exposes no backend socket"), 404)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    prefix = f"/i/{inst.cap}/__dockext__/vm".encode()
    target = raw_path[len(prefix):].decode("latin-1") or "/"
    if not target.startswith("/"):
        target = "/" + target
    query = request.scope.get("query_string", b"").decode("latin-1")
    body = await request.body()
    if len(body) > MAX_BODY:
        return error_response(status=413, type_="TooLarge", message="request body too large")
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED]
    client = state.backend_client(sock)
    url = httpx.URL("http://localhost", raw_path=(target + (f"?{query}" if query else "")).encode())
    try:
        upstream = await client.send(
            client.build_request(request.method, url, headers=headers, content=body), stream=True
        )
    except httpx.TransportError as exc:
        return _proxy_error(
            BackendNotReady(f"the backend of {inst.record.title} cannot be reached: {_transport(exc, sock)}")
        )
    # multi_items: repeated headers (Set-Cookie) must stay separate lines, not be joined with commas
    out_headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in upstream.headers.multi_items()
        if k.lower() not in HOP_BY_HOP
    ]
    length = upstream.headers.get("content-length", "")
    if length.isdigit() and int(length) <= BUFFERED_RESPONSE:
        # Most answers are small JSON: read them whole and send one plain Response, which saves the task
        # group StreamingResponse starts per request (~0.1 ms of CPU each). Same status, headers, raw bytes.
        try:
            content = b"".join([chunk async for chunk in upstream.aiter_raw()])
        except httpx.TransportError as exc:
            return _proxy_error(
                BackendNotReady(f"the backend of {inst.record.title} broke off its answer: {_transport(exc, sock)}")
            )
        finally:
            await upstream.aclose()
        response = Response(content, status_code=upstream.status_code)
        response.raw_headers = [h for h in out_headers if h[0].lower() != b"content-length"] + [
            (b"content-length", str(len(content)).encode())
        ]
        return response
    streaming = StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
    )
    streaming.raw_headers = out_headers
    return streaming


def _proxy_error(exc: DockextError, status: int = 502) -> Response:
    response = error_response(exc, status=status)
    response.headers["X-Dockext-Proxy-Error"] = "1"
    return response


def _transport(exc: httpx.TransportError, sock: Path) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, FileNotFoundError):
            return f"connect ENOENT {sock.name} (the backend socket does not exist; is the backend running?)"
        if isinstance(cause, ConnectionRefusedError):
            return f"connect ECONNREFUSED {sock.name} (nothing listens on the backend socket)"
        if isinstance(cause, PermissionError):
            return f"connect EACCES {sock.name} (dockext may not connect to the backend socket)"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
