"""Response headers and small checks shared by the dashboard and the extension origins."""

from __future__ import annotations

import hmac
from typing import TypeVar

from starlette.responses import JSONResponse, Response

from ..errors import DockextError

__all__ = ["DASHBOARD_CSP", "HARDENING", "error_response", "harden", "token_ok"]

R = TypeVar("R", bound=Response)

DASHBOARD_CSP = (
    "default-src 'self'; img-src 'self' data:; frame-src http://*.dockext.localhost:*; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


#: on every answer of the server, unless the response set its own
HARDENING: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def token_ok(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def harden(response: R, *, csp: str | None = None) -> R:
    for name, value in HARDENING:
        response.headers.setdefault(name.decode(), value.decode())
    if csp:
        response.headers["Content-Security-Policy"] = csp
    return response


def error_response(exc: DockextError | None = None, *, status: int | None = None, type_: str = "Error",
                   message: str = "") -> JSONResponse:
    """The one error body of the HTTP API: ``{"error": {"type", "message"}}``. Never a traceback."""
    if exc is not None:
        body = {"error": {"type": exc.type, "message": str(exc)}}
        return JSONResponse(body, status_code=status or exc.http_status)
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status or 400)
