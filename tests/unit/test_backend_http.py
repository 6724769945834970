"""The backend adapter (``dockext.server.backend_http``) against real unix-socket servers written per test.

Each backend here answers with exact bytes, so the cases a real backend may produce are all covered: kept-alive
connections, chunked bodies, bodies that end when the connection closes, HEAD, 1xx before the answer, a backend
that drops a kept-alive connection, one that breaks off, one that talks nonsense, and one that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dockext.errors import BackendNotReady
from dockext.installer import Installer
from dockext.server import backend_http
from dockext.server.backend_http import BackendPool
from tests.support.aio import run

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def backend(path: Path, handler: Handler) -> AsyncIterator[list[int]]:
    """Serve ``handler`` on ``path``; yields a list that counts accepted connections."""
    accepted: list[int] = []

    async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    server = await asyncio.start_unix_server(on_connect, str(path))
    try:
        yield accepted
    finally:
        server.close()


async def read_request(r: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await r.readexactly(length)


def get(target: bytes = b"/", method: bytes = b"GET", body: bytes = b"") -> bytes:
    extra = b"content-length: %d\r\n" % len(body) if body or method == b"POST" else b""
    return method + b" " + target + b" HTTP/1.1\r\nhost: localhost\r\n" + extra + b"\r\n"


async def fetch(pool: BackendPool, target: bytes = b"/", method: bytes = b"GET", body: bytes = b"") -> tuple[
    int, dict[bytes, bytes], bytes
]:
    answer = await pool.request(get(target, method, body), body, method=method)
    data = b"".join([c async for c in answer.chunks()])
    return answer.status, {k.lower(): v for k, v in answer.headers}, data


def test_kept_alive_connection_is_reused(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(r)
            seen.append(head.split(b"\r\n")[0] + b" " + body)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok")

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler) as accepted:
            pool = BackendPool(tmp_path / "b.sock")
            for i in range(5):
                status, _, data = await fetch(pool, b"/n/%d" % i)
                assert (status, data) == (200, b"ok")
            answer = await pool.request(get(b"/post", b"POST", b"xyz"), b"xyz", method=b"POST")
            assert [v for k, v in answer.headers if k.lower() == b"set-cookie"] == [b"a=1", b"b=2"]
            assert answer.complete and answer.body() == b"ok"
            assert len(accepted) == 1  # one connection for six requests
            await pool.aclose()
        assert seen == [*(b"GET /n/%d HTTP/1.1 " % i for i in range(5)), b"POST /post HTTP/1.1 xyz"]

    run(main())


def test_concurrent_requests_use_separate_connections(tmp_path: Path) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            await asyncio.sleep(0.05)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler) as accepted:
            pool = BackendPool(tmp_path / "b.sock")
            results = await asyncio.gather(*(fetch(pool) for _ in range(4)))
            assert [r[2] for r in results] == [b"x"] * 4
            assert len(accepted) == 4
            await asyncio.gather(*(fetch(pool) for _ in range(4)))
            assert len(accepted) == 4  # the four idle ones were reused
            await pool.aclose()

    run(main())


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    closed: list[int] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(r)
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        except asyncio.IncompleteReadError:
            closed.append(1)  # the proxy closed its end
            raise

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler) as accepted:
            pool = BackendPool(tmp_path / "b.sock", idle_timeout=1.0)
            await asyncio.gather(*(fetch(pool) for _ in range(3)))
            assert len(accepted) == 3
            await asyncio.sleep(0.05)
            await fetch(pool)  # taken out of the pool before its time: reused, and its expiry starts again
            assert len(accepted) == 3 and closed == []
            async with asyncio.timeout(10):
                while len(closed) < 3:
                    await asyncio.sleep(0.05)
            assert (await fetch(pool))[2] == b"x"  # a new connection after the idle ones went
            assert len(accepted) == 4
            await pool.aclose()

    run(main())


def test_chunked_and_until_close_bodies(tmp_path: Path) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head, _ = await read_request(r)
        if b"/chunked" in head:
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await w.drain()
            await asyncio.sleep(0.05)
            w.write(b"6\r\n world\r\n0\r\n\r\n")
            await read_request(r)  # still alive: a second request on the same connection
            w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:  # HTTP/1.0 style: no length, the body ends when the connection closes
            w.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
            await w.drain()
            await asyncio.sleep(0.05)
            w.write(b"part two")

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler) as accepted:
            pool = BackendPool(tmp_path / "b.sock")
            assert await fetch(pool, b"/chunked") == (200, {b"transfer-encoding": b"chunked"}, b"hello world")
            status, _, data = await fetch(pool, b"/after")
            assert (status, data, len(accepted)) == (204, b"", 1)
            status, _, data = await fetch(pool, b"/eof")
            assert (status, data) == (200, b"part one, part two")
            assert len(accepted) == 2
            await pool.aclose()

    run(main())


def test_head_and_informational_answers(tmp_path: Path) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(r)
            if head.startswith(b"HEAD"):
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler):
            pool = BackendPool(tmp_path / "b.sock")
            answer = await pool.request(get(b"/", b"HEAD"), method=b"HEAD")
            assert answer.complete and answer.status == 200 and answer.body() == b""
            assert dict(answer.headers)[b"Content-Length"] == b"1000"
            status, headers, data = await fetch(pool, b"/x", b"POST", b"{}")
            assert (status, data) == (201, b"done")
            assert b"link" not in headers  # the 103's headers are not the answer's
            await pool.aclose()

    run(main())


def test_a_dropped_kept_alive_connection_is_retried_only_for_idempotent_methods(tmp_path: Path) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await read_request(r)  # the second request on this connection: dropped without a word

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler) as accepted:
            pool = BackendPool(tmp_path / "b.sock")
            assert (await fetch(pool))[2] == b"ok"
            assert (await fetch(pool))[2] == b"ok"  # dropped, sent again on a new connection
            assert len(accepted) == 2
            with pytest.raises(BackendNotReady, match="was not repeated"):
                await fetch(pool, b"/x", b"POST", b"1")
            await pool.aclose()

    run(main())


def test_broken_answers_are_clear_errors(tmp_path: Path) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head, _ = await read_request(r)
        if b"/garbage" in head:
            w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        elif b"/cut" in head:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        elif b"/silent" in head:
            pass  # closes without answering
        else:
            await asyncio.sleep(10)

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler):
            pool = BackendPool(tmp_path / "b.sock", answer_timeout=0.3)
            with pytest.raises(BackendNotReady, match="invalid HTTP response"):
                await fetch(pool, b"/garbage")
            with pytest.raises(BackendNotReady, match="in the middle of its answer"):
                await fetch(pool, b"/cut")
            with pytest.raises(BackendNotReady, match="closed the connection before answering"):
                await fetch(pool, b"/silent")
            with pytest.raises(BackendNotReady, match=r"did not answer within 0\.3 s"):
                await fetch(pool, b"/slow")
            await pool.aclose()

    run(main())


def test_more_than_the_answer_in_one_read_never_reaches_another_request(tmp_path: Path) -> None:
    """Found by a bug hunt: a second, unasked answer in the same read put the connection in the pool twice (two
    requests then shared it: an AssertionError, a 500), and a part of one left the parser mid-message for the next
    request, which then waited forever. The connection is closed instead; the next requests get their own."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(r)
            target = head.split(b" ")[1]
            if target == b"/extra":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
            elif target == b"/partial":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlong!"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nsmuggled")
            else:
                await asyncio.sleep(0.05)
                body = b"answer to " + target
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler) as accepted:
            pool = BackendPool(tmp_path / "b.sock", answer_timeout=3)
            assert (await fetch(pool, b"/extra"))[2] == b"first"
            await asyncio.sleep(0.05)
            assert pool._idle == []  # not pooled (once or twice): closed
            got = await asyncio.gather(fetch(pool, b"/a"), fetch(pool, b"/b"))
            assert [g[2] for g in got] == [b"answer to /a", b"answer to /b"]
            assert len(pool._idle) == 2  # /a's and /b's
            assert (await fetch(pool, b"/partial"))[2] == b"long!"
            await asyncio.sleep(0.05)
            assert len(pool._idle) == 1  # /partial's is not pooled again
            assert (await asyncio.wait_for(fetch(pool, b"/next"), 5))[2] == b"answer to /next"
            assert len(accepted) == 3  # /extra's, then /a's and /b's, used again
            await pool.aclose()

    run(main())


def test_a_backend_that_switches_protocols_is_an_error_not_a_101_for_the_browser(tmp_path: Path) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await asyncio.sleep(1)

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler):
            pool = BackendPool(tmp_path / "b.sock", answer_timeout=3)
            with pytest.raises(BackendNotReady, match="switched protocols"):
                await fetch(pool, b"/switch")
            await pool.aclose()

    run(main())


def test_connect_errors_name_the_cause(tmp_path: Path) -> None:
    async def main() -> None:
        pool = BackendPool(tmp_path / "missing.sock")
        with pytest.raises(BackendNotReady, match=r"connect ENOENT missing\.sock"):
            await fetch(pool)
        import socket

        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(tmp_path / "dead.sock"))  # bound, never listening
        with pytest.raises(BackendNotReady, match=r"connect ECONNREFUSED dead\.sock"):
            await fetch(BackendPool(tmp_path / "dead.sock"))
        dead.close()

    run(main())


def test_a_large_body_pauses_the_backend_until_it_is_read(tmp_path: Path) -> None:
    size = 8 * backend_http.PAUSE_AT
    sent = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        w.write(b"x" * size)
        await w.drain()
        sent.set()

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler):
            pool = BackendPool(tmp_path / "b.sock")
            answer = await pool.request(get())
            await asyncio.sleep(0.3)
            # nobody reads: dockext holds at most about PAUSE_AT plus the kernel's buffers, and the backend waits
            assert not sent.is_set() and not answer.complete
            total = 0
            async for chunk in answer.chunks():
                total += len(chunk)
            assert total == size and sent.is_set()
            await pool.aclose()

    run(main())


def test_abort_closes_the_backend_connection(tmp_path: Path) -> None:
    closed = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while True:
                w.write(b"7\r\ndata: x\n\r\n")
                await w.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()

    async def main() -> None:
        async with backend(tmp_path / "b.sock", handler):
            pool = BackendPool(tmp_path / "b.sock")
            answer = await pool.request(get())
            async for chunk in answer.chunks():
                assert chunk.startswith(b"data: x")
                break
            answer.abort()
            async with asyncio.timeout(5):
                await closed.wait()
            with pytest.raises(BackendNotReady):
                async for _ in answer.chunks():
                    pass
            await pool.aclose()

    run(main())


def test_a_full_accept_queue_is_waited_for_not_an_error(tmp_path: Path) -> None:
    """A backend that accepts slowly, with a queue of one (Python's http.server keeps five)."""
    import socket
    import threading

    path = tmp_path / "slow.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        for _ in range(8):
            time.sleep(0.02)
            conn, _ = listener.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()

    async def main() -> None:
        pool = BackendPool(path)
        results = await asyncio.gather(*(fetch(pool) for _ in range(8)))
        assert [r[2] for r in results] == [b"ok"] * 8
        await pool.aclose()

    try:
        run(main())
    finally:
        listener.close()


def test_a_link_the_backend_puts_at_its_socket_path_is_never_followed(tmp_path: Path) -> None:
    """Found in a security review: a backend replaced its socket with a link to /var/run/docker.sock, and
    `vm.service` reached the engine's API (and through it the host as root) with every grant denied. The
    socket file itself is connected to, never what a link there names; the install's probe is the same."""
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nengine")

    gs = tmp_path / "gs"
    gs.mkdir()
    (gs / "backend.sock").symlink_to(tmp_path / "engine.sock")  # what the backend made at its socket's path
    (gs / "dir.sock").mkdir()

    async def main() -> None:
        async with backend(tmp_path / "engine.sock", handler):
            assert await fetch(BackendPool(tmp_path / "engine.sock")) == (200, {b"content-length": b"6"}, b"engine")
            for name in ("backend.sock", "dir.sock"):
                pool = BackendPool(gs / name)
                with pytest.raises(BackendNotReady, match="it is not a socket \\(a link or another file\\)"):
                    await fetch(pool)
                await pool.aclose()
            probe = Installer._probe_local(gs / "backend.sock")
            why = await asyncio.to_thread(probe)
            assert why is not None and "it is not a socket" in why
            assert await asyncio.to_thread(Installer._probe_local(tmp_path / "engine.sock")) is None

    run(main())
