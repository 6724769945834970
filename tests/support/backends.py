"""Backends written in the tests, served on a real unix socket."""

from __future__ import annotations

import http.client
import http.server
import json
import select
import socket
import socketserver
import threading
import time
import urllib.parse
from pathlib import Path


class RecordingBackend:
    """A real HTTP backend on the extension's socket that records what reaches it."""

    def __init__(self, path: Path) -> None:
        seen = self.seen = []
        ended = self.endless_ended = threading.Event()  # an /endless answer's reader went away
        left = self.poll_left = threading.Event()  # a /poll's caller closed the connection before the answer

        class Handler(http.server.BaseHTTPRequestHandler):
            def address_string(self):
                return "unix"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, dict(self.headers), body))
                if self.path == "/stream":  # HTTP/1.0 style: no length, the body ends with the connection
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Content-Security-Policy", "default-src *")
                    self.end_headers()
                    for i in range(3):
                        self.wfile.write(f"data: {i}\n\n".encode())
                        self.wfile.flush()
                    self.close_connection = True
                    return
                if self.path == "/endless":  # events until the reader goes away
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    try:
                        for i in range(2000):
                            self.wfile.write(f"data: {i}\n\n".encode())
                            self.wfile.flush()
                            time.sleep(0.01)
                    except OSError:
                        ended.set()
                    self.close_connection = True
                    return
                if self.path in ("/short", "/stall"):  # announces 100 bytes, sends 10, then hangs up or stalls
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"0123456789")
                    self.wfile.flush()
                    if self.path == "/stall":
                        time.sleep(3)
                    self.close_connection = True
                    return
                if urllib.parse.unquote(self.path) == "/poll":  # a long poll: answers in 5 s unless the caller leaves
                    ready, _, _ = select.select([self.connection], [], [], 5)
                    if ready and self.connection.recv(1, socket.MSG_PEEK) == b"":
                        left.set()
                        self.close_connection = True
                        return
                if self.path == "/empty":
                    self.send_response(204)
                    self.end_headers()
                    return
                data = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                if self.path == "/cookie":
                    self.send_header("Set-Cookie", "a=1; Path=/")
                    self.send_header("Set-Cookie", "b=2; Path=/")
                if self.path == "/sw.js":  # a worker script that asks for the whole origin as its scope
                    self.send_header("Service-Worker-Allowed", "/")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        path.parent.mkdir(parents=True, exist_ok=True)
        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a unix socket (a backend's, as dockext reaches it)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def get_over_socket(path, url):
    """``GET url`` on the unix socket ``path``: (status, body text)."""
    conn = UnixHTTPConnection(str(path))
    conn.request("GET", url)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


class RecordingSite:
    """A web site on 127.0.0.1 that sends no CORS headers, like an OAuth provider's token endpoint, and records
    what reaches it: what an extension UI's cross-origin requests get to through dockext (``web`` permission).

    ``/redirect`` answers 302 to ``/final``, ``/redirect-to?URL`` to URL; ``/cookie`` sets cookies and the
    headers that would act on the origin that receives them (HSTS, Clear-Site-Data); ``/gzip`` answers a
    gzip-encoded body; ``/events`` is an event stream of two events (ids counting on from Last-Event-ID) that then
    ends; anything else echoes what it got as JSON.
    """

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                      more: tuple[tuple[str, str], ...] = ()) -> None:
                self.send_response(status)
                for k, v in [*(headers or {}).items(), *more]:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, dict(self.headers), body))
                if self.path == "/redirect":
                    self._send(302, b"", {"Location": "/final?from=redirect"})
                elif self.path.startswith("/redirect-to?"):
                    self._send(302, b"", {"Location": self.path.split("?", 1)[1]})
                elif self.path == "/cookie":
                    self._send(200, b"cookies", {
                        "Set-Cookie": "site=1; Domain=dockext.localhost; Path=/",
                        "Strict-Transport-Security": "max-age=31536000", "Clear-Site-Data": '"*"',
                        "Access-Control-Allow-Origin": "https://elsewhere.test", "X-Site": "kept",
                        "Content-Type": "text/plain",
                    }, more=(("Set-Cookie", "sid=s3cret; Path=/"),))  # and the site's own session
                elif self.path == "/events":  # two events after the Last-Event-ID it is sent, then the end
                    first = int(self.headers.get("Last-Event-ID") or 0) + 1
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"retry: 100\n\n")
                    for i in (first, first + 1):
                        self.wfile.write(f"id: {i}\ndata: event {i}\n\n".encode())
                        self.wfile.flush()
                    self.close_connection = True
                elif self.path == "/gzip":
                    import gzip
                    self._send(200, gzip.compress(b"unzipped by the browser"),
                               {"Content-Encoding": "gzip", "Content-Type": "text/plain"})
                else:
                    answer = {"method": self.command, "path": self.path, "body": body.decode(errors="replace"),
                              "authorization": self.headers.get("Authorization"),
                              "contentType": self.headers.get("Content-Type")}
                    self._send(201 if self.command == "POST" else 200, json.dumps(answer).encode(),
                               {"Content-Type": "application/json"})

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
