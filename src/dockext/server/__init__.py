"""The dockext HTTP server: dashboard, extension origins, host API, backend proxy."""

from .app import create_app
from .state import HostState, Instance

__all__ = ["HostState", "Instance", "create_app"]
