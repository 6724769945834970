"""dockext's Engine API client (src/dockext/engineapi.py) against a small HTTP server on a unix socket: what it
sends, how it reads answers and streams, its errors, and its kept-alive connections. The same client against
real engines (Docker, Podman, TLS, ssh) is every test of tests/engine and tests/e2e that installs."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from dockext.engineapi import APIError, BrokenAnswer, EngineAPI, NotFound, Unreachable, demux, query, registry_auth

Handler = Callable[[BaseHTTPRequestHandler], None]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeEngine:
    """An HTTP/1.1 server on a unix socket; ``routes`` maps "METHOD /path" (the query left out) to a handler."""

    def __init__(self, path: Path) -> None:
        self.routes: dict[str, Handler] = {
            "GET /version": lambda h: reply(h, 200, {"ApiVersion": "1.41"}),
        }
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.connections = 0
        engine = self

        class Handle(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                engine.connections += 1

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                engine.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                handler = engine.routes.get(f"{self.command} {path}")
                if handler is None:
                    reply(self, 404, {"message": f"page not found: {path}"})
                else:
                    handler(self)

            do_GET = do_POST = do_DELETE = do_HEAD = _any

        self.server = _Server(str(path), Handle)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(h: BaseHTTPRequestHandler, status: int, obj: Any = None, *, raw: bytes | None = None,
          headers: dict[str, str] | None = None) -> None:
    data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
    h.send_response(status)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def chunked(h: BaseHTTPRequestHandler, pieces: list[bytes]) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for piece in pieces:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.flush()
    h.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeEngine]:
    server = FakeEngine(tmp_path / "engine.sock")
    yield server
    server.close()


@pytest.fixture
def api(fake: FakeEngine, tmp_path: Path) -> Iterator[EngineAPI]:
    client = EngineAPI(f"unix://{tmp_path}/engine.sock", timeout=10)
    yield client
    client.close()


def test_requests_carry_the_version_the_engine_speaks_and_the_query_as_it_reads_it(fake, api):
    fake.routes["GET /v1.41/containers/json"] = lambda h: reply(h, 200, [{"Id": "a"}])
    assert api.containers(all=True, filters={"label": "x=1", "status": ["running", "exited"]}) == [{"Id": "a"}]
    assert api.containers() == [{"Id": "a"}]
    asked = [path for method, path, _, _ in fake.seen]
    assert asked[0] == "/version"  # asked once, first
    assert asked[1] == ("/v1.41/containers/json?all=1&filters=" +
                        "%7B%22label%22%3A+%5B%22x%3D1%22%5D%2C+%22status%22%3A+%5B%22running%22%2C+%22exited%22%5D%7D")
    assert asked[2] == "/v1.41/containers/json?all=0"
    assert fake.connections == 1  # one kept-alive connection for all three


def test_query_and_names_in_paths():
    assert query(None) == "" and query({"a": None}) == ""
    assert query({"force": True, "noprune": False, "tail": 20}) == "?force=1&noprune=0&tail=20"
    [filters] = urllib.parse.parse_qs(query({"filters": {"reference": "acme/x"}})[1:])["filters"]
    assert json.loads(filters) == {"reference": ["acme/x"]}


def test_an_image_name_with_a_digest_is_quoted_as_the_sdk_quotes_it(fake, api):
    fake.routes["GET /v1.41/images/acme/x%40sha256:ab/json"] = lambda h: reply(h, 200, {"Id": "sha256:1"})
    assert api.inspect_image("acme/x@sha256:ab") == {"Id": "sha256:1"}


def test_errors_carry_the_engines_own_message(fake, api):
    fake.routes["GET /v1.41/images/nope/json"] = lambda h: reply(h, 404, {"message": "No such image: nope"})
    fake.routes["DELETE /v1.41/containers/busy"] = lambda h: reply(h, 409, {"message": "removal in progress"})
    fake.routes["GET /v1.41/info"] = lambda h: reply(h, 500, raw=b"plain words")
    with pytest.raises(NotFound) as missing:
        api.inspect_image("nope")
    assert missing.value.status == 404 and missing.value.explanation == "No such image: nope"
    with pytest.raises(APIError) as conflict:
        api.remove_container("busy")
    assert type(conflict.value) is APIError and conflict.value.status == 409
    assert "removal in progress" in str(conflict.value)
    with pytest.raises(APIError, match="plain words"):
        api.get("/info")
    # the connection stays usable after each error (its body was read)
    fake.routes["GET /v1.41/info"] = lambda h: reply(h, 200, {"ID": "X"})
    assert api.get("/info") == {"ID": "X"}
    assert fake.connections == 1


def test_a_missing_socket_is_unreachable_and_a_silent_engine_is_a_broken_answer(tmp_path, fake, api):
    with pytest.raises(Unreachable, match="No such file"):
        EngineAPI(f"unix://{tmp_path}/none.sock").ping()
    fake.routes["GET /v1.41/info"] = lambda h: threading.Event().wait(3)
    slow = EngineAPI(f"unix://{tmp_path}/engine.sock", timeout=0.5, version="1.41")
    with pytest.raises(BrokenAnswer, match="did not answer in time"):
        slow.get("/info")


def test_an_answer_that_is_not_json_is_a_broken_answer(fake, api):
    fake.routes["GET /v1.41/info"] = lambda h: reply(h, 200, raw=b"<html>")
    with pytest.raises(BrokenAnswer, match="not JSON"):
        api.get("/info")


def test_a_kept_alive_connection_the_engine_closed_is_replaced_once(fake, api):
    def close_after(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, {"ID": "X"})
        h.close_connection = True  # no Connection: close header: the client learns it at the next request

    fake.routes["GET /v1.41/info"] = close_after
    assert api.get("/info") == {"ID": "X"}
    assert api.get("/info") == {"ID": "X"}
    assert fake.connections == 2


def test_progress_messages_are_read_as_they_come_whatever_the_pieces(fake, api):
    events = [{"status": "Pulling", "id": "a"}, {"status": "Downloading", "progressDetail": {"current": 1}},
              {"error": "boom"}]
    wire = b"".join(json.dumps(e).encode() + b"\r\n" for e in events)
    pieces = [wire[i:i + 7] for i in range(0, len(wire), 7)]
    fake.routes["POST /v1.41/images/create"] = lambda h: chunked(h, pieces)
    with api.open("POST", "/images/create", {"fromImage": "x", "tag": "1"},
                  headers={"X-Registry-Auth": registry_auth({})}) as answer:
        assert list(answer.messages()) == events
    _, path, headers, _ = fake.seen[-1]
    assert path == "/v1.41/images/create?fromImage=x&tag=1" and headers["x-registry-auth"] == "e30="
    with api.open("POST", "/images/create") as answer:  # chunked and read to its end: kept
        list(answer.messages())
    assert fake.connections == 1


def test_a_character_cut_between_two_reads_stays_whole(fake, api):
    wire = json.dumps({"status": "Téléchargé ✓"}, ensure_ascii=False).encode()
    cut = wire.index("✓".encode()) + 1  # inside the three bytes of ✓
    fake.routes["POST /v1.41/images/create"] = lambda h: chunked(h, [wire[:cut], wire[cut:]])
    with api.open("POST", "/images/create") as answer:
        assert list(answer.messages()) == [{"status": "Téléchargé ✓"}]


def test_a_stream_of_garbage_is_refused_before_it_fills_the_memory(fake, api):
    fake.routes["POST /v1.41/images/load"] = lambda h: chunked(h, [b"{" + b"x" * (64 << 10)] * 20)
    with pytest.raises(BrokenAnswer, match="over 1048576 bytes"), api.open("POST", "/images/load") as answer:
        list(answer.messages())


def test_a_stream_cut_inside_a_message_is_a_broken_answer(fake, api):
    fake.routes["POST /v1.41/images/load"] = lambda h: chunked(h, [b'{"stream": "Loaded'])
    with pytest.raises(BrokenAnswer, match="inside a JSON message"), api.open("POST", "/images/load") as answer:
        list(answer.messages())


def test_a_file_body_is_sent_in_blocks_with_its_length(fake, api):
    class Body:
        def __init__(self, data: bytes) -> None:
            self.data, self.reads = data, 0

        def read(self, n: int = -1) -> bytes:
            self.reads += 1
            out, self.data = self.data[:n], self.data[n:]
            return out

    data = bytes(range(256)) * 20000  # 5 MB
    body = Body(data)
    fake.routes["POST /v1.41/images/load"] = lambda h: reply(h, 200, {"stream": "ok"})
    with api.open("POST", "/images/load", body=body, headers={"Content-Length": str(len(data))}) as answer:
        assert list(answer.messages()) == [{"stream": "ok"}]
    assert fake.seen[-1][3] == data and 5 <= body.reads <= 7  # 1 MB blocks


def test_a_stream_left_unread_closes_its_connection_and_the_next_request_gets_a_new_one(fake, api):
    fake.routes["GET /v1.41/images/x/get"] = lambda h: chunked(h, [b"a" * 1000] * 50)
    with api.open("GET", "/images/x/get") as answer:
        assert next(answer.chunks(100)) == b"a" * 100
    fake.routes["GET /v1.41/info"] = lambda h: reply(h, 200, {"ID": "X"})
    assert api.get("/info") == {"ID": "X"}
    assert fake.connections == 2


def test_a_missing_path_can_be_asked_for_and_a_head_keeps_its_connection(fake, api):
    def stat(h: BaseHTTPRequestHandler) -> None:
        if "path=%2Fmissing" in h.path:
            reply(h, 404, {"message": "Could not find the file /missing"})
        else:
            reply(h, 200, headers={"X-Docker-Container-Path-Stat": "e30="})

    fake.routes["HEAD /v1.41/containers/c/archive"] = stat
    with api.open("HEAD", "/containers/c/archive", {"path": "/missing"}, missing_ok=True) as answer:
        assert answer.status == 404
    with api.open("HEAD", "/containers/c/archive", {"path": "/ui"}, missing_ok=True) as answer:
        assert answer.status == 200 and answer.header("X-Docker-Container-Path-Stat") == "e30="
    assert fake.connections == 1


def test_logs_of_a_container_without_a_tty_are_demultiplexed(fake, api):
    frames = b"\x01\0\0\0\0\0\0\x04out\n" + b"\x02\0\0\0\0\0\0\x04err\n"
    fake.routes["GET /v1.41/containers/c/logs"] = lambda h: reply(h, 200, raw=frames)
    assert api.logs("c", tail=5) == b"out\nerr\n"
    assert "tail=5" in fake.seen[-1][1] and "stdout=1&stderr=1" in fake.seen[-1][1]


def test_demux_leaves_a_raw_stream_as_it_is():
    assert demux(b"") == b""
    assert demux(b"\x01\0\0\0\0\0\0\x02hi\x02\0\0\0\0\0\0\x01!") == b"hi!"
    assert demux(b"plain tty output") == b"plain tty output"
    assert demux(b"\x01\0\0\0\0\0\0\x09short") == b"\x01\0\0\0\0\0\0\x09short"  # a frame longer than the data


def test_only_engine_addresses_are_accepted():
    for url in ("npipe:////./pipe/docker_engine", "unix://", "tcp://", "fd://"):
        with pytest.raises(ValueError):
            EngineAPI(url)
    assert EngineAPI("tcp://127.0.0.1:2375").url == "tcp://127.0.0.1:2375"


def test_a_tcp_engine_is_reached_over_tcp(tmp_path):
    """The same client over TCP (TLS is tests/e2e/test_remote_engine.py, against the real engine)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            assert data.startswith(b"GET /_ping HTTP/1.1\r\n")
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    EngineAPI(f"tcp://127.0.0.1:{port}", timeout=5).ping()
    thread.join(5)
    listener.close()
