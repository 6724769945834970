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
from dockext.server.wire import BINARY_FRAMES, COALESCE_MAX, HEADROOM, CoalescingTransport
from tests.support.aio import run
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
