"""The real HTTP stack (uvicorn, httptools, dockext's protocols, the whole app) against hostile clients.

Starlette's TestClient never parses bytes from a socket, so these run the server as ``dockext serve`` does
(``run.server_config``) on 127.0.0.1, with extensions on disk and a recording backend on an extension's
socket, and send raw bytes. Reference security-reliability.md S35 (smuggling through the proxy) and S36
(head size, slow and silent connections).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server.run import server_config
from dockext.server.wire import MAX_HEAD, HttpProtocol
from tests.support.backends import RecordingBackend
from tests.support.server import listening_socket, uvicorn_in_thread

from .test_server import TOKEN, install_fake

HEAD_TIMEOUT = 1.0  # seconds, for the server under test (dockext's own are in wire)
BODY_TIMEOUT = 1.0
KEEP_ALIVE = 1  # seconds


class ShortTimeouts(HttpProtocol):
    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT


@dataclass
class Live:
    port: int
    state: HostState
    backend: RecordingBackend
    cap: str  # an open UI instance of extension A
    ext_host: str  # Host of extension A's origin

    def dashboard_head(self, extra: bytes = b"") -> bytes:
        return b"GET /login HTTP/1.1\r\nHost: dockext.localhost:%d\r\n%s\r\n" % (self.port, extra)

    def vm(self, method: bytes, path: bytes, extra: bytes = b"") -> bytes:
        return b"%s /i/%s/__dockext__/vm%s HTTP/1.1\r\nHost: %s\r\n%s" % (
            method, self.cap.encode(), path, self.ext_host.encode(), extra,
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("limits")
    a = install_fake(root, "acme_a")
    install_fake(root, "acme_b")
    sock = listening_socket(1024)
    port = sock.getsockname()[1]
    state = HostState(Layout(root), port=port, token=TOKEN)
    state.refresh()
    inst = state.open_instance(state.by_slug[a.origin_slug], f"http://dockext.localhost:{port}")
    backend = RecordingBackend(root / "gs" / a.vm.gs_key / a.vm.socket)
    config = server_config(create_app(state), http=ShortTimeouts, timeout_keep_alive=KEEP_ALIVE, loop="asyncio")
    try:
        with uvicorn_in_thread(config, sock):
            yield Live(port, state, backend, inst.cap, f"{a.origin_slug}.dockext.localhost:{port}")
    finally:
        backend.close()


def exchange(live: Live, data: bytes, *, timeout: float = 10) -> bytes:
    """Send ``data``, then read until the server closes the connection (or a whole answer came)."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=timeout) as s:
        s.sendall(data)
        return read_answer(s)


def read_answer(s: socket.socket) -> bytes:
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk
        head, sep, body = out.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return out


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(autouse=True)
def _clean(live: Live) -> None:
    live.backend.seen.clear()


# ---------------------------------------------------------------------------------------- S36: head size


def test_a_head_over_the_limit_is_refused_with_431_on_every_origin(live: Live) -> None:
    big = b"X-Big: " + b"a" * MAX_HEAD + b"\r\n"
    answer = exchange(live, live.dashboard_head(big))
    assert status(answer) == 431 and b"connection: close" in answer
    many = b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEAD // 8))
    assert status(exchange(live, live.vm(b"GET", b"/hello", many + b"\r\n"))) == 431
    assert live.backend.seen == []  # nothing of it reached the backend


def test_a_head_under_the_limit_and_a_large_body_are_served(live: Live) -> None:
    near = b"X-Near: " + b"a" * (MAX_HEAD - 1024) + b"\r\n"
    assert status(exchange(live, live.dashboard_head(near))) == 200
    body = b"b" * (4 << 20)  # the body does not count against the head's limit, even sent in one piece
    answer = exchange(live, live.vm(b"POST", b"/upload", b"Content-Length: %d\r\n\r\n" % len(body)) + body)
    assert status(answer) == 200
    assert [(m, p, len(b)) for m, p, _, b in live.backend.seen] == [("POST", "/upload", len(body))]


def headers_of(answer: bytes) -> dict[bytes, bytes]:
    head = answer.partition(b"\r\n\r\n")[0]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}


def cookie_bomb(count: int = 40, size: int = 4000) -> bytes:
    """The Cookie line of a browser holding ``count`` cookies of ``size`` bytes (an extension's page can set
    them for the dashboard's domain): Chromium keeps up to 180 such cookies per site."""
    return b"Cookie: " + b"; ".join(b"b%d=%s" % (i, b"x" * size) for i in range(count)) + b"\r\n"


@pytest.mark.parametrize("pieces", [1, 40], ids=["one-read", "many-reads"])
def test_a_head_too_large_for_its_cookies_asks_the_browser_to_clear_them(live: Live, pieces: int) -> None:
    """A cookie bomb: a page sent 431 for its cookies gets a page that says what happened and what to do, and
    ``Clear-Site-Data: "cookies"``, which makes the browser drop them (proven in Chromium by
    tests/e2e/test_security_cases.py). Whether the head came in one read or in many (as a browser's 160 KiB head
    does), on the dashboard's origin and on an extension's."""
    small = cookie_bomb(count=20)  # 80 KiB: one read of the server's
    big = cookie_bomb()
    bomb = small if pieces == 1 else big
    home = f'href="http://dockext.localhost:{live.port}/"'
    for request, link in (
        (live.dashboard_head(b"User-Agent: x\r\n" + bomb), f"<a {home}>Open the dashboard again</a>"),
        # an extension's page in its frame: the frame may not lead the tab away, a new tab it may open
        (live.vm(b"GET", b"/hello", b"Sec-Fetch-Dest: iframe\r\n" + bomb + b"Accept: */*\r\n\r\n"),
         f'Reload the browser tab (or <a {home} target="_blank" rel="noopener">open the dashboard in a new one</a>)'),
    ):
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
            step = -(-len(request) // pieces)
            for i in range(0, len(request), step):
                try:
                    s.sendall(request[i:i + step])
                except OSError:  # refused before the rest was sent: the answer is still there to read
                    break
            answer = read_answer(s)
        assert status(answer) == 431, answer[:300]
        headers = headers_of(answer)
        assert headers[b"clear-site-data"] == b'"cookies"' and headers[b"x-dockext-refused"] == b"cookies"
        assert headers[b"content-type"] == b"text/html; charset=utf-8"
        assert b"script-src" not in headers[b"content-security-policy"]  # default-src 'none': no script runs
        body = answer.partition(b"\r\n\r\n")[2].decode()
        assert "Too many cookies" in body and "log in" in body and "KiB of cookies" in body
        assert link in body, body
    assert live.backend.seen == []


def test_a_head_too_large_for_other_headers_leaves_the_cookies_alone(live: Live) -> None:
    """A page can make its own request heads large (a long URL, headers of its own) but cannot make the browser
    send more cookies without setting them: such a head gets a plain 431, and nobody's cookies are cleared."""
    half = b"Cookie: a=" + b"x" * (MAX_HEAD // 3) + b"\r\n"
    for extra in (b"X-Big: " + b"a" * MAX_HEAD + b"\r\n", half + b"X-Big: " + b"a" * MAX_HEAD + b"\r\n"):
        answer = exchange(live, live.dashboard_head(extra))
        assert status(answer) == 431
        assert b"clear-site-data" not in headers_of(answer) and b"x-dockext-refused" not in headers_of(answer)
        assert answer.endswith(b"request head over %d bytes" % MAX_HEAD)


# ------------------------------------------------------------------------------- S36: slow and silent


def test_slow_and_silent_connections_are_closed_while_others_are_answered(live: Live) -> None:
    """Hundreds of connections that send nothing, or half a head: a normal request is still answered, and the
    server closes each of them (after the keep-alive timeout, and the head timeout with a 408)."""
    silent = [socket.create_connection(("127.0.0.1", live.port), timeout=30) for _ in range(300)]
    slow = [socket.create_connection(("127.0.0.1", live.port), timeout=30) for _ in range(300)]
    try:
        for s in slow:
            s.sendall(b"GET /login HTTP/1.1\r\nHost: local")  # and nothing more
        assert status(exchange(live, live.dashboard_head())) == 200
        assert status(exchange(live, live.vm(b"GET", b"/hello", b"\r\n"))) == 200
        for s in silent:
            assert s.recv(1024) == b""  # closed by the server; a hung one fails with a socket timeout
        for s in slow:
            answer = read_answer(s)
            assert status(answer) == 408 and answer.endswith(b"request head not complete within 1 s")
    finally:
        for s in silent + slow:
            s.close()


def test_a_head_sent_slowly_but_in_time_is_served(live: Live) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        for piece in (b"GET /login HTTP/1.1\r\n", b"Host: dockext.localhost:%d\r\n" % live.port, b"\r\n"):
            s.sendall(piece)
            time.sleep(HEAD_TIMEOUT / 5)
        assert status(read_answer(s)) == 200


def test_a_stalled_body_ends_the_connection_and_a_slow_one_gets_through(live: Live) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall(live.vm(b"POST", b"/stalled", b"Content-Length: 100\r\n\r\n") + b"x" * 10)
        assert s.recv(1024) == b""  # closed by the server; a hung one fails with a socket timeout
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall(live.vm(b"POST", b"/slow", b"Content-Length: 15\r\n\r\n"))
        for _ in range(15):  # a byte every fifth of the timeout: slow, never stalled
            time.sleep(BODY_TIMEOUT / 5)
            s.sendall(b"y")
        assert status(read_answer(s)) == 200
    assert [(p, b) for _, p, _, b in live.backend.seen] == [("/slow", b"y" * 15)]


# ------------------------------------------------------------------------------ S35: smuggling attempts


@pytest.mark.parametrize("attempt", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello",
    b"X-A: a\rGET /smuggled HTTP/1.1\r\n\r\n",
    b"X-A: a\nGET /smuggled HTTP/1.1\r\n\r\n",
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
])
def test_ambiguous_requests_are_refused_before_the_backend(live: Live, attempt: bytes) -> None:
    answer = exchange(live, live.vm(b"POST", b"/echo", attempt))
    assert status(answer) == 400
    time.sleep(0.2)  # anything forwarded would have reached the backend by now
    assert live.backend.seen == []


def test_a_request_inside_a_body_stays_a_body(live: Live) -> None:
    inner = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    chunked = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    assert status(exchange(live, live.vm(b"POST", b"/echo", chunked))) == 200
    assert [(m, p, b) for m, p, _, b in live.backend.seen] == [("POST", "/echo", inner)]


def test_the_page_cannot_set_the_backends_host_or_upgrade_its_connection(live: Live) -> None:
    extra = b"Connection: keep-alive, Upgrade, X-Secret\r\nUpgrade: h2c\r\nX-Secret: 1\r\n\r\n"
    assert status(exchange(live, live.vm(b"GET", b"/hello", extra))) == 200
    [(_, _, raw, _)] = live.backend.seen
    headers = {k.lower(): v for k, v in raw.items()}
    assert headers["host"] == "localhost" and "upgrade" not in headers and "x-secret" not in headers
    assert "upgrade" not in headers.get("connection", "").lower()
