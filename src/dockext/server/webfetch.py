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
``ddClient.docker``, under its own permission) however the URL names it: the name is resolved once, checked, and
the connection made to the address checked (:class:`_EngineGuard`), so neither another spelling of loopback
(``127.1``, ``0x7f000001``, ``0.0.0.0``, ``[::ffff:127.0.0.1]``), nor this machine's other addresses, nor a DNS
name that resolves to one of them reach it. dockext's own address is refused too: every request made here carries
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
import contextlib
import http.cookiejar
import ipaddress
import socket
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpcore
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
_CLIENTS: weakref.WeakKeyDictionary[HostState, dict[str, httpx.AsyncClient]] = weakref.WeakKeyDictionary()


def _client(state: HostState, key: str) -> httpx.AsyncClient:
    """One client per extension of a server (its own connections: requests one extension leaves hanging never use
    up another's), proxies from the environment as browsers take them. Every request it makes, each redirect's
    included, is checked by :func:`target_of` first: a site cannot redirect a page to the engine. It keeps no
    cookies: a page's logins stay in its browser, never on the host."""
    clients = _CLIENTS.setdefault(state, {})
    client = clients.get(key)
    if client is None:
        server = weakref.ref(state)

        async def check(request: httpx.Request) -> None:
            live = server()
            if live is not None:
                target_of(str(request.url), live.engine.host, live.port, live.domain)

        transport = httpx.AsyncHTTPTransport(trust_env=True)
        # httpx takes no network backend: its pool, made again with the guard (httpx's defaults otherwise)
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=True), max_connections=100, max_keepalive_connections=20,
            keepalive_expiry=5.0, network_backend=_EngineGuard(lambda: getattr(server(), "engine", None)),
        )
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=15.0, read=None),  # read: long polls and event streams
            max_redirects=20, trust_env=True, event_hooks={"request": [check]}, transport=transport,
            cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        )
        clients[key] = client
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
    engine = _engine_address(engine_url)
    if engine is not None and port in engine[1] and (
            parts.hostname.lower() == engine[0].lower() or (_loopback(parts.hostname) and _loopback(engine[0]))):
        raise _engine_refused()
    return value


def _engine_refused() -> WebRequestError:
    return WebRequestError("dockext does not pass web requests to the Docker engine's own address",
                           hint="Use ddClient.docker, which needs the docker permission.")


def _engine_address(engine_url: str) -> tuple[str, tuple[int, ...]] | None:
    """The engine's TCP host and port(s), None for an engine not reached over TCP (a unix socket, ssh). Without a
    port, the Docker CLI's defaults: 2375, or 2376 with TLS (either, since which one is not said here)."""
    engine = urlsplit(engine_url)
    if engine.scheme not in ("tcp", "http", "https") or not engine.hostname:
        return None
    with contextlib.suppress(ValueError):
        if engine.port:
            return engine.hostname, (engine.port,)
    return engine.hostname, (2375, 2376)


def _loopback(host: str) -> bool:
    """A loopback name or address in any spelling a connection takes (``127.1``, ``2130706433``, ``0x7f000001``,
    ``[::ffff:127.0.0.1]``), and the unspecified address, which a connection reaches as this machine."""
    name = host.lower().rstrip(".").strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _address(name)
    return address is not None and _local_kind(address)


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    try:  # the legacy IPv4 forms inet_aton takes, as connect() does: 127.1, 2130706433, 0x7f000001, 0177.0.0.1
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except (OSError, ValueError):
        return None


def _local_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _this_machine(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, unspecified, or one of this machine's own addresses (it can bind to it)."""
    if _local_kind(address):
        return True
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


class _EngineGuard(httpcore.AsyncNetworkBackend):
    """The network under the web requests' client: a connection on the engine's port is made only after the name
    is resolved and none of its addresses is the engine's (its own, or this machine's when the engine is on this
    machine), and to the address that was checked, so a name that answers differently the second time (DNS
    rebinding) gets no second look. Other ports connect as httpx would."""

    def __init__(self, engine: Callable[[], Any]) -> None:
        self._engine = engine  # the server's Engine, None once the server is gone
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        engine = self._engine()
        where = _engine_address(engine.host) if engine is not None else None
        if where is not None and port in where[1]:
            found = await _resolve(host, port)
            if not found:
                raise httpcore.ConnectError(f"{host}: no address found")
            engine_ips = await _resolve(where[0], port)
            engine_here = any(_this_machine(ip) for ip in engine_ips)
            if any(ip in engine_ips or (engine_here and _this_machine(ip)) for ip in found):
                raise _engine_refused()
            host = str(found[0])
        return await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses a connection to ``host`` would try (the name as an address when it is one, in any form)."""
    address = _address(host.strip("[]"))
    if address is not None:
        return [address]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        with contextlib.suppress(ValueError):
            out.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
    return out


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
    """What of the site's answer headers the page gets, plus where the answer came from. A length beside a
    ``Transfer-Encoding`` is not the body's (RFC 9112 6.3: the encoding wins), and the body is passed unframed."""
    dropped = NOT_PASSED
    if any(n.lower() == b"transfer-encoding" for n, _ in headers):
        dropped = dropped | {b"content-length"}
    out = [(n, v) for n, v in headers if n.lower() not in dropped]
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
        body = await read_asgi_body(receive, MAX_BODY, scope)
    except TooLarge as exc:
        await _answer(too_large(None, exc), scope, receive, send, policy)
        return
    if body is None:
        return  # the page went away while sending
    follow = fields.get(REDIRECT, b"follow") == b"follow"
    client = _client(state, inst.record.key)
    # the page may leave before the site answers (a long poll): then the request to the site ends too
    gone = asyncio.ensure_future(disconnected(receive))
    try:
        await _exchange(client, url, follow, fields, scope, body, gone, send, policy)
    finally:
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)


async def _exchange(client: httpx.AsyncClient, url: str, follow: bool, fields: dict[bytes, bytes], scope: Scope,
                    body: bytes, gone: asyncio.Future[None], send: Send,
                    policy: Sequence[tuple[bytes, bytes]]) -> None:
    async def nothing() -> dict[str, str]:
        return {"type": "http.disconnect"}  # what _answer's app would receive: the request was read already

    receive: Receive = nothing
    try:
        request = client.build_request(scope["method"], url, headers=[*request_headers(scope), (VIA, b"web")],
                                       content=body if body or scope["method"] not in ("GET", "HEAD") else None)
        # the page's own Accept-Encoding stands: the body goes back still encoded, for the browser to decode
        asked = asyncio.ensure_future(client.send(request, stream=True, follow_redirects=follow))
        either: set[asyncio.Future[Any]] = {asked, gone}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not asked.done():
            asked.cancel()
            await asyncio.gather(asked, return_exceptions=True)
            return  # nobody is left to answer
        answer = asked.result()
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
        if gone.done():
            return  # the page left as the answer came
        headers = answer_headers(answer.headers.raw, str(answer.url), bool(answer.history)) + list(policy)
        await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
        # the body as it comes (still encoded), until it ends or the page goes away (then the site sees it too)
        pump = asyncio.ensure_future(_pass_body(answer, send))
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
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
