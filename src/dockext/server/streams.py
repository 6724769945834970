"""Streaming exec for extensions over a WebSocket (the ``{stream: ...}`` overload of the three CLIs)."""

from __future__ import annotations

from starlette.websockets import WebSocket

from .state import HostState, Instance

__all__ = ["handle"]


async def handle(state: HostState, inst: Instance, ws: WebSocket) -> None:
    await ws.close(code=1011)
