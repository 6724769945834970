"""An extension UI served from a developer's dev server (``dockext dev ui-source EXT URL``).

The page stays on the extension's own origin: ``/i/<cap>/<path>`` is fetched from ``<URL>/<path>``, and the
dev server's own absolute paths (``/src/main.tsx``, ``/@vite/client``, ``/static/js/bundle.js``) are fetched
from it as they are while a tab of that extension is open with a dev source. HTML gets the same ``<script>``
that defines ``window.ddClient`` as the packaged UI; the host API under ``/i/<cap>/__dockext__/`` is dockext's
as always, so the capability model does not change. A WebSocket opened on the origin outside ``/i/<cap>/`` is
relayed to the dev server (hot reload: Vite, webpack-dev-server), subprotocols included.

Only GET and HEAD reach the dev server; nothing the browser sends that identifies the user (cookies, the
dashboard's origin) is passed on. A dev server that cannot be reached gives 502 with a page saying what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import weakref
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import websockets
import websockets.asyncio.client
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from .state import HostState, Instance

__all__ = ["MAX_BODY", "fetch", "relay_websocket"]

MAX_BODY = 64 << 20  # bytes of one dev-server answer
FORWARDED = ("accept", "accept-language", "user-agent", "if-none-match", "if-modified-since", "range")
KEPT = ("content-type", "cache-control", "etag", "last-modified", "content-range", "accept-ranges", "vary")
_CLIENTS: weakref.WeakKeyDictionary[HostState, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client(state: HostState) -> httpx.AsyncClient:
    """One client per server (kept-alive connections to the dev server), closed when the server stops."""
    client = _CLIENTS.get(state)
    if client is None:
        client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False, trust_env=False)
        _CLIENTS[state] = client
        state.close_with(client.aclose)
    return client


async def fetch(state: HostState, inst: Instance, method: str, path: str, query: str,
                headers: dict[str, str], inject: Callable[[bytes], bytes], prefix: str = "") -> Response:
    """GET/HEAD ``path`` of ``inst``'s dev server; an HTML answer is passed through ``inject``.

    ``prefix`` is where the dev server's root is on the extension's origin (``/i/<cap>`` for the page's own
    paths, ``""`` for the dev server's absolute paths): its redirects to itself land there (:func:`location`)."""
    base = inst.dev.ui_source
    assert base is not None
    if method not in ("GET", "HEAD"):
        return Response("A UI loaded from a dev server takes GET and HEAD only.", status_code=405)
    url = base + path + (f"?{query}" if query else "")
    sent = {k: v for k, v in headers.items() if k in FORWARDED}
    try:
        async with _client(state).stream(method, url, headers=sent) as answer:
            received = bytearray()
            async for chunk in answer.aiter_bytes():
                received += chunk
                if len(received) > MAX_BODY:
                    return _unreachable(base, f"its answer for {path} is larger than {MAX_BODY >> 20} MiB")
            body = bytes(received)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return _unreachable(base, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    kept = {k: v for k, v in answer.headers.items() if k in KEPT}
    if answer.is_redirect and "location" in answer.headers:
        kept["location"] = location(answer.headers["location"], base, prefix)
    if "text/html" in answer.headers.get("content-type", "") and method == "GET":
        body = inject(body)
        kept["cache-control"] = "no-store"
    return Response(body, status_code=answer.status_code, headers=kept)


def location(target: str, base: str, prefix: str) -> str:
    """A dev server's redirect as the page must follow it: one to the dev server itself (``<base>/x``, or the path
    ``/x`` under the base's own path) goes to ``<prefix>/x`` on the extension's origin, so that a page under
    ``/i/<cap>/`` stays there and keeps its SDK; relative ones and those to other sites are left as they are."""
    base_path = urlsplit(base).path.rstrip("/")
    if target == base or target.startswith(base + "/"):
        rest = target[len(base):]
    elif target.startswith("/") and not target.startswith(("//", "/\\")) and (
            target == base_path or target.startswith(base_path + "/")):
        rest = target[len(base_path):]
    else:
        return target
    return prefix + (rest or "/")


def _unreachable(base: str, why: str) -> Response:
    page = (
        "<!doctype html><meta charset=utf-8><title>Dev server unreachable</title>"
        "<body style='font-family:system-ui;margin:2em'><h1>The dev server cannot be reached</h1>"
        f"<p>This extension's UI is set to load from <code>{html.escape(base)}</code> (<code>dockext dev "
        f"ui-source</code>), and that failed: {html.escape(why)}.</p><p>Start the dev server, then reopen the tab; "
        "or go back to the packaged UI with <code>dockext dev reset EXTENSION</code>.</p>"
    )
    return Response(page, status_code=502, media_type="text/html", headers={"X-Dockext-Proxy-Error": "1"})


async def relay_websocket(inst: Instance, ws: WebSocket, path: str, query: str) -> None:
    """Relay ``ws`` to the same path on ``inst``'s dev server, in both directions, until either side closes."""
    base = inst.dev.ui_source
    assert base is not None
    target = "ws" + base[len("http"):] + path + (f"?{query}" if query else "")
    offered = [websockets.Subprotocol(p) for p in ws.scope.get("subprotocols") or []]
    try:
        upstream = await websockets.asyncio.client.connect(
            target, subprotocols=offered or None, open_timeout=10, max_size=None, proxy=None,
        )
    except (OSError, TimeoutError, websockets.WebSocketException):
        await ws.close(code=1011)
        return
    async with upstream:
        await ws.accept(subprotocol=upstream.subprotocol)

        async def down() -> None:
            async for message in upstream:
                if isinstance(message, str):
                    await ws.send_text(message)
                else:
                    await ws.send_bytes(message)

        async def up() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

        tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.WebSocketException, WebSocketDisconnect,
                                     RuntimeError, OSError):
                await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError, websockets.WebSocketException):
        await ws.close(code=_sendable(upstream.close_code))


def _sendable(code: int | None) -> int:
    """The dev server's close code as one a close frame may carry: 1005 (none given), 1006 (the connection broke:
    the dev server restarted or died) and 1015 (TLS) only describe a close, and sending them is refused."""
    if code is None or code == 1005:
        return 1000
    if code in (1006, 1015):
        return 1011  # the server met a condition it could not handle: the page's client reconnects
    return code
