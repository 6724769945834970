"""HTTP/1.1 to an extension's backend over its unix socket: kept-alive connections parsed with httptools.

This is the adapter behind ``ddClient.extension.vm.service``, the hottest path of the server. It is built on
an ``asyncio.Protocol`` and httptools (the parser uvicorn already uses) rather than on httpx, whose
per-request machinery (h11, anyio, httpcore's pool and locks) costs about three times as much CPU as the
whole exchange here; see docs/performance.md.

One :class:`BackendPool` per backend socket keeps idle connections for reuse. :meth:`BackendPool.request`
sends a complete request (head and body) and returns as soon as the answer's status and headers are in; the
body arrives into the :class:`Answer` as the backend sends it (with flow control: reading from the backend
pauses while too much is waiting for the browser). A connection goes back to the pool the moment its answer
is complete and the backend keeps it alive, and is closed after :data:`IDLE_TIMEOUT` seconds unused.

Failures become :class:`~dockext.errors.BackendNotReady` with a message saying what happened at the socket
(``connect ENOENT backend.sock``, ``... closed the connection before answering``), so a person can act on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePath
from typing import cast

import httptools

from .. import socketpath
from ..errors import BackendNotReady

__all__ = ["IDEMPOTENT", "PAUSE_AT", "Answer", "BackendPool", "Opener", "unreachable"]

#: methods a client may send again when a kept-alive connection turns out to be closed (RFC 9110 9.2.2)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
PAUSE_AT = 1 << 20  # bytes waiting for the browser before reading from the backend pauses
MAX_IDLE = 32  # idle connections kept per backend...
#: ...for at most this many seconds: under the 5 s after which Node's http server (the usual backend) closes an
#: idle connection, so a request is rarely sent on a connection the backend is closing at that moment (a POST
#: could not be sent again), and a burst's connections do not stay open after it
IDLE_TIMEOUT = 4.0
#: Opens a connection to the backend socket some other way than ``connect(2)`` here (a remote engine's relay,
#: :mod:`dockext.server.relay`): given the protocol factory, returns the connected protocol.
Opener = Callable[[Callable[[], asyncio.Protocol]], Awaitable[asyncio.Protocol]]
_WHY = {
    "ENOENT": "the backend socket does not exist; is the backend running?",
    "ECONNREFUSED": "nothing listens on the backend socket",
    "EACCES": "dockext may not connect to the backend socket",
}


def unreachable(errno_name: str, socket_name: str, detail: str = "") -> BackendNotReady:
    """``connect ENOENT backend.sock (the backend socket does not exist; ...)``: the words for a socket that
    refuses, whether dockext connects to it here or a relay does on a remote engine."""
    why = _WHY.get(errno_name, detail)
    return BackendNotReady(f"connect {errno_name} {socket_name}" + (f" ({why})" if why else ""))


class Answer:
    """One response from the backend: ``status`` and ``headers`` (raw, in order), then the body."""

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self._until_eof = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiting = 0
        self._error: BackendNotReady | None = None
        self._wake: asyncio.Future[None] | None = None

    def body(self) -> bytes:
        """The whole body, once :attr:`complete` (as the backend framed it: chunked encoding removed)."""
        assert self.complete
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises BackendNotReady if the backend breaks off its answer."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                self._waiting = 0
                if self._conn is not None:
                    self._conn.resume()
                yield data
            elif self.complete:
                return
            elif self._error is not None:
                raise self._error
            else:
                await self._news()

    async def until_complete(self) -> None:
        """Returns once the whole body has come; raises BackendNotReady if the backend breaks off its answer. Only
        for an answer whose length is known and at most :data:`PAUSE_AT` (reading pauses past it)."""
        while not self.complete:
            if self._error is not None:
                raise self._error
            await self._news()

    async def _news(self) -> None:
        """Until the connection brings something: data, the end, or an error."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    def abort(self) -> None:
        """Stop receiving (the browser went away): the connection is closed, not reused."""
        if not self.complete and self._conn is not None:
            self._conn.close()
        self._finish(BackendNotReady("the answer was aborted"))

    # -- fed by the connection -------------------------------------------------------------------------
    def _data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._waiting += len(data)
        if self._waiting > PAUSE_AT and self._conn is not None:
            self._conn.pause()
        self._poke()

    def _finish(self, error: BackendNotReady | None = None) -> None:
        if self.complete or self._error is not None:
            return
        if error is None:
            self.complete = True
        else:
            self._error = error
        self._conn = None
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class _Connection(asyncio.Protocol):
    """One connection to the backend socket; carries one request at a time."""

    def __init__(self, pool: BackendPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.answer: Answer | None = None
        self.got_bytes = False
        self.head_only = False
        self.headers_in: asyncio.Future[None] | None = None
        self._informational = False
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None  # the answer's deadline
        self._expiry: asyncio.TimerHandle | None = None  # the end of an idle spell in the pool

    # -- driving a request -------------------------------------------------------------------------------
    def start(self, head: bytes, body: bytes, *, head_only: bool, timeout: float) -> Answer:
        assert self.transport is not None and self.answer is None
        self.answer = Answer(self)
        self.got_bytes = False
        self.head_only = head_only
        loop = asyncio.get_running_loop()
        self.headers_in = loop.create_future()
        self._timer = loop.call_later(timeout, self._timed_out, timeout)
        if len(body) <= 65536:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        return self.answer

    def close(self) -> None:
        self.closed = True
        self.stop_expiry()
        if self.transport is not None:
            self.transport.close()

    def expire_in(self, seconds: float) -> None:
        """Close this (idle) connection in ``seconds`` unless it is taken out of the pool first."""
        self.stop_expiry()
        self._expiry = asyncio.get_running_loop().call_later(seconds, self.close)

    def stop_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _timed_out(self, timeout: float) -> None:
        self._fail(BackendNotReady(f"the backend did not answer within {timeout:g} s"))

    def _fail(self, error: BackendNotReady) -> None:
        answer, self.answer = self.answer, None
        self._stop_timer()
        if self.headers_in is not None and not self.headers_in.done():
            self.headers_in.set_exception(error)
        if answer is not None:
            answer._finish(error)
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _done(self) -> None:
        """The answer is complete: back to the pool if the backend keeps the connection alive."""
        answer, self.answer = self.answer, None
        self._stop_timer()
        if answer is None:  # a message nobody asked for (more than one answer in one read): never reused
            self.close()
            return
        answer._finish()
        reusable = not self.head_only and not self.closed and self.parser.should_keep_alive()
        if reusable:
            self.resume()
            self.pool._release(self)
        else:
            self.close()

    # -- asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        if self.answer is None:  # nothing was asked: a backend talking out of turn is not reused
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BackendNotReady("the backend switched protocols, which the proxy does not support"))
        except httptools.HttpParserError as exc:
            self._fail(BackendNotReady(f"the backend sent an invalid HTTP response ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        answer = self.answer
        if answer is None:
            return
        if isinstance(exc, BackendNotReady) and not self.got_bytes:  # a relay saying why it could not connect
            self._fail(exc)
        elif answer.status and answer._until_eof:
            self._done()  # a body without a length ends when the backend closes
        elif not self.got_bytes:
            self._fail(_Stale("the backend closed the connection before answering"))
        else:
            self._fail(BackendNotReady("the backend closed the connection in the middle of its answer"))

    # -- httptools callbacks ------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.answer is None:  # an answer beyond the one asked for, in the same read as it: out of turn
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.answer is not None and not self._informational:
            self.answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self.answer
        if answer is None:
            return
        status = self.parser.get_status_code()
        if status == 101:  # never passed on: the browser would get a switched connection the proxy cannot carry
            self._fail(BackendNotReady("the backend switched protocols, which the proxy does not support"))
            return
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: not the answer
            self._informational = True
            answer.headers.clear()
            return
        answer.status = status
        self._stop_timer()
        lower = {k.lower() for k, _ in answer.headers}
        chunked = any(k.lower() == b"transfer-encoding" and b"chunked" in v.lower() for k, v in answer.headers)
        answer._until_eof = (
            b"content-length" not in lower and not chunked and status not in (204, 304) and not self.head_only
        )
        if self.headers_in is not None and not self.headers_in.done():
            self.headers_in.set_result(None)
        if self.head_only:  # the parser cannot know the request was HEAD: no body follows whatever it says
            self._done()

    def on_body(self, body: bytes) -> None:
        if self.answer is not None and not self._informational:
            self.answer._data(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._done()


class _Stale(BackendNotReady):
    """A connection closed before a single byte of the answer: a kept-alive one the backend had dropped."""


class BackendPool:
    """Kept-alive HTTP/1.1 connections to one backend socket."""

    def __init__(
        self, path: PurePath, *, connect_timeout: float = 5.0, answer_timeout: float = 300.0,
        idle_timeout: float = IDLE_TIMEOUT, opener: Opener | None = None,
    ) -> None:
        self.path = path
        self.opener = opener
        self.connect_timeout = connect_timeout
        self.answer_timeout = answer_timeout
        self.idle_timeout = idle_timeout
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def request(self, head: bytes, body: bytes = b"", *, method: bytes = b"GET") -> Answer:
        """Send one request; return once the answer's status and headers are in."""
        conn = self._checkout()
        if conn is not None:
            try:
                return await self._exchange(conn, head, body, method)
            except _Stale:
                if method not in IDEMPOTENT:
                    raise BackendNotReady(
                        "the backend closed a kept-alive connection as the request was sent; it was not repeated "
                        "because it may have changed something"
                    ) from None
        return await self._exchange(await self._connect(), head, body, method)

    def close(self) -> None:
        """Close every connection (requests in flight fail with BackendNotReady)."""
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()

    async def aclose(self) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------------
    async def _exchange(self, conn: _Connection, head: bytes, body: bytes, method: bytes) -> Answer:
        answer = conn.start(head, body, head_only=method == b"HEAD", timeout=self.answer_timeout)
        assert conn.headers_in is not None
        try:
            await conn.headers_in
        except asyncio.CancelledError:
            conn.close()
            raise
        return answer

    def _checkout(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            conn.stop_expiry()
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Connection:
        if self.opener is not None:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    conn = cast(_Connection, await self.opener(lambda: _Connection(self)))
            except TimeoutError as exc:
                raise self._unreachable(exc) from None
            self._all.add(conn)
            return conn
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # the socket file itself, never what a link the backend put there names (socketpath.py)
            async with asyncio.timeout(self.connect_timeout):
                with socketpath.address(self.path) as address:
                    delay = 0.0005
                    while True:
                        try:
                            sock.connect(address)
                            break
                        except BlockingIOError:
                            # The backend's accept queue is full (Python's http.server keeps 5). A unix socket
                            # says EAGAIN rather than connecting later, and asyncio would then hand back a dead
                            # transport: wait for the backend to take connections, as a blocking connect would.
                            await asyncio.sleep(delay)
                            delay = min(delay * 2, 0.02)
                _, conn = await loop.create_unix_connection(lambda: _Connection(self), sock=sock)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, (TimeoutError, OSError)):
                raise self._unreachable(exc) from None
            raise
        self._all.add(conn)
        return conn

    def _unreachable(self, exc: TimeoutError | OSError) -> BackendNotReady:
        """What went wrong connecting, in words a person can act on."""
        name = self.path.name
        if isinstance(exc, TimeoutError):
            return unreachable("ETIMEDOUT", name, f"the backend did not accept within {self.connect_timeout:g} s")
        if isinstance(exc, FileNotFoundError):
            return unreachable("ENOENT", name)
        if isinstance(exc, ConnectionRefusedError):
            return unreachable("ECONNREFUSED", name)
        if isinstance(exc, PermissionError):
            return unreachable("EACCES", name)
        if exc.errno == errno.ENOTSOCK:
            return BackendNotReady(f"connect {name}: {socketpath.NOT_A_SOCKET}")
        return BackendNotReady(f"connect {name}: {exc.strerror or exc}")

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
            conn.expire_in(self.idle_timeout)
        else:
            conn.close()

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
