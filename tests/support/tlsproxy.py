"""A TLS-terminating proxy in front of a test server, as stunnel or HAProxy in TCP mode would run it: it serves
TLS with a test certificate on 127.0.0.1 and passes the bytes of each connection, as they come, to a plain TCP
port (so the browser's Host header reaches the server unchanged)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.contextmanager
def tls_proxy(cert: Path, key: Path, upstream_port: int) -> Iterator[int]:
    """Runs the proxy while the block runs; yields the port it serves TLS on."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    started: list[asyncio.Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def start() -> None:
        started.append(await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))

    # in a thread of its own from the start: the caller's thread may run a loop already (Playwright's sync API)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield int(started[0].sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(started[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
