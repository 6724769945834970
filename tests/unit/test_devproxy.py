"""The dev-mode relay of a dev server's WebSocket (``server/devproxy.py``), against a real websockets server on
127.0.0.1 playing the dev server. The whole dev loop is proven in Chromium by tests/e2e/test_devmode.py."""

from __future__ import annotations

import asyncio
import logging
import threading
import types
from collections.abc import Iterator

import pytest
import websockets
import websockets.asyncio.client
import websockets.asyncio.server
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from dockext.server import devproxy
from dockext.server.run import server_config
from tests.support.aio import run
from tests.support.server import listening_socket, uvicorn_in_thread


@pytest.fixture
def dying_dev_server() -> Iterator[int]:
    """A dev server whose socket takes one message, then dies without a close frame (Vite restarted, killed)."""
    port: list[int] = []
    stop = threading.Event()

    async def handler(conn: websockets.asyncio.server.ServerConnection) -> None:
        await conn.recv()
        conn.transport.abort()

    async def main() -> None:
        async with websockets.asyncio.server.serve(handler, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    while not port:
        threading.Event().wait(0.02)
    yield port[0]
    stop.set()
    thread.join(5)


def test_a_dev_server_that_dies_closes_the_pages_socket_with_a_code_a_frame_may_carry(
    dying_dev_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in a review: the relay passed the dev server's 1006 (no close frame: the connection broke) on to the
    page, which no close frame may carry; websockets refused it, the server logged an exception and the page got
    no close frame. It gets 1011 now, and its client reconnects."""
    inst = types.SimpleNamespace(dev=types.SimpleNamespace(ui_source=f"http://127.0.0.1:{dying_dev_server}"))

    async def endpoint(ws: WebSocket) -> None:
        await devproxy.relay_websocket(inst, ws, "/", "")  # type: ignore[arg-type]

    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    sock = listening_socket(8)

    async def page() -> int | None:
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
        async with websockets.asyncio.client.connect(url, proxy=None) as c:
            await c.send("hello")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(c.recv(), 10)
            return c.close_code

    with caplog.at_level(logging.ERROR, logger="uvicorn.error"), \
            uvicorn_in_thread(server_config(app, lifespan="off", loop="asyncio"), sock):
        assert run(page()) == 1011
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("code", "sent"), [(None, 1000), (1005, 1000), (1006, 1011), (1015, 1011), (1000, 1000),
                                             (1001, 1001), (4000, 4000)])
def test_close_codes_are_passed_on_when_a_frame_may_carry_them(code: int | None, sent: int) -> None:
    assert devproxy._sendable(code) == sent


@pytest.mark.parametrize(("target", "base", "expected"), [
    ("/welcome/", "http://127.0.0.1:5173", "/i/CAP/welcome/"),  # a path of the dev server's: under the capability
    ("http://127.0.0.1:5173/a?b=1", "http://127.0.0.1:5173", "/i/CAP/a?b=1"),
    ("http://127.0.0.1:5173", "http://127.0.0.1:5173", "/i/CAP/"),
    ("/app/x", "http://127.0.0.1:5173/app", "/i/CAP/x"),  # the base's own path is the page's root
    ("/app", "http://127.0.0.1:5173/app", "/i/CAP/"),
    ("/other", "http://127.0.0.1:5173/app", "/other"),  # outside the base: left as it is
    ("next", "http://127.0.0.1:5173", "next"),  # relative: the browser resolves it under /i/CAP/ already
    ("//evil.example/x", "http://127.0.0.1:5173", "//evil.example/x"),  # another site (scheme-relative)
    ("/\\evil.example/x", "http://127.0.0.1:5173", "/\\evil.example/x"),  # which browsers read as `//`
    ("https://elsewhere.example/", "http://127.0.0.1:5173", "https://elsewhere.example/"),
    ("http://127.0.0.1:51730/x", "http://127.0.0.1:5173", "http://127.0.0.1:51730/x"),  # not the same server
])
def test_a_dev_servers_redirect_to_itself_stays_on_the_extensions_path(target, base, expected):
    assert devproxy.location(target, base, "/i/CAP") == expected
    if expected.startswith("/i/CAP"):  # the dev server's own absolute paths (outside /i/) keep theirs
        assert devproxy.location(target, base, "") == expected[len("/i/CAP"):]
