"""``ddClient.extension.vm.service``: ``/i/<cap>/__dockext__/vm/<path>`` to ``<path>`` on the extension's backend.

The request's head is rebuilt for the backend (hop-by-hop headers, the dashboard's cookie, Origin, Referer and
our own headers dropped), sent over a kept-alive connection (:mod:`.backend_http`), and the answer passed back
with its status, raw headers and body bytes, the extension origin's own policy headers replacing the backend's.

Two ways in, one behaviour:

* :func:`shortcut`, the hot path: offered to :class:`~dockext.server.wire.HttpProtocol` (through the router's
  ``shortcut``) as soon as a request's head is in. It takes a plain request (a live UI instance of the
  extension the ``Host`` names, a body of known length up to :data:`SHORTCUT_MAX_BODY`) and its complete answer
  is written without uvicorn's ASGI request cycle, which cost about a quarter of dockext's CPU per call
  (docs/performance.md). An answer that streams, and every error, are sent through ASGI by the same code as
  below.
* :func:`handle`, on ASGI: what the shortcut does not take (larger and chunked bodies, ``Expect:
  100-continue``, a percent-encoded path) and every server other than dockext's protocol (Starlette's
  TestClient). A request the extension origin refuses (a service worker's script, one dockext itself made
  for a page) is never taken by the shortcut, so the ASGI app refuses it as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BackendNotReady, DockextError
from ..store import Record
from . import wire
from .backend_http import PAUSE_AT, Answer, BackendPool
from .security import (
    HARDENING,
    HOP_BY_HOP,
    SERVER_WRITTEN,
    TooLarge,
    disconnected,
    error_response,
    origin_response,
    read_asgi_body,
    too_large,
)
from .state import HostState, Instance

__all__ = ["MAX_BODY", "PREFIX", "SHORTCUT_MAX_BODY", "handle", "is_vm_path", "shortcut"]

PREFIX = "__dockext__/vm"
MAX_BODY = 64 << 20
#: the largest body the shortcut collects itself (ddClient's calls send a few hundred bytes of JSON)
SHORTCUT_MAX_BODY = 1 << 20
#: request headers the backend never sees: hop-by-hop ones, the dashboard's cookie, where the page is, ours,
#: and the framing (the proxy sets its own Content-Length and answers Expect: 100-continue itself)
NOT_FORWARDED = HOP_BY_HOP | {
    b"host", b"cookie", b"origin", b"referer", b"x-dockext", b"content-length", b"expect",
}
#: answer headers the backend never sets: the origin's own policy, and widening a service worker's scope
POLICY_HEADERS = frozenset({b"content-security-policy", b"cross-origin-resource-policy", b"service-worker-allowed"})
#: answer headers the browser never gets from the backend: the connection's own, the origin's policy, the date
#: dockext's server writes itself
NOT_PASSED = HOP_BY_HOP | POLICY_HEADERS | SERVER_WRITTEN
#: request headers that send a request the ASGI way: a body of unknown length, a client waiting for 100 Continue
#: before sending its body, and what the extension origin refuses (the app answers those)
_NOT_TAKEN = frozenset({b"transfer-encoding", b"expect", b"service-worker"})


def is_vm_path(rest: str) -> bool:
    """``rest`` (what follows ``/i/<cap>/``) names the backend."""
    return rest == PREFIX or rest.startswith(PREFIX + "/")


async def handle(state: HostState, inst: Instance, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI way (see the module's docstring)."""
    pool = _pool(state, inst)
    if isinstance(pool, Response):
        await origin_response(pool, state.extension_policy())(scope, receive, send)
        return
    try:
        body = await read_asgi_body(receive, MAX_BODY, scope)
    except TooLarge as exc:  # the rest of the body is not read: the connection ends (after draining a moment)
        await origin_response(too_large(None, exc), state.extension_policy())(scope, receive, send)
        return
    if body is None:
        return  # the browser went away while sending
    method = scope["method"].encode("ascii")
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    target = _target(inst, raw_path, scope.get("query_string", b""))
    exchange = asyncio.ensure_future(_exchange(inst, pool, method, target, scope["headers"], body))
    gone = asyncio.ensure_future(disconnected(receive))  # the browser may leave before the head (a long poll)
    try:
        either: set[asyncio.Future[Any]] = {exchange, gone}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not exchange.done():  # gone first (or this task cancelled): the backend connection is closed
            exchange.cancel()
        await asyncio.gather(gone, exchange, return_exceptions=True)
    if exchange.cancelled():
        return
    await _send_answer(state, method, exchange.result())(scope, receive, send)


def shortcut(state: HostState, record: Record, method: bytes, url: bytes,
             headers: list[tuple[bytes, bytes]]) -> wire.Handler | None:
    """A handler for a ``vm.service`` request to ``record``'s origin that needs nothing of ASGI, else None."""
    path, _, query = url.partition(b"?")
    if not path.startswith(b"/i/") or b"%" in path or b"#" in url or not url.isascii():
        return None  # the ASGI path decodes it (and refuses what it must)
    limit = min(SHORTCUT_MAX_BODY, MAX_BODY)
    for name, value in headers:
        if name in _NOT_TAKEN:
            return None
        if name == b"content-length" and not (value.isdigit() and int(value) <= limit):
            return None
    parts = path.split(b"/", 3)  # ["", "i", cap, rest]
    inst = state.instances.get(parts[2].decode("ascii"))
    if inst is None or inst.record.origin_slug != record.origin_slug or len(parts) < 4:
        return None
    if not is_vm_path(parts[3].decode("ascii")):
        return None

    async def answer(body: bytes) -> wire.Complete | ASGIApp:
        pool = _pool(state, inst)
        if isinstance(pool, Response):
            return origin_response(pool, state.extension_policy())
        got = await _exchange(inst, pool, method, _target(inst, path, query), headers, body)
        if isinstance(got, Answer) and got.complete:
            return wire.Complete(got.status, *_whole(state, method, got))
        return _send_answer(state, method, got)

    return answer


def _pool(state: HostState, inst: Instance) -> BackendPool | Response:
    pool = state.backend_pool(inst.record)
    if pool is None:
        return _proxy_error(BackendNotReady("this extension exposes no backend socket"), 404)
    try:
        state.check_engine(inst.record)
    except DockextError as exc:
        return _proxy_error(exc, exc.http_status)
    return pool


def _target(inst: Instance, raw_path: bytes, query: bytes) -> bytes:
    """The backend's request target: what follows ``/i/<cap>/__dockext__/vm`` (``/`` if nothing), and the query."""
    target = raw_path[len(f"/i/{inst.cap}/{PREFIX}"):] or b"/"
    if not target.startswith(b"/"):
        target = b"/" + target
    return target + b"?" + query if query else target


async def _exchange(inst: Instance, pool: BackendPool, method: bytes, target: bytes,
                    headers: list[tuple[bytes, bytes]], body: bytes) -> Answer | Response:
    """The backend's answer (status and headers in, the body arriving), or the error response to give instead.

    An answer of known length up to :data:`~.backend_http.PAUSE_AT` is read whole first, within the answer's
    deadline: many servers write the head and the body apart (Python's http.server, uvicorn), and passing such
    an answer on as a stream would cost a re-framed, chunked answer for a few bytes of JSON."""
    title = inst.record.title
    try:
        answer = await pool.request(_request_head(method, target, headers, body), body, method=method)
    except BackendNotReady as exc:
        return _proxy_error(BackendNotReady(f"the backend of {title} cannot be reached: {exc.message}"))
    if answer.complete or method == b"HEAD" or not 0 <= _length(answer) <= PAUSE_AT:
        return answer
    try:
        async with asyncio.timeout(pool.answer_timeout):
            await answer.until_complete()
    except TimeoutError:
        answer.abort()
        return _proxy_error(BackendNotReady(
            f"the backend of {title} did not finish its answer within {pool.answer_timeout:g} s"))
    except BackendNotReady as exc:
        return _proxy_error(BackendNotReady(f"the backend of {title} broke off its answer: {exc.message}"))
    except asyncio.CancelledError:
        answer.abort()
        raise
    return answer


def _length(answer: Answer) -> int:
    """The length the backend announced, -1 if none (or not a number: httptools would have refused it)."""
    for name, value in answer.headers:
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else -1
    return -1


def _send_answer(state: HostState, method: bytes, answer: Answer | Response) -> ASGIApp:
    """An ASGI app sending ``answer``: a whole one at once, a long one (a download, server-sent events) as it
    comes. If the browser leaves during a long one, the backend connection is closed so the backend sees it too."""
    if isinstance(answer, Response):
        return origin_response(answer, state.extension_policy())

    async def app(_scope: Scope, receive: Receive, send: Send) -> None:
        if answer.complete:
            headers, body = _whole(state, method, answer)
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": _answer_headers(state, answer.headers)})
        gone = asyncio.ensure_future(disconnected(receive))
        gone.add_done_callback(lambda _: answer.abort())
        try:
            async for chunk in answer.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except BackendNotReady:
            return  # broke off (or the browser left): uvicorn closes the connection, the browser sees it fail
        finally:
            gone.cancel()

    return app


def _request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    dropped = NOT_FORWARDED  # names are lower case (ASGI, and uvicorn's parser for the shortcut)
    for name, value in headers:
        if name == b"connection":  # headers the Connection header names are hop-by-hop too
            dropped = dropped | {t.strip().lower() for t in value.split(b",")}
    parts = [method, b" ", target, b" HTTP/1.1\r\nhost: localhost\r\n"]
    for name, value in headers:
        if name not in dropped:
            parts += [name, b": ", value, b"\r\n"]
    if body or method in (b"POST", b"PUT", b"PATCH"):
        parts += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def _whole(state: HostState, method: bytes, answer: Answer) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a whole answer. The headers carry its real length (the backend's framing is gone); a
    HEAD answer keeps the length the backend announced; 204 and 304 have none."""
    headers, body = _answer_headers(state, answer.headers), answer.body()
    if method != b"HEAD" and answer.status not in (204, 304):
        headers = [h for h in headers if h[0].lower() != b"content-length"]
        headers.append((b"content-length", b"%d" % len(body)))
    return headers, body


def _answer_headers(state: HostState, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The backend's headers as the browser gets them: hop-by-hop ones and its date out (the server writes its
    own), the origin's own policy in."""
    policy = state.extension_policy()
    out = [(k, v) for k, v in headers if k.lower() not in NOT_PASSED]
    present = {k.lower() for k, _ in out}
    return out + policy + [(k, v) for k, v in HARDENING if k not in present]


def _proxy_error(exc: DockextError, status: int = 502) -> Response:
    response = error_response(exc, status=status)
    response.headers["X-Dockext-Proxy-Error"] = "1"
    return response
