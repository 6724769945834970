"""Engine API reads: the dashboard's Docker views, and ``docker.listContainers/listImages`` for extensions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from .security import error_response
from .state import HostState, Instance

__all__ = ["for_extension", "routes"]


def routes(state: HostState) -> list[BaseRoute]:
    return []


async def for_extension(state: HostState, inst: Instance, request: Request, path: str) -> Response:
    return error_response(status=404, type_="NotFound", message=f"unknown docker API path {path!r}")
