"""The top-level ASGI app: picks the dashboard or an extension origin from the ``Host`` header.

A request whose ``Host`` is neither a dashboard name (``dockext.localhost``, ``localhost``, ``127.0.0.1`` or
``[::1]`` with our port, or a name given with ``--allow-host``) nor ``<slug>.dockext.localhost:<port>`` of an
installed extension is refused with 403 before anything else runs: this is the DNS-rebinding defence, on top
of the token. So is a request dockext itself made for an extension page (``X-Dockext-Via``, ``webfetch``):
otherwise a page that learnt another extension's capability could use it from the host.

A browser that opens a dashboard page on ``localhost``, ``127.0.0.1`` or ``[::1]`` is redirected to the same
path on ``dockext.localhost`` (see ``state.DASHBOARD_NAME`` for why). The JSON API answers on every name, so
scripts need not resolve ``*.localhost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..store import Record
from . import dashboard, extension, vmproxy, webfetch, wire
from .state import HostState

__all__ = ["create_app"]


class HostRouter:
    def __init__(self, state: HostState, dashboard_app: ASGIApp, extension_app: ASGIApp) -> None:
        self.state = state
        self.dashboard_app = dashboard_app
        self.extension_app = extension_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.dashboard_app(scope, receive, send)
            return
        host, relayed = _host_and_via(scope.get("headers", []))
        host = self.state.normal_host(host)
        if relayed:  # made by dockext for an extension page (webfetch): never let a page reach dockext that way
            if scope["type"] == "websocket":
                await WebSocket(scope, receive, send).close(code=1008)
                return
            await PlainTextResponse("Forbidden: dockext does not answer the web requests it makes for extension "
                                    "pages\n", status_code=403)(scope, receive, send)
            return
        if self.state.behind_proxy and host in self.state.loopback_hosts:
            await _through_the_proxy(self.state, scope, receive, send)
            return
        if host in self.state.dashboard_hosts:
            if host in self.state.loopback_hosts and _page_request(scope):
                target = self.state.dashboard_url + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
                if scope.get("query_string"):
                    target += "?" + scope["query_string"].decode("latin-1")
                await RedirectResponse(target, status_code=307)(scope, receive, send)
                return
            scope["dockext.origin"] = f"{self.state.scheme}://{host}"
            await self.dashboard_app(scope, receive, send)
            return
        record = self._extension(host)
        if record is not None:
            scope["dockext.record"] = record
            await self.extension_app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).close(code=1008)
            return
        response = PlainTextResponse("Forbidden: unknown host name\n", status_code=403)
        await response(scope, receive, send)

    @property
    def home_url(self) -> str:
        """Where a person goes back to from a page the connection layer answers itself (wire.HttpProtocol)."""
        return self.state.dashboard_url + "/"

    def shortcut(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> wire.Handler | None:
        """For :class:`~dockext.server.wire.HttpProtocol`: a ``vm.service`` call to an installed extension's
        origin, answered without the ASGI cycle (:func:`.vmproxy.shortcut`); None sends the request through
        :meth:`__call__` as any other."""
        host, relayed = _host_and_via(headers)
        # (a relayed request is refused by __call__)
        record = None if relayed else self._extension(self.state.normal_host(host))
        return None if record is None else vmproxy.shortcut(self.state, record, method, url, headers)

    def _extension(self, host: str) -> Record | None:
        """The installed extension whose origin ``host`` (lower case, with the port) is."""
        suffix = "." + self.state.extension_suffix
        return self.state.by_slug.get(host[: -len(suffix)]) if host.endswith(suffix) else None


def _host_and_via(headers: list[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """The ``Host`` (lower case, the last one given), and whether dockext made the request for a page
    (``X-Dockext-Via``, webfetch)."""
    host, relayed = "", False
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1").lower()
        elif name == webfetch.VIA:
            relayed = True
    return host, relayed


async def _through_the_proxy(state: HostState, scope: Scope, receive: Receive, send: Send) -> None:
    """A request to this server's own port by a loopback name while a proxy serves it to browsers
    (``--public-url``): a page that says where the dashboard is, and what a proxy that sent this request got
    wrong. A redirect there could loop, through a proxy that replaces ``Host`` with this server's address."""
    if scope["type"] == "websocket":
        await WebSocket(scope, receive, send).close(code=1008)
        return
    url = html.escape(state.dashboard_url + "/")
    page = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>dockext</title>'
        f'<p>This dockext is served through a proxy at <a href="{url}">{url}</a>.</p>'
        "<p>If you came here through that address, the proxy replaced the <code>Host</code> header with this "
        "server's address: it must pass it on as the browser sent it (nginx: <code>proxy_set_header Host "
        "$http_host;</code>).</p>"
    )
    response = HTMLResponse(page, status_code=421)
    response.headers["content-security-policy"] = "default-src 'none'"
    await response(scope, receive, send)


def _page_request(scope: Scope) -> bool:
    """A browser loading a dashboard page (not the API, a static file or a WebSocket)."""
    path: str = scope["path"]
    return (
        scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
        and not path.startswith(("/api/", "/static/")) and path != "/favicon.ico"
    )


def create_app(state: HostState) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        watchers = [asyncio.create_task(state.watch()), asyncio.create_task(state.watch_backends())]
        try:
            yield
        finally:
            for watcher in watchers:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await state.aclose()

    dash = dashboard.create(state, lifespan)
    ext = extension.create(state)
    return HostRouter(state, dash, ext)
