"""dockext: run Docker Desktop extensions on any Docker engine."""

__version__ = "0.1.0"
#: The extension API version dockext implements (reported like Docker Desktop's "Server API Version").
API_VERSION = "0.4.2"
