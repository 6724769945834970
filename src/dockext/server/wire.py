"""The connection protocols dockext gives uvicorn: uvicorn's own, with limits on request heads and two
shortcuts for its hot paths.

**Limits on request heads.** uvicorn with httptools takes a request head of any size and waits for it for
ever: a client could make the server hold a gigabyte of headers, or hold connections open by sending a byte
now and then (slowloris). :class:`HttpProtocol` answers 431 and closes once a head passes :data:`MAX_HEAD`
bytes without being complete, closes a connection whose head is not complete :data:`HEAD_TIMEOUT` seconds
after its first byte (408 if nothing is being answered on it), and closes a connection that sends nothing at
all after uvicorn's keep-alive timeout, as uvicorn already does between requests. A request body during which
no byte comes for a whole :data:`BODY_TIMEOUT` period ends the connection (the application sees a
disconnect). Browsers send a head in one piece and a body as fast as the network allows, so none of this
touches them.

**HTTP: one write per response.** uvicorn writes a response's status line and headers with one
``transport.write`` and each body part with another. On a TCP connection each write is its own ``send()``: its
own segment, and its own wake-up of the client, which reads the head, finds no body, goes back to its event
loop and reads again. For the small JSON answers that make up most of the traffic (``vm.service`` calls, the
dashboard's API) that second round costs both sides more than the answer itself (docs/performance.md).

:class:`CoalescingTransport` collects what is written during one step of the event loop and sends it with one
``write`` at the end of that step (``loop.call_soon``): no timer, no added latency, order kept. Once
:data:`COALESCE_MAX` bytes are waiting they go at once, so a large body or a stream of big WebSocket messages
is written as before and the real transport's flow control (``pause_writing`` when its buffer is full) keeps
working. Everything else goes straight to the real transport.

**HTTP: a shortcut past the ASGI cycle.** For every request uvicorn builds a scope, a request cycle with its
event, a task, and ASGI messages whose headers it checks one by one; for a small proxied ``vm.service`` call
that was about a quarter of dockext's CPU (docs/performance.md). An application may offer
``app.shortcut(method, url, headers)``: :class:`HttpProtocol` calls it once a request's head is in, and if it
returns a :data:`Handler`, the protocol collects the body itself, awaits ``handler(body)`` in a task of its own,
and writes the :class:`Complete` answer it returns in one piece. The handler may instead return an ASGI app,
which is then run for the request through uvicorn's own cycle (a streamed answer, an error response), so only
the plain case is written here. Keep-alive, ``Connection: close``, HTTP/1.0, HEAD, pipelined requests behind
one in flight (queued by uvicorn as usual), a client that leaves, and a graceful shutdown behave as they do
through ASGI. An application without the attribute (and every server other than this protocol, such as
Starlette's TestClient) is served through ASGI alone.

**Shutdown.** uvicorn's graceful shutdown waits (5 s in ``dockext serve``) for every answer in progress; an
event stream never ends, so every open dashboard made a stop wait that long and log an error.
:meth:`HttpProtocol.shutdown` closes a connection whose answer is already being streamed at once (the
application sees a disconnect; the browser's ``EventSource`` sees the server go), and so does one whose request
the application marked with :data:`ENDS_AT_STOP` in its scope; the rest is uvicorn's.

**WebSocket: binary messages without copies.** Streaming exec sends a process's output as binary messages of
up to 256 KiB. Through ASGI each one is copied three times on its way out (the ASGI message, websockets'
frame, the join), which made dockext, not the process, the limit (bench/stream.py). :class:`WebSocketProtocol`
is uvicorn's websockets protocol plus the ASGI extension ``scope["extensions"]["dockext.binary_frames"]``
(a :class:`BinaryFrames`): the application reads output into a buffer with room before it, and the frame header
is written into that room and the whole frame handed to the transport in one piece. Flow control is the
protocol's own (``pause_writing`` from the transport). It is only offered when no WebSocket extension (such
as permessage-deflate) is in use, since those would change the frame; an application without it (Starlette's
TestClient, another server) sends through ASGI as usual.
"""

from __future__ import annotations

import asyncio
import html
import re
import struct
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,  # what uvicorn refuses in the header names and values an application gives (response splitting)
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

__all__ = [
    "BINARY_FRAMES", "BODY_TIMEOUT", "COALESCE_MAX", "ENDS_AT_STOP", "HEADROOM", "HEAD_TIMEOUT", "LINGER", "MAX_HEAD",
    "BinaryFrames", "CoalescingTransport", "Complete", "Handler", "HttpProtocol", "Shortcut", "WebSocketProtocol",
]

BINARY_FRAMES = "dockext.binary_frames"  # the ASGI scope extension
#: a scope key an application sets (True) on a request that waits for something a stop ends anyway (a command):
#: a graceful shutdown closes its connection at once instead of waiting for its answer
ENDS_AT_STOP = "dockext.ends_at_stop"
HEADROOM = 10  # bytes a BinaryFrames buffer keeps free before the payload (the largest frame header)

COALESCE_MAX = 16 << 10  # bytes held back at most; more are written at once
MAX_HEAD = 64 << 10  # bytes of a request line and headers (Node allows 16 KiB; nginx 4 x 8 KiB by default)
HEAD_TIMEOUT = 10.0  # seconds from a request's first byte until its head must be complete
BODY_TIMEOUT = 60.0  # seconds a request body may go without a byte arriving
LINGER = 2.0  # seconds a refused connection is read (and what comes dropped) before it is closed

#: the Cookie lines of a raw request head (the last one may be cut off where the head was refused)
COOKIE_LINES = re.compile(rb"\ncookie:[^\r\n]*", re.IGNORECASE)
#: a request for a page shown in a frame (an extension's, in the dashboard): a link there cannot lead the tab away
FRAMED = re.compile(rb"\nsec-fetch-dest:[ \t]*i?frame[ \t]*\r", re.IGNORECASE)
#: what a browser is told when cookies made a head too large (:meth:`HttpProtocol._refuse_head`); no script
COOKIE_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><meta name="color-scheme" content="light dark">
<title>dockext: too many cookies</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}</style>
<h1>Too many cookies</h1>
<p>Your browser sent {sent} KiB of cookies with this request, and dockext reads at most {limit} KiB of request
headers. A page of this site set them: an extension's page can set cookies for the dashboard's domain.</p>
<p>dockext has asked your browser to delete this site's cookies. {go_back} and log in with the token
<code>dockext serve</code> printed.</p>
<p>If this page comes back when you open an extension, that extension sets them again: remove it. A browser that
reaches dockext over plain HTTP by a name other than localhost does not delete cookies when asked: delete this
site's cookies in its settings.</p>
"""
COOKIE_PAGE_HEADERS = (
    b"clear-site-data: \"cookies\"\r\n"
    b"x-dockext-refused: cookies\r\n"  # for scripts: Chromium does not show them Clear-Site-Data
    # no frame-ancestors: an extension's frame in the dashboard shows it too (it has no script and one link)
    b"content-security-policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
    b"x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n"
)


@dataclass(frozen=True, slots=True)
class Complete:
    """A whole answer for :class:`HttpProtocol` to write. ``headers`` as they go out (uvicorn's default ones,
    such as ``date``, come first); a ``content-length`` is added where the answer needs one and lacks it. For
    HEAD, ``content-length`` is the length a GET would have, and ``body`` is not sent."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


#: given the request's whole body: the answer, or an ASGI app to run for the request through uvicorn's cycle
Handler = Callable[[bytes], Awaitable["Complete | ASGIApp"]]
#: ``app.shortcut(method, url, headers)``, with the request line's method and target and the head's headers
#: (names in lower case, as in ASGI): a Handler for a request the application answers itself, else None
Shortcut = Callable[[bytes, bytes, list[tuple[bytes, bytes]]], "Handler | None"]


class CoalescingTransport:
    """Wraps an ``asyncio.Transport``: writes made in one event-loop step leave in one ``send()``."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 linger: Callable[[], bool] | None = None) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False
        self._linger = linger  # asked at close: True to half-close and let the rest of the input drain first
        self._lingering = False  # half-closed by close(): closing as far as anyone writing is concerned

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if len(data) >= COALESCE_MAX:  # large: as it is, after what is waiting (no copy)
            self.flush()
            if not self.is_closing():
                self._transport.write(data)
            return
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= COALESCE_MAX:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` at once, after what is waiting: a whole answer, which nothing in this step adds to."""
        self.flush()
        if not self.is_closing():
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        if not self.is_closing():
            self._transport.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def close(self) -> None:
        self.flush()
        if self._lingering:
            return
        if (self._linger is not None and not self._transport.is_closing() and self._transport.can_write_eof()
                and self._linger()):
            self._transport.write_eof()  # the answer is out: the client reads it, then sees the end
            self._lingering = True  # no further request on this connection is started, nor answered
            self._loop.call_later(LINGER, self._transport.close)
            return
        self._transport.close()

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._size = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport` (a WebSocket upgraded from it too), with
    the limits on request heads and bodies described above."""

    max_head = MAX_HEAD
    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop, self._drain_on_close))  # type: ignore[arg-type]
        self._head_pending = True  # between requests, or inside a head: bytes received count against max_head
        self._head_bytes = 0  # bytes received while a head was pending (bounds what the parser holds)
        self._head_data: list[bytes] = []  # what came while a head was pending: read if the head is refused
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_body = False  # the current request's head is in, its body not yet whole
        self._body_moved = False  # a byte of the body came since the last check
        self._refused = False
        self._shortcut: Shortcut | None = getattr(self.app, "shortcut", None)
        self._taken: _Taken | None = None  # a request the shortcut took, from its head until it is answered
        # a connection that never sends a request is closed like one idle between requests
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request: dropped until the connection closes
        if self._head_pending:
            self._head_bytes += len(data)
            self._head_data.append(data)
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        super().data_received(data)  # the parser's callbacks below run in here
        if self._in_body and self._body_timer is None and not self._refused:
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_check)
        if self._head_pending and self._head_bytes > self.max_head and not self.transport.is_closing():
            raw = b"".join(self._head_data)
            self._refuse_head(sum(len(m) for m in COOKIE_LINES.findall(raw)), framed=bool(FRAMED.search(raw)))

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._head_pending = False
        self._head_data = []
        self._stop_head_timer()
        # a head that came whole in one read is measured here (uvicorn collected the URL and the headers)
        if len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_head:
            self._refuse_head(sum(len(v) + 8 for n, v in self.headers if n == b"cookie"),
                              framed=dict(self.headers).get(b"sec-fetch-dest", b"").strip() in (b"iframe", b"frame"))
            return
        self._in_body = True  # until on_message_complete, which for most requests comes in the same read
        if not self._take():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_moved = True
        taken = self._taken
        if taken is not None and not taken.started:
            taken.body.append(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_body = False
        self._stop_body_timer()
        taken = self._taken
        if taken is not None and not taken.started:
            taken.started = True
            task = self.loop.create_task(self._answer_taken(taken))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
            taken.task = task
        else:
            super().on_message_complete()
        self._head_pending = True  # the next request's head starts now
        self._head_bytes = 0

    # -- the shortcut (see the module's docstring) ---------------------------------------------------------
    def _take(self) -> bool:
        """Offer the request whose head just came to the application's shortcut; True if it took it."""
        if self._shortcut is None or (self.cycle is not None and not self.cycle.response_complete):
            return False  # none offered, or a request is still being answered: uvicorn queues this one
        if self.parser.should_upgrade():
            return False
        method = self.parser.get_method()
        handler = self._shortcut(method, self.url, self.headers)
        if handler is None:
            return False
        http_version = self.parser.get_http_version()
        taken = _Taken(handler, method, http_version, self.url, self.scope,
                       keep_alive=http_version != "1.0" and self.parser.should_keep_alive())
        # in uvicorn's place for this request: a request pipelined behind it is queued until it is answered
        self.cycle = taken  # type: ignore[assignment]
        self._taken = taken
        return True

    async def _answer_taken(self, taken: _Taken) -> None:
        try:
            result = await taken.handler(b"".join(taken.body))
        except Exception as exc:  # as uvicorn does for an application's exception before its answer started
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            result = Complete(500, [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
                              b"Internal Server Error")
        if isinstance(result, Complete):
            if self.flow.write_paused and not taken.disconnected:
                # the client is not reading its answers: wait, as uvicorn's cycle does, so that answers do not
                # pile up in memory; meanwhile further requests queue behind this one, and reading pauses
                await self.flow.drain()
            self._write_taken(taken, result)
        else:
            await self._hand_over(taken, result)

    def _write_taken(self, taken: _Taken, answer: Complete) -> None:
        if self._taken is taken:
            self._taken = None
        if taken.disconnected:
            return
        status_line = STATUS_LINE.get(answer.status)
        if status_line is None:
            self.logger.error("Exception in ASGI application: no status line for %d", answer.status)
            self.transport.close()
            return
        head_only = taken.method == b"HEAD"
        content = [status_line]
        length = None
        for name, value in [*self.server_state.default_headers, *answer.headers]:
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                self.logger.error("Exception in ASGI application: invalid header %r", name)
                self.transport.close()
                return
            lower = name.lower()
            if lower == b"content-length":
                length = value
            elif lower == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]:
                taken.keep_alive = False
            content += [name, b": ", value, b"\r\n"]
        if length is None and not head_only and answer.status not in (204, 304):
            content.append(b"content-length: %d\r\n" % len(answer.body))
        elif length is not None and not head_only and length != b"%d" % len(answer.body):
            self.logger.error("Exception in ASGI application: Content-Length %s for a body of %d bytes",
                              length.decode("latin-1"), len(answer.body))
            self.transport.close()
            return
        if not taken.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if not head_only:
            content.append(answer.body)
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.write_now(b"".join(content))  # the whole answer: nothing to wait for
        else:
            transport.write(b"".join(content))
        taken.response_complete = True
        if not taken.keep_alive:
            self.transport.close()
        self.on_response_complete()

    async def _hand_over(self, taken: _Taken, app: ASGIApp) -> None:
        """Run ``app`` for the taken request through uvicorn's own request cycle, as if uvicorn had started it."""
        scope = taken.scope
        scope["method"] = taken.method.decode("ascii")
        if taken.http_version != "1.1":
            scope["http_version"] = taken.http_version
        parsed = httptools.parse_url(taken.url)
        path = parsed.path.decode("ascii")
        scope["path"] = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
        scope["raw_path"] = self.root_path.encode("ascii") + parsed.path
        scope["query_string"] = parsed.query or b""
        cycle = RequestResponseCycle(
            scope=scope, transport=self.transport, flow=self.flow, logger=self.logger,
            access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=False, keep_alive=taken.keep_alive, on_response=self.on_response_complete,
        )
        cycle.more_body = False  # the body was read already (the app reads an empty one)
        cycle.disconnected = taken.disconnected
        taken.cycle = cycle  # a disconnect or a shutdown from now on reaches it
        if self._cycle_is(taken):
            self.cycle = cycle
        try:
            await cycle.run_asgi(cast(Any, app))  # starlette's and uvicorn's ASGI types are the same thing
        finally:
            if self._taken is taken:
                self._taken = None

    def on_response_complete(self) -> None:
        if self._in_body and not self.transport.is_closing():
            # answered before its body came whole (a 413): the rest is not read for nothing, and no further
            # request is served on this connection; it drains for LINGER seconds first (CoalescingTransport)
            self.transport.close()
        super().on_response_complete()

    def shutdown(self) -> None:
        """At a graceful shutdown uvicorn closes idle connections and waits for every answer in progress. An
        answer already being streamed (an event stream, followed logs) may never end, and the server would wait
        its whole grace period for it, then cancel it with an error in the log: such a connection is closed at
        once, and the application sees a disconnect. So is one whose request the application marked
        ``scope[ENDS_AT_STOP] = True`` (it waits for something the stop ends anyway, such as a command). Any
        other answer not yet begun keeps the grace period."""
        if self._ends_at_stop():
            self.transport.close()
        else:
            super().shutdown()

    def _ends_at_stop(self) -> bool:
        cycle: Any = self.cycle
        if isinstance(cycle, _Taken):  # answered in one piece by the shortcut, unless handed over to ASGI
            cycle = cycle.cycle
        if cycle is None or cycle.response_complete:
            return False
        return bool(cycle.response_started or cycle.scope.get(ENDS_AT_STOP))

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        taken = self._taken
        if taken is not None and not self._cycle_is(taken):  # a request pipelined behind it: uvicorn tells that one
            taken.lose()
        super().connection_lost(exc)

    def _cycle_is(self, taken: _Taken) -> bool:
        return cast(Any, self.cycle) is taken

    def _drain_on_close(self) -> bool:
        """At a close while a request body is still coming (an answer given before reading it all, such as a
        413): drop the rest for :data:`LINGER` seconds rather than close with unread input, which resets the
        connection before the client has read the answer."""
        if not self._in_body or self._refused:
            return False
        self._refused = True
        self._stop_body_timer()
        self.flow.resume_reading()
        return True

    def _body_check(self) -> None:
        """Every ``body_timeout`` seconds while a body is being received: closes the connection if no byte of it
        came since the last check (the application sees a disconnect)."""
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        if self._body_moved or self.flow.read_paused:  # paused: the application has not read what came yet
            self._body_moved = False
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_check)
            return
        self._refused = True
        self.transport.close()

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_pending and not self.transport.is_closing():
            self._refuse(408, b"Request Timeout", f"request head not complete within {self.head_timeout:g} s")

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse_head(self, cookies: int, *, framed: bool = False) -> None:
        """431 for a head over :attr:`max_head`, of which ``cookies`` bytes were Cookie lines. When those are most
        of it, the browser holds more cookies for this site than dockext reads, and would send them with every
        request until they expire: an extension's page can set them for the dashboard's domain (a cookie bomb),
        and neither the dashboard nor any extension would load again. The answer then asks the browser to delete
        the site's cookies (``Clear-Site-Data``, which covers its subdomains: every extension origin), and says
        so in a page a person can act on. A page cannot make its requests' Cookie lines long any other way than
        by setting cookies, so no page can have the browser's cookies cleared without having set them."""
        if cookies * 2 <= self.max_head:
            self._refuse(431, b"Request Header Fields Too Large", f"request head over {self.max_head} bytes")
            return
        home = html.escape(str(getattr(self.app, "home_url", "/")))  # the dashboard's URL, for any origin's page
        if framed:  # the extension frame's sandbox keeps it from leading the tab away (dashboard.js)
            go_back = (f'Reload the browser tab (or <a href="{home}" target="_blank" rel="noopener">open the '
                       f"dashboard in a new one</a>)")
        else:
            go_back = f'<a href="{home}">Open the dashboard again</a>'
        page = COOKIE_PAGE.format(sent=cookies >> 10, limit=self.max_head >> 10, go_back=go_back)
        self._refuse(431, b"Request Header Fields Too Large", page, content_type=b"text/html; charset=utf-8",
                     headers=COOKIE_PAGE_HEADERS)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser cannot read, guarded as :meth:`_refuse` is: behind a request still
        being answered (pipelined), a 400 written now would be read as that request's answer."""
        self._refuse(400, b"Bad Request", msg)

    def _refuse(self, status: int, reason: bytes, message: str, *,
                content_type: bytes = b"text/plain; charset=utf-8", headers: bytes = b"") -> None:
        """Answer ``status`` and close; just close if an answer to an earlier request is still being sent.

        The answer is followed by a half-close, and what the client still sends is read and dropped for
        :data:`LINGER` seconds: closing with unread input would reset the connection, and the client would
        lose the answer before reading it."""
        self._stop_head_timer()
        self._refused = True
        self._head_pending = False
        self._head_data = []
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n%s"
            % (status, reason, content_type, len(body), headers, body)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()


class _Taken:
    """A request the shortcut took. It stands in ``protocol.cycle`` until answered, with the attributes uvicorn
    reads there (a request pipelined behind it waits; a disconnect or a shutdown is noted), and forwards them to
    the real cycle once handed over to ASGI."""

    def __init__(self, handler: Handler, method: bytes, http_version: str, url: bytes, scope: Any, *,
                 keep_alive: bool) -> None:
        self.handler = handler
        self.method = method
        self.http_version = http_version
        self.url = url
        self.scope = scope  # uvicorn's, with the headers; completed only if handed over
        self.body: list[bytes] = []
        self.started = False  # the whole body is in and the handler runs
        self.response_complete = False
        self._disconnected = False
        self._keep_alive = keep_alive
        self.cycle: RequestResponseCycle | None = None
        self.task: asyncio.Task[None] | None = None  # the handler's, once the whole body is in
        self.message_event = self  # uvicorn calls cycle.message_event.set() at a disconnect

    def set(self) -> None:
        if self.cycle is not None:
            self.cycle.message_event.set()

    def lose(self) -> None:
        self.disconnected = True
        self.set()

    @property
    def disconnected(self) -> bool:
        return self.cycle.disconnected if self.cycle is not None else self._disconnected

    @disconnected.setter
    def disconnected(self, value: bool) -> None:
        self._disconnected = value
        if self.cycle is not None:
            self.cycle.disconnected = value
        elif value and self.task is not None and not self.response_complete:
            # the client left before its answer: the handler stops (the proxy closes its backend connection, so
            # a long poll's backend sees it at once rather than at its answer or the proxy's deadline)
            self.task.cancel()

    @property
    def keep_alive(self) -> bool:
        return self.cycle.keep_alive if self.cycle is not None else self._keep_alive

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:  # uvicorn's shutdown() sets it False
        self._keep_alive = value
        if self.cycle is not None:
            self.cycle.keep_alive = value


class BinaryFrames:
    """Sends binary WebSocket messages straight to the transport.

    Found at ``scope["extensions"]["dockext.binary_frames"]["frames"]`` (ASGI extensions are dicts).
    ``await frames.send(buf, start, end)`` sends ``buf[start:end]`` as one message. ``buf`` must have
    :data:`HEADROOM` bytes free before ``start`` (the header goes there) and must not be changed while the
    transport still holds a memoryview of it (asyncio keeps one for what the socket did not take at once, from
    Python 3.12; a bytearray cannot be resized while viewed, which tells). Returns False, sending nothing, once
    the connection is closing or gone.
    """

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol

    async def send(self, buf: bytearray, start: int, end: int) -> bool:
        p = self._protocol
        await p.writable.wait()  # the transport's buffer is below its high-water mark
        if p.disconnected or p.close_sent or p.conn.state is not State.OPEN or p.transport.is_closing():
            return False
        n = end - start
        if n < 126:
            header = struct.pack("!BB", 0x82, n)  # FIN + binary; server frames are not masked
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x82, 126, n)
        else:
            header = struct.pack("!BBQ", 0x82, 127, n)
        first = start - len(header)
        if first < 0:
            raise ValueError(f"BinaryFrames.send needs {len(header)} bytes free before the payload")
        buf[first:start] = header
        p.transport.write(memoryview(buf)[first:end])
        return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol offering :class:`BinaryFrames` to the application."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if not self.close_sent and not self.conn.extensions:  # accepted, and frames are sent as they are
            self.scope["extensions"][BINARY_FRAMES] = {"frames": BinaryFrames(self)}
