"""The backend of this extension: HTTP on a unix socket, with Python's standard library only.

Docker Desktop (and dockext) run the image's CMD in a container with /run/guest-services mounted, and forward
the UI's ``ddClient.extension.vm.service.*`` calls to the socket that metadata.json names (vm.exposes.socket).

Try it without Docker::

    SOCKET=/tmp/backend.sock python3 backend/main.py
    curl --unix-socket /tmp/backend.sock http://localhost/hello
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

SOCKET = os.environ.get("SOCKET", "/run/guest-services/backend.sock")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the host reuses its connections

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/hello":
            self.reply(200, {"message": "Hello from the backend!"})
        else:
            self.reply(404, {"message": f"no route for GET {path}"})

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"  # the peer address of a unix socket is '', which the default request log cannot show


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def stop(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)  # `docker stop` sends SIGTERM; without a handler PID 1 ignores it and is killed 10 s later


def main() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SOCKET)  # left by an earlier run: the guest-services directory outlives the container
    signal.signal(signal.SIGTERM, stop)
    with Server(SOCKET, Handler) as server:
        print(f"listening on {SOCKET}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
