"""Host file-system listing for the dashboard's own open dialog (never reachable from extension origins)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from .state import HostState

__all__ = ["routes"]


def routes(state: HostState) -> list[BaseRoute]:
    return []
