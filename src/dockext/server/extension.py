"""An extension's own origin: its UI files, the injected SDK, exec, and the proxy to its backend (:mod:`.vmproxy`).

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

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from .. import execution
from ..errors import DockextError
from ..store import Record
from . import devproxy, docker_api, streams, vmproxy, webfetch
from .security import (
    HARDENING,
    TooLarge,
    disconnected,
    error_response,
    origin_response,
    parse_json,
    read_body,
    too_large,
)
from .state import HostState, Instance
from .wire import ENDS_AT_STOP

__all__ = ["create"]

SDK_DIR = Path(str(resources.files("dockext") / "static" / "sdk"))
HEAD_RE = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
HTML_RE = re.compile(rb"<html(\s[^>]*)?>", re.IGNORECASE)
DOCTYPE_RE = re.compile(rb"^\s*<!doctype[^>]*>", re.IGNORECASE)
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
        record: Record = scope["dockext.record"]
        if any(name == b"service-worker" and value == b"script" for name, value in scope["headers"]):
            # A service worker would outlive the UI instance it came from and keep answering for the origin
            # after an update (which keeps the origin): never registered, whoever serves the script (S16)
            await _send(state, Response("Service workers are not supported for extension UIs.\n", status_code=403),
                        scope, receive, send)
            return
        found = _instance(state, record, scope)
        if found is not None and vmproxy.is_vm_path(found[1]):
            await vmproxy.handle(state, found[0], scope, receive, send)
            return
        if found is not None and found[1] == webfetch.PATH:
            await webfetch.handle(state, found[0], scope, receive, send, [*state.extension_policy(), *HARDENING])
            return
        request = Request(scope, receive)
        response = await _dispatch(state, found, request)
        await _send(state, response, scope, receive, send)

    return app


async def _send(state: HostState, response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    await origin_response(response, state.extension_policy())(scope, receive, send)


async def _dispatch(state: HostState, found: tuple[Instance, str] | None, request: Request) -> Response:
    if found is None:
        dev = _dev_path_owner(state, request.scope)
        if dev is not None:  # the dev server's own absolute paths (/src/main.tsx, /@vite/client): they carry no
            # capability, so they get none: the SDK (which holds it) goes only into pages under /i/<cap>/
            return await _from_dev_server(state, dev, request, _raw_path(request.scope), inject=False)
        return Response("This extension view has been closed. Reopen the tab.", status_code=404)
    inst, rest = found
    if rest == "__dockext__/ddclient.js":
        return _sdk(state, inst)
    if rest == "__dockext__/exec":
        return await _exec(state, inst, request)
    if rest.startswith("__dockext__/docker/"):
        if request.headers.get("x-dockext") != "1":
            return error_response(status=403, type_="Forbidden", message="missing X-Dockext header")
        return await docker_api.for_extension(state, inst, request, rest[len("__dockext__/docker/"):])
    if rest.startswith("__dockext__/"):
        return Response("Not found", status_code=404)
    if inst.dev.ui_source and rest:
        path = _raw_path(request.scope)[len(f"/i/{inst.cap}"):]
        return await _from_dev_server(state, inst, request, path, inject=True, prefix=f"/i/{inst.cap}")
    if request.method not in ("GET", "HEAD"):
        return Response("Method not allowed", status_code=405)
    return _static(inst, rest, request)


def _raw_path(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw.decode("latin-1")


def _dev_path_owner(state: HostState, scope: Scope) -> Instance | None:
    """For a path outside ``/i/``: the open instance of this extension whose UI comes from a dev server."""
    if scope["path"].startswith("/i/"):
        return None
    return state.dev_instance(scope["dockext.record"])


async def _from_dev_server(state: HostState, inst: Instance, request: Request, path: str, *, inject: bool,
                           prefix: str = "") -> Response:
    return await devproxy.fetch(
        state, inst, request.method, path, request.url.query, dict(request.headers),
        (lambda page: _inject_sdk(inst, page)) if inject else (lambda page: page), prefix,
    )


def _instance(state: HostState, record: Record, scope: Scope) -> tuple[Instance, str] | None:
    """The UI instance a request's path names (``/i/<cap>/<rest>``) and the rest, if that instance is of
    ``record``. The capability must stand in the raw path as it is (``/i/%41...`` is not it): what follows it is
    sliced from the raw path (the backend's target, the dev server's path)."""
    parts = scope["path"].split("/", 3)  # ["", "i", cap, rest]
    if len(parts) < 3 or parts[1] != "i":
        return None
    inst = state.instances.get(parts[2])
    if inst is None or inst.record.origin_slug != record.origin_slug:
        return None
    raw = _raw_path(scope)
    if raw != f"/i/{inst.cap}" and not raw.startswith(f"/i/{inst.cap}/"):
        return None
    return inst, parts[3] if len(parts) > 3 else ""


async def _websocket(state: HostState, ws: WebSocket) -> None:
    """WebSockets on an extension origin: the capability, and an Origin equal to this extension's own."""
    record: Record = ws.scope["dockext.record"]
    found = _instance(state, record, ws.scope)
    if ws.headers.get("origin") != state.extension_origin(record):
        await ws.close(code=1008)
        return
    if found is None:
        dev = _dev_path_owner(state, ws.scope)
        if dev is not None:  # a dev server's hot-reload socket
            await devproxy.relay_websocket(dev, ws, _raw_path(ws.scope), ws.url.query)
        else:
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
    response = Response(_inject_sdk(inst, path.read_bytes()), media_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _inject_sdk(inst: Instance, data: bytes) -> bytes:
    """The page with the ``<script>`` that defines ``window.ddClient`` first in its head."""
    tag = f'<script src="/i/{inst.cap}/__dockext__/ddclient.js"></script>'.encode()
    m = HEAD_RE.search(data) or HTML_RE.search(data) or DOCTYPE_RE.search(data)
    return data[: m.end()] + tag + data[m.end():] if m else tag + data


async def _exec(state: HostState, inst: Instance, request: Request) -> Response:
    if request.method != "POST":
        return Response("Method not allowed", status_code=405)
    if request.headers.get("x-dockext") != "1":
        return error_response(status=403, type_="Forbidden", message="missing X-Dockext header")
    try:
        raw = await read_body(request, MAX_EXEC_REQUEST)
    except TooLarge as exc:
        return too_large(request, exc)
    try:
        body: Any = parse_json(raw)
    except ValueError:
        return error_response(status=400, type_="BadRequest", message="expected a JSON body")
    if not isinstance(body, dict):
        return error_response(status=400, type_="BadRequest", message="expected a JSON object")
    try:
        _check_cli_permission(state, inst, str(body.get("cli")))
        container = await state.vm_container(inst.record) if body.get("cli") == "vm" and inst.record.vm else None
        plan = execution.plan(
            inst.record, inst.ext_dir, str(body.get("cli")), body.get("cmd"), body.get("args", []),
            body.get("options") if isinstance(body.get("options"), dict) else None,
            docker_host=state.engine.target, container=container,
        )
    except DockextError as exc:
        return error_response(exc)
    # The page may go away (reload, tab closed) before the command ends: then its process group ends too. So
    # does a stop of the server, which need not wait for the command (wire.ENDS_AT_STOP).
    request.scope[ENDS_AT_STOP] = True
    run = asyncio.ensure_future(inst.processes.run(plan))
    gone = asyncio.ensure_future(disconnected(request.receive))
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


def _check_cli_permission(state: HostState, inst: Instance, cli: str) -> None:
    """``docker`` and ``host`` execs need the user's grant (dockext permissions); ``vm`` is the extension's own,
    on the engine its backend was made on."""
    if cli in ("docker", "host"):
        state.check_permission(inst.record, cli)
    elif cli == "vm":
        state.check_engine(inst.record)
