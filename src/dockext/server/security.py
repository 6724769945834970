"""Response headers and small checks shared by the dashboard and the extension origins."""

from __future__ import annotations

import hmac
import json
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from ..errors import DockextError

__all__ = [
    "HARDENING", "HOP_BY_HOP", "MAX_JSON", "SERVER_WRITTEN", "TooLarge", "dashboard_csp", "disconnected",
    "error_response", "harden",
    "origin_response", "read_asgi_body", "read_body", "read_json", "token_ok", "too_large",
]

R = TypeVar("R", bound=Response)

def dashboard_csp(frame_src: str) -> str:
    """The Content-Security-Policy of the dashboard's pages; ``frame_src`` is where extension frames come from
    (``http://*.dockext.localhost:*``, or the scheme and ``--domain`` dockext serves)."""
    return (
        f"default-src 'self'; img-src 'self' data:; frame-src {frame_src}; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    )



#: headers of one connection, never passed on by a proxy (RFC 9110 7.6.1), besides those ``Connection`` names
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-connection",
})
#: headers the server writes on every answer itself (uvicorn's default ones): a proxy drops the upstream's, which
#: would otherwise reach the browser twice (``Date: <backend's>, <dockext's>`` to ``fetch``)
SERVER_WRITTEN = frozenset({b"date"})

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


def origin_response(response: R, policy: list[tuple[bytes, bytes]]) -> R:
    """``response`` as an extension origin sends it: its ``policy`` headers set (replacing any), hardened."""
    for name, value in policy:
        response.headers[name.decode()] = value.decode()
    return harden(response)


def error_response(exc: DockextError | None = None, *, status: int | None = None, type_: str = "Error",
                   message: str = "") -> JSONResponse:
    """The one error body of the HTTP API: ``{"error": {"type", "message"}}``. Never a traceback."""
    if exc is not None:
        body = {"error": {"type": exc.type, "message": str(exc)}}
        return JSONResponse(body, status_code=status or exc.http_status)
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status or 400)


#: the largest JSON body the host API reads (its bodies are a few hundred bytes)
MAX_JSON = 1 << 20


class TooLarge(Exception):
    """A request body over its limit, announced (``Content-Length``) or sent: answered 413 (:func:`too_large`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body of ``request``, read no further than ``limit`` bytes: :class:`TooLarge` as soon as it announces
    or sends more, so that no client makes the server hold a body it will not use."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int = MAX_JSON) -> Any:
    """The JSON body of ``request`` (ValueError if it is not JSON, :class:`TooLarge` over ``limit``)."""
    return parse_json(await read_body(request, limit))


def parse_json(data: str | bytes) -> Any:
    """``json.loads``, with JSON nested too deeply for the parser (``[[[[...``: a RecursionError, which a client
    can cause with a few kilobytes) a ValueError like any other text that is not JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def too_large(_request: Request | None, exc: Exception) -> Response:
    """413 for :class:`TooLarge`; the connection closes, so the client stops sending the rest."""
    limit = exc.limit if isinstance(exc, TooLarge) else 0
    response = harden(error_response(status=413, type_="TooLarge", message=f"the request body is over {limit} "
                                                                           "bytes"))
    response.headers["Connection"] = "close"
    return response


async def read_asgi_body(receive: Receive, limit: int, scope: Scope | None = None) -> bytes | None:
    """An ASGI request's body, or None if the client disconnected first; :class:`TooLarge` past ``limit`` (the
    rest is not read), at once when ``scope``'s Content-Length announces more (nothing is read)."""
    for name, value in (scope or {}).get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def disconnected(receive: Receive) -> None:
    """Returns once the ASGI client has gone (for a response that streams after the request was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
