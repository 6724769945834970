"""dockext's uvicorn protocols (``dockext.server.wire``): responses in one write, binary frames without copies.

The transport wrapper is checked on a recording transport (what is written, when, in which order); the
protocols on a real uvicorn server on 127.0.0.1 with a real WebSocket client, so the frames it writes are the
ones a browser would parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from websockets.sync.client import connect

from dockext.server import wire
from dockext.server.run import server_config
from dockext.server.wire import BINARY_FRAMES, COALESCE_MAX, HEADROOM, CoalescingTransport
from tests.support.aio import run
from tests.support.procs import wait_until
from tests.support.server import listening_socket, uvicorn_in_thread


class Recorder:
    """The parts of an asyncio transport the wrapper uses, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.buffered = 0

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_small_writes_of_one_loop_step_leave_together_in_order() -> None:
    async def main() -> None:
        rec = Recorder()
        t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"")
        t.write(memoryview(b"body"))
        assert rec.writes == [] and t.get_write_buffer_size() == 23
        await asyncio.sleep(0)
        assert rec.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        t.write(b"next")
        t.close()  # what is waiting goes before the close
        assert rec.writes[-1] == b"next" and rec.closed
        assert t.get_extra_info("peername") == "info:peername"  # everything else is the real transport's

    run(main())


def test_a_whole_answer_goes_at_once_after_what_waits() -> None:
    async def main() -> None:
        rec = Recorder()
        t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"earlier")
        t.write_now(b"whole answer")
        assert rec.writes == [b"earlier", b"whole answer"]  # without waiting for the loop, in order
        await asyncio.sleep(0)
        assert rec.writes == [b"earlier", b"whole answer"]
        rec.closed = True
        t.write_now(b"late")  # nothing is written to a closing transport
        assert rec.writes == [b"earlier", b"whole answer"]

    run(main())


def test_large_writes_go_at_once_after_what_waits() -> None:
    async def main() -> None:
        rec = Recorder()
        t = CoalescingTransport(rec, asyncio.get_running_loop())  # type: ignore[arg-type]
        big = bytearray(b"x" * COALESCE_MAX)
        t.write(b"head")
        t.write(memoryview(big))
        assert rec.writes == [b"head", bytes(big)]  # no waiting for the loop, order kept
        for _ in range(COALESCE_MAX // 1024):  # many small ones reach the limit: written then, not later
            t.write(b"y" * 1024)
        assert rec.writes[-1] == b"y" * COALESCE_MAX and t.get_write_buffer_size() == 0
        t.write(b"dropped")
        t.abort()
        await asyncio.sleep(0)
        assert rec.aborted and rec.writes[-1] != b"dropped"

    run(main())


# -- a real server ---------------------------------------------------------------------------------------------
SIZES = [0, 1, 125, 126, 300, 65535, 65536, 300_000]


def pattern(n: int) -> bytes:
    return bytes((i * 7 + n) % 251 for i in range(n))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b" world"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        if BINARY_FRAMES not in scope["extensions"]:
            await send({"type": "websocket.send", "text": "no binary_frames extension"})
            await send({"type": "websocket.close", "code": 1000})
            return
        frames = scope["extensions"][BINARY_FRAMES]["frames"]
        for n in SIZES:
            buf = bytearray(HEADROOM) + pattern(n)
            assert await frames.send(buf, HEADROOM, HEADROOM + n)
        try:
            await frames.send(bytearray(b"x" * 70_000), 3, 70_000)  # room for 10 header bytes is missing
        except ValueError as exc:
            await send({"type": "websocket.send", "text": f"refused: {exc}"})
        await send({"type": "websocket.close", "code": 1000})


@contextlib.contextmanager
def running(*, deflate: bool) -> Iterator[int]:
    sock = listening_socket(16)
    config = uvicorn.Config(app, http=wire.HttpProtocol, ws=wire.WebSocketProtocol, ws_per_message_deflate=deflate,
                            loop="asyncio", lifespan="off", log_level="warning")
    with uvicorn_in_thread(config, sock):
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    with running(deflate=False) as port:
        yield port


@pytest.fixture(scope="module")
def deflate_server() -> Iterator[int]:
    with running(deflate=True) as port:
        yield port


def test_binary_frames_of_every_length_form_arrive_intact(server: int) -> None:
    with connect(f"ws://127.0.0.1:{server}/", compression=None, max_size=None) as ws:
        for n in SIZES:
            message = ws.recv(timeout=10)
            assert isinstance(message, bytes) and len(message) == n
            assert message == pattern(n)
        assert ws.recv(timeout=10) == "refused: BinaryFrames.send needs 10 bytes free before the payload"


def test_http_response_is_whole_on_the_wire(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        for _ in range(2):  # twice on one kept-alive connection
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                chunk = s.recv(65536)
                assert chunk
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert body == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def test_not_offered_when_permessage_deflate_is_negotiated(deflate_server: int) -> None:
    """A negotiated extension would change the frames: then the application sends through ASGI as usual."""
    with connect(f"ws://127.0.0.1:{deflate_server}/", compression="deflate") as ws:
        assert ws.recv(timeout=10) == "no binary_frames extension"


# -- an answer given before the request's body came whole (a 413) ----------------------------------------
EARLY_LIMIT = 1000
early_seen: list[str] = []


async def early_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 413 once a body passes EARLY_LIMIT, without reading on (as the proxy does), and without saying
    `Connection: close`; ``/close`` answers at once with `Connection: close` (as the upload's refusals do)."""
    early_seen.append(f"{scope['method']} {scope['path']}")
    headers = [(b"content-length", b"2")]
    if scope["path"] == "/close":
        await asyncio.sleep(0.2)  # the next request is in by then, its body still coming
        headers.append((b"connection", b"close"))
    else:
        size = 0
        while size <= EARLY_LIMIT:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    await send({"type": "http.response.start", "status": 413 if scope["path"] != "/close" else 200,
                "headers": headers})
    await send({"type": "http.response.body", "body": b"no"})


@contextlib.contextmanager
def early_server() -> Iterator[int]:
    early_seen.clear()
    sock = listening_socket(16)
    config = uvicorn.Config(early_app, http=wire.HttpProtocol, loop="asyncio", lifespan="off", log_level="error")
    with uvicorn_in_thread(config, sock):
        yield sock.getsockname()[1]


def until_closed(c: socket.socket, trickle: bytes, within: float = 30.0) -> bytes:
    """What the server sends until it ends the connection, while the client keeps sending ``trickle``;
    AssertionError if it is still open after ``within`` seconds (a connection held open by a trickle)."""
    got = b""
    c.settimeout(0.2)
    end = time.monotonic() + within
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            c.sendall(trickle)
        try:
            data = c.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return got
        if not data:
            return got
        got += data
    raise AssertionError(f"still open after {within} s; got {got[:200]!r}")


def test_a_body_refused_half_way_ends_the_connection_however_the_client_trickles() -> None:
    with early_server() as port, socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"x" * 2000
                  + b"\r\n")
        got = until_closed(c, b"1\r\nx\r\n")
    assert got.startswith(b"HTTP/1.1 413") and got.endswith(b"no"), got


def test_no_request_pipelined_behind_a_closing_answer_is_run() -> None:
    """The first request's answer says `Connection: close`: the second, sent right behind it with its body
    still coming, is neither run nor answered."""
    with early_server() as port, socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /delete-everything HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        got = until_closed(c, b"x")
    assert got.count(b"HTTP/1.1") == 1 and got.startswith(b"HTTP/1.1 200"), got
    assert early_seen == ["GET /close"]


# -- the shortcut past the ASGI cycle (HttpProtocol, app.shortcut) ------------------------------------------
BIG = pattern(512 << 10)  # an answer of the size the proxy passes on whole


class ShortcutApp:
    """Offers a shortcut for paths under ``/fast``: the handler answers ``fast:<method>:<body>`` itself (after
    0.3 s for ``/fast/slow``), hands ``/fast/stream`` over to an ASGI app, raises for ``/fast/raise`` and gives a
    header that would split the answer for ``/fast/bad``. Every other path is answered ``asgi:<path>`` through
    ASGI. What went which way is recorded."""

    def __init__(self) -> None:
        self.taken: list[tuple[bytes, bytes, bytes]] = []
        self.asgi: list[str] = []

    def shortcut(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> wire.Handler | None:
        if not url.startswith(b"/fast"):
            return None
        assert (b"host", b"x") in headers  # names in lower case, as in ASGI

        async def handler(body: bytes) -> Any:
            self.taken.append((method, url, body))
            if url == b"/fast/slow":
                await asyncio.sleep(0.3)
            elif url == b"/fast/raise":
                raise RuntimeError("boom")
            elif url == b"/fast/bad":
                return wire.Complete(200, [(b"x-split", b"a\r\nx-injected: 1")], b"")
            elif url.startswith(b"/fast/stream"):
                return self.stream
            elif url == b"/fast/big":
                return wire.Complete(200, [(b"content-type", b"application/octet-stream")], BIG)
            return wire.Complete(200, [(b"content-type", b"text/plain")], b"fast:%s:%s" % (method, body))

        return handler

    async def stream(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", scope["method"].encode(), b" ", scope["path"].encode(),
                     b"?", scope["query_string"]):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.asgi.append(scope["path"])
        body = f"asgi:{scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def shortcut_server() -> Iterator[tuple[int, ShortcutApp, uvicorn.Server]]:
    sock = listening_socket(16)
    shortcut_app = ShortcutApp()
    config = uvicorn.Config(shortcut_app, http=wire.HttpProtocol, loop="asyncio", lifespan="off", log_level="critical",
                            proxy_headers=False)  # (a middleware around the app would hide its shortcut)
    with uvicorn_in_thread(config, sock) as server:
        yield sock.getsockname()[1], shortcut_app, server


def answers(c: socket.socket, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """The next ``count`` answers on ``c``: (status line, headers, body), bodies framed by length or chunks."""
    out: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    buf = b""

    def more() -> None:
        nonlocal buf
        data = c.recv(65536)
        assert data, f"closed after {len(out)} answer(s); pending {buf[:200]!r}"
        buf += data

    for _ in range(count):
        while b"\r\n\r\n" not in buf:
            more()
        head, buf = buf.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                while b"\r\n" not in buf:
                    more()
                size_line, buf = buf.split(b"\r\n", 1)
                size = int(size_line, 16)
                while len(buf) < size + 2:
                    more()
                body, buf = body + buf[:size], buf[size + 2:]
                if size == 0:
                    break
        else:
            size = int(headers.get(b"content-length", b"0"))
            while len(buf) < size:
                more()
            body, buf = buf[:size], buf[size:]
        out.append((status, headers, body))
    assert buf == b"", buf
    return out


def closed(c: socket.socket) -> bool:
    c.settimeout(5)
    try:
        return c.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_taken_request_is_answered_whole_with_its_body_on_a_kept_alive_connection() -> None:
    with shortcut_server() as (port, app_, _), socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, headers, body)] = answers(c, 1)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"fast:GET:")
        assert headers[b"content-length"] == b"9" and b"date" in headers  # uvicorn's default headers too
        assert b"connection" not in headers
        c.sendall(b"POST /fast/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        c.sendall(b"PUT /fast/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert [a[2] for a in answers(c, 2)] == [b"fast:POST:hello", b"fast:PUT:abcde"]
        c.sendall(b"HEAD /fast/d HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        c.settimeout(10)
        data = b""
        while not data.endswith(b"asgi:/other"):
            data += c.recv(65536)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.count(b"HTTP/1.1 200 OK") == 2
        assert b"fast:" not in data  # HEAD: no body written
    assert [t[:2] for t in app_.taken] == [(b"GET", b"/fast/a"), (b"POST", b"/fast/b"), (b"PUT", b"/fast/c"),
                                           (b"HEAD", b"/fast/d")]
    assert app_.asgi == ["/other"]


def test_requests_pipelined_behind_a_taken_one_are_answered_in_order() -> None:
    with shortcut_server() as (port, app_, _), socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /fast/slow HTTP/1.1\r\nHost: x\r\n\r\nGET /asgi HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /fast/c HTTP/1.1\r\nHost: x\r\n\r\nGET /fast/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        bodies = [a[2] for a in answers(c, 4)]
    # uvicorn queues what comes behind a request in flight, and serves it the ASGI way, in order
    assert bodies == [b"fast:GET:", b"asgi:/asgi", b"asgi:/fast/c", b"asgi:/fast/stream"]
    assert app_.asgi == ["/asgi", "/fast/c", "/fast/stream"]


def test_http_1_0_and_connection_close_end_the_connection_after_the_answer() -> None:
    with shortcut_server() as (port, _, _):
        for request in (b"GET /fast/a HTTP/1.0\r\nHost: x\r\n\r\n",
                        b"GET /fast/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        b"GET /fast/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(request)
                [(_, headers, body)] = answers(c, 1)
                assert headers[b"connection"] == b"close" and body.startswith((b"fast:GET:", b"one two"))
                assert closed(c)


def test_an_answer_handed_over_to_asgi_streams_through_uvicorns_cycle() -> None:
    with shortcut_server() as (port, app_, _), socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"POST /fast/stream/x%20y?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        [(status, headers, body)] = answers(c, 1)
        assert status == b"HTTP/1.1 200 OK" and headers[b"transfer-encoding"] == b"chunked"
        assert body == b"one two POST /fast/stream/x y?q=1"  # the scope as uvicorn would have made it
        c.sendall(b"GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n")  # and the connection goes on
        assert answers(c, 1)[0][2] == b"fast:GET:"
    assert app_.taken[0] == (b"POST", b"/fast/stream/x%20y?q=1", b"hi")


def test_a_handler_that_fails_gives_500_and_a_header_that_would_split_the_answer_gives_nothing() -> None:
    with shortcut_server() as (port, _, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /fast/raise HTTP/1.1\r\nHost: x\r\n\r\n")
            [(status, headers, body)] = answers(c, 1)
            assert (status, body, headers[b"connection"]) == (b"HTTP/1.1 500 Internal Server Error",
                                                             b"Internal Server Error", b"close")
            assert closed(c)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /fast/bad HTTP/1.1\r\nHost: x\r\n\r\n")
            assert closed(c)  # as uvicorn does: nothing of it is written


def test_a_client_gone_before_the_answer_gets_none_and_the_server_serves_on() -> None:
    with shortcut_server() as (port, app_, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /fast/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answers(c, 1)[0][2] == b"fast:GET:"
    assert [t[1] for t in app_.taken] == [b"/fast/slow", b"/fast/a"]


class EndlessStream:
    """An ASGI app whose answer to ``/events`` is an event stream that never ends by itself, whose answer to
    ``/pending`` begins 0.3 s after the request, and which answers ``/command`` (marked ``ENDS_AT_STOP``) only
    when its client goes; it records how each wait ended and which requests came."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.seen.append(scope["path"])
        if scope["path"] == "/command":
            scope[wire.ENDS_AT_STOP] = True
            while (message := await receive())["type"] == "http.request":
                pass
            self.ended.append(f"command: {message['type']}")
            return
        if scope["path"] == "/pending":
            await asyncio.sleep(0.3)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": b"late"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        try:
            while (message := await receive())["type"] == "http.request":  # (the empty body)
                pass
            self.ended.append(message["type"])  # only the client's going (or the server's) ends it
        except asyncio.CancelledError:
            self.ended.append("cancelled")  # what uvicorn does once its grace period is over
            raise


def test_a_shutdown_ends_a_streamed_answer_and_a_marked_wait_at_once_and_lets_one_not_yet_begun_finish() -> None:
    """`dockext serve` stopped while a dashboard is open: its event stream (or a page's command) would hold the
    stop for the whole grace period, then be cancelled with an error in the log."""
    app_ = EndlessStream()
    config = server_config(app_, loop="asyncio")  # the server's own settings (a 5 s grace period)
    sock = listening_socket()
    with uvicorn_in_thread(config, sock) as server:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stream, \
                socket.create_connection(("127.0.0.1", port), timeout=10) as command, \
                socket.create_connection(("127.0.0.1", port), timeout=10) as pending:
            stream.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"data: 1" in stream.recv(65536)
            command.sendall(b"POST /command HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            pending.sendall(b"GET /pending HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: len(app_.seen) >= 3, interval=0.005)
            server.should_exit = True
            while stream.recv(65536):  # the rest of the stream, then its end
                pass
            assert closed(command)
            # the app notes the disconnect just after the client sees the close
            wait_until(lambda: len(app_.ended) >= 2, interval=0.005)
            # both ended by the stop, not cancelled at the end of the grace period
            assert sorted(app_.ended) == ["command: http.disconnect", "http.disconnect"]
            [(status, headers, body)] = answers(pending, 1)
            assert (status, body, headers[b"connection"]) == (b"HTTP/1.1 200 OK", b"late", b"close")
            assert closed(pending)


def test_a_shutdown_lets_a_taken_request_finish_then_closes_its_connection() -> None:
    with shortcut_server() as (port, app_, server), socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /fast/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: bool(app_.taken), interval=0.005)  # until the handler runs (its 0.3 s have begun)
        server.should_exit = True
        [(_, headers, body)] = answers(c, 1)
        assert body == b"fast:GET:" and headers[b"connection"] == b"close"
        assert closed(c)


def test_a_client_that_does_not_read_its_answers_is_not_answered_into_memory() -> None:
    """Found by a bug hunt: the shortcut wrote every whole answer whatever the connection held already, so a page
    sending requests and reading nothing made the server buffer 47 MiB for 100 requests of 512 KiB. It now waits for
    the client as uvicorn's cycle does (further requests queue, reading pauses), and every answer still comes, in
    order, once the client reads."""
    with shortcut_server() as (port, app, server):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", port))
        with c:
            for _ in range(40):
                c.sendall(b"GET /fast/big HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.02)
            time.sleep(0.3)
            [proto] = list(server.server_state.connections)
            assert proto.transport.get_write_buffer_size() < 2 * len(BIG)
            assert len(app.taken) < 10  # the rest wait in uvicorn's queue, unread
            c.settimeout(30)
            got = answers(c, 40)
        # each whole: the shortcut's, or (queued behind one in flight) the ASGI way's
        assert all(status == b"HTTP/1.1 200 OK" for status, _, _ in got)
        assert all(body in (BIG, b"asgi:/fast/big") for _, _, body in got)
        assert sum(body == BIG for _, _, body in got) == len(app.taken)


def test_garbage_pipelined_behind_a_request_in_flight_is_not_answered_in_its_place() -> None:
    """Found by a bug hunt: uvicorn's 400 for bytes its parser cannot read was written at once, so a client that
    pipelined garbage behind a request still being answered read the 400 as that request's answer."""
    with shortcut_server() as (port, app_, _), socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /fast/slow HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01 not http\r\n\r\n")
        got = until_closed(c, b"")
    assert app_.taken == [(b"GET", b"/fast/slow", b"")]
    assert not got.startswith(b"HTTP/1.1 400"), got
    with shortcut_server() as (port, _, _), socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"\x00\x01 not http\r\n\r\n")  # alone, it is still a 400
        assert until_closed(c, b"").startswith(b"HTTP/1.1 400 Bad Request")
