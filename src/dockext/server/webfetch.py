"""Cross-origin web requests of an extension UI, made by the host (the ``web`` permission).

Docker Desktop does not apply CORS to extension views, and published extensions rely on it: the official OAuth
sample POSTs from its UI to a token endpoint that sends no CORS headers, and UIs fetch ``http://localhost:PORT``
of ports their backend publishes. In a browser both fail. So the SDK sends a page's cross-origin ``fetch`` and
``XMLHttpRequest`` to ``/i/<cap>/__dockext__/web`` on its own origin, naming the real URL in
``X-Dockext-Target``, and this module makes the request from the host and passes the answer back as it came
(status, headers, body bytes still encoded, streamed), like a browser without CORS would see it.

What never crosses: the browser's cookies for the extension's origin (they are dockext's), its Origin and
Referer, the ``Sec-*`` metadata (it describes the request to dockext, not to the site), and our own headers; in
the answer, ``Set-Cookie``, HSTS, ``Clear-Site-Data``, ``Alt-Svc`` and the site's own policy headers, which
would otherwise apply to the extension's origin. The Docker engine's own TCP address is refused (that is
``ddClient.docker``, under its own permission), and so is dockext's own: every request made here carries
``X-Dockext-Via: web``, and dockext's router refuses any request with it, whatever name or redirect led there, so
that a page which learnt another extension's capability cannot use it from the host.

Failures are answered with ``X-Dockext-Proxy-Error``: ``withheld`` (403) when the user denied the permission,
and the SDK then makes the request as the browser would; ``1`` (502) when the request could not be made, which
the SDK turns into the ``TypeError`` a failed ``fetch`` gives, with dockext's reason in its message. An
``XMLHttpRequest`` cannot be failed from script, so the SDK sends ``X-Dockext-Failure: network-error`` with it,
and its failures (withheld ones too) are answered with a redirect to ``dockext-failed:/<reason>``: a browser
fails a request redirected to a scheme other than http(s) as a network error (Fetch, "HTTP-redirect fetch"),
which is what the page would have seen for an unreachable site or a CORS refusal (status 0, ``error``, a
synchronous ``send()`` throws), and its console shows the reason in the refused URL.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import ipaddress
import weakref
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote, urlsplit

import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import DockextError, WebRequestError
from .security import (
    HOP_BY_HOP,
    SERVER_WRITTEN,
    TooLarge,
    disconnected,
    error_response,
    harden,
    read_asgi_body,
    too_large,
)
from .state import DASHBOARD_NAME, HostState, Instance

__all__ = ["PATH", "VIA", "handle", "target_of"]

PATH: Final = "__dockext__/web"
MAX_BODY: Final = 64 << 20
TARGET: Final = b"x-dockext-target"
#: on every request made here; dockext's own router refuses a request that carries it (server/app.py)
VIA: Final = b"x-dockext-via"
REDIRECT: Final = b"x-dockext-redirect"  # the page's fetch mode: follow (the default), manual or error
#: ``network-error``: fail as the browser fails a request (XMLHttpRequest), not with dockext's answer (fetch)
FAILURE: Final = b"x-dockext-failure"
FAILED_SCHEME: Final = "dockext-failed"
#: request headers the site never sees (besides every ``sec-*`` and ``x-dockext*`` one)
NOT_FORWARDED: Final = HOP_BY_HOP | {b"host", b"cookie", b"origin", b"referer", b"content-length", b"expect"}
#: answer headers the page never gets: they would act on the extension's origin, not on the site's (and the date,
#: which dockext's server writes itself)
NOT_PASSED: Final = HOP_BY_HOP | SERVER_WRITTEN | {
    b"set-cookie", b"set-cookie2", b"strict-transport-security", b"clear-site-data", b"alt-svc",
    b"content-security-policy", b"content-security-policy-report-only", b"cross-origin-resource-policy",
    b"cross-origin-opener-policy", b"cross-origin-embedder-policy", b"service-worker-allowed",
    b"access-control-allow-origin", b"access-control-allow-credentials", b"access-control-allow-headers",
    b"access-control-allow-methods", b"access-control-expose-headers", b"access-control-max-age",
    b"refresh", b"link", b"report-to", b"nel", b"permissions-policy", b"origin-agent-cluster",
}
_CLIENTS: weakref.WeakKeyDictionary[HostState, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client(state: HostState) -> httpx.AsyncClient:
    """One client per server, proxies from the environment as browsers take them. Every request it makes, each
    redirect's included, is checked by :func:`target_of` first: a site cannot redirect a page to the engine. It
    keeps no cookies: one jar for every extension would hand one extension's logins to another."""
    client = _CLIENTS.get(state)
    if client is None:
        server = weakref.ref(state)

        async def check(request: httpx.Request) -> None:
            live = server()
            if live is not None:
                target_of(str(request.url), live.engine.host, live.port, live.domain)

        client = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=15.0, read=None),  # read: long polls and event streams
            max_redirects=20, trust_env=True, event_hooks={"request": [check]},
            cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        )
        _CLIENTS[state] = client
        state.close_with(client.aclose)
    return client


def target_of(value: str, engine_url: str, own_port: int, own_domain: str = DASHBOARD_NAME) -> str:
    """The URL a page asked for, if dockext may request it: http or https, with a host, neither the engine's
    address nor dockext's own (loopback, or its ``--domain`` and the names under it, on its port; dockext would
    refuse it anyway: :data:`VIA`)."""
    try:
        parts = urlsplit(value)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebRequestError(f"{value!r} is not a URL dockext can request: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebRequestError(f"{value!r} is not an http or https URL")
    name = parts.hostname.lower().rstrip(".")
    if port == own_port and (_loopback(name) or name == own_domain or name.endswith("." + own_domain)):
        raise WebRequestError("dockext does not pass web requests to itself")
    engine = urlsplit(engine_url)
    if engine.scheme in ("tcp", "http", "https") and engine.hostname and port == engine.port and (
            parts.hostname.lower() == engine.hostname.lower()
            or (_loopback(parts.hostname) and _loopback(engine.hostname))):
        raise WebRequestError("dockext does not pass web requests to the Docker engine's own address",
                              hint="Use ddClient.docker, which needs the docker permission.")
    return value


def _loopback(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def request_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """What of the page's headers goes to the site."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    dropped = set(NOT_FORWARDED)
    for name, value in headers:
        if name == b"connection":
            dropped |= {t.strip().lower() for t in value.split(b",")}
    return [(n, v) for n, v in headers
            if n not in dropped and not n.startswith(b"sec-") and not n.startswith(b"x-dockext")]


def answer_headers(headers: list[tuple[bytes, bytes]], final_url: str, redirected: bool) -> list[tuple[bytes, bytes]]:
    """What of the site's answer headers the page gets, plus where the answer came from."""
    out = [(n, v) for n, v in headers if n.lower() not in NOT_PASSED]
    out.append((b"x-dockext-url", final_url.encode("ascii", "replace")))
    if redirected:
        out.append((b"x-dockext-redirected", b"1"))
    return out


async def handle(state: HostState, inst: Instance, scope: Scope, receive: Receive, send: Send,
                 policy: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Make the request ``scope`` names in ``X-Dockext-Target`` for ``inst``; ``policy``: the headers of the
    extension's origin, set on every answer."""
    fields = dict(scope["headers"])
    if fields.get(b"x-dockext") != b"1":
        await _answer(error_response(status=403, type_="Forbidden", message="missing X-Dockext header"),
                      scope, receive, send, policy)
        return
    try:
        state.check_permission(inst.record, "web")
    except DockextError as exc:  # denied, or the grants cannot be read: the browser makes it, under CORS
        await _answer(_failure(fields, exc, 403, "withheld"), scope, receive, send, policy)
        return
    try:
        url = target_of(fields.get(TARGET, b"").decode("latin-1"), state.engine.host, state.port, state.domain)
    except DockextError as exc:
        await _answer(_failure(fields, exc), scope, receive, send, policy)
        return
    try:
        body = await read_asgi_body(receive, MAX_BODY)
    except TooLarge as exc:
        await _answer(too_large(None, exc), scope, receive, send, policy)
        return
    if body is None:
        return  # the page went away while sending
    follow = fields.get(REDIRECT, b"follow") == b"follow"
    client = _client(state)
    try:
        request = client.build_request(scope["method"], url, headers=[*request_headers(scope), (VIA, b"web")],
                                       content=body if body or scope["method"] not in ("GET", "HEAD") else None)
        # the page's own Accept-Encoding stands: the body goes back still encoded, for the browser to decode
        answer = await client.send(request, stream=True, follow_redirects=follow)
    except WebRequestError as exc:  # a redirect to where a page may not go
        await _answer(_failure(fields, exc), scope, receive, send, policy)
        return
    except httpx.TooManyRedirects:
        await _answer(_failure(fields, WebRequestError(f"{url}: more than 20 redirects")), scope, receive, send,
                      policy)
        return
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        failure = _failure(fields, WebRequestError(f"{url} could not be requested: {why}"))
        await _answer(failure, scope, receive, send, policy)
        return
    try:
        headers = answer_headers(answer.headers.raw, str(answer.url), bool(answer.history)) + list(policy)
        await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
        # the body as it comes (still encoded), until it ends or the page goes away (then the site sees it too)
        pump = asyncio.ensure_future(_pass_body(answer, send))
        gone = asyncio.ensure_future(disconnected(receive))
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, gone):
                task.cancel()
            await asyncio.gather(pump, gone, return_exceptions=True)
    finally:
        await answer.aclose()


async def _pass_body(answer: httpx.Response, send: Send) -> None:
    try:
        async for chunk in answer.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError:
        return  # the site broke off: the answer ends unfinished and the page's read fails, as it would directly
    await send({"type": "http.response.body", "body": b""})


def _failure(fields: dict[bytes, bytes], exc: DockextError, status: int = 502, kind: str = "1") -> Response:
    """dockext's answer for a request it did not make: its error (for the SDK's fetch), or, when the request
    asks to fail as the browser fails (:data:`FAILURE`), a redirect the browser turns into a network error."""
    response: Response
    if fields.get(FAILURE) == b"network-error":
        location = f"{FAILED_SCHEME}:/{quote(str(exc), safe='')}"  # with a path, as strict URL parsers want
        response = Response(status_code=307, headers={"Location": location, "Cache-Control": "no-store"})
    else:
        response = error_response(exc, status=status)
    response.headers["X-Dockext-Proxy-Error"] = kind
    return response


async def _answer(response: Response, scope: Scope, receive: Receive, send: Send,
                  policy: Sequence[tuple[bytes, bytes]]) -> None:
    for name, value in policy:
        response.headers[name.decode()] = value.decode()
    await harden(response)(scope, receive, send)
