"""The top-level ASGI app: picks the dashboard or an extension origin from the ``Host`` header.

A request whose ``Host`` is neither a dashboard name (``localhost``/``127.0.0.1``/``[::1]`` with our port) nor
``<slug>.localhost:<port>`` of an installed extension is refused with 403 before anything else runs: this is
the DNS-rebinding defence, on top of the token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import dashboard, extension
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
        host = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1").lower()
                break
        if host in self.state.dashboard_hosts:
            scope["dockext.origin"] = f"http://{host}"
            await self.dashboard_app(scope, receive, send)
            return
        suffix = f".localhost:{self.state.port}"
        if host.endswith(suffix):
            slug = host[: -len(suffix)]
            record = self.state.by_slug.get(slug)
            if record is not None:
                scope["dockext.record"] = record
                await self.extension_app(scope, receive, send)
                return
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).close(code=1008)
            return
        response = PlainTextResponse("Forbidden: unknown host name\n", status_code=403)
        await response(scope, receive, send)


def create_app(state: HostState) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.create_task(state.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await state.aclose()

    dash = dashboard.create(state, lifespan)
    ext = extension.create(state)
    return HostRouter(state, dash, ext)
