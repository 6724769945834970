"""Start a real ``dockext serve`` in a subprocess (optionally as another user) and wait until it answers; or run
a uvicorn server in a thread, for tests that need the real HTTP stack in-process."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    home: Path
    port: int
    token: str
    proc: subprocess.Popen[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    domain: str = "dockext.localhost"  # what it serves on (dockext serve --domain)
    scheme: str = "http"  # https with --tls-cert

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.domain}:{self.port}"

    @property
    def login_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def log_in(page: Any, server: Server) -> None:
    """Open ``server``'s login URL in ``page`` (Playwright's) and wait until the dashboard holds the session's key.
    The page's heading shows before that: the key in the fragment is kept (in localStorage) only once the server
    has answered a call made with it, and a page left earlier leaves the browser with the cookie but no key, so
    the next dashboard page goes to the login page (seen on a loaded machine)."""
    page.goto(server.login_url)
    page.wait_for_function("() => !!localStorage.getItem('dockext-key')")


def start_server(home: Path, *, argv: list[str] | None = None, user: tuple[int, int, list[int]] | None = None,
                 extra_env: dict[str, str] | None = None, port: int | None = None, domain: str | None = None,
                 tls: tuple[Path, Path] | None = None, public_url: str | None = None) -> Server:
    """``domain``, ``tls`` (certificate, key) and ``public_url`` are given to ``dockext serve`` as --domain,
    --tls-cert/--tls-key and --public-url."""
    port = port or free_port()
    token = secrets.token_hex(24)
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"server-{port}.log"
    env = {**os.environ, "DOCKEXT_HOME": str(home), "DOCKEXT_TOKEN": token, **(extra_env or {})}
    cmd = (argv or [sys.executable, "-m", "dockext.cli"]) + ["serve", "--no-browser", "--port", str(port)]
    cmd += ["--domain", domain] if domain else []
    cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
    cmd += ["--public-url", public_url] if public_url else []
    kwargs: dict[str, Any] = {}
    if user is not None:
        uid, gid, groups = user
        kwargs = {"user": uid, "group": gid, "extra_groups": groups}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True, **kwargs)
    server = Server(home, port, token, proc, log, env, domain or "dockext.localhost", "https" if tls else "http")
    # behind a proxy the server answers its public name (no port: 443) in plain HTTP on its own port
    ready_host = urlsplit(public_url).netloc if public_url else f"{server.domain}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dockext serve exited {proc.returncode}:\n{log.read_text()}")
        conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ssl._create_unverified_context())
                if tls else http.client.HTTPConnection("127.0.0.1", port, timeout=2))
        try:  # the login page, on the name browsers are sent to (*.localhost is not in this machine's resolver)
            conn.request("GET", "/login", headers={"Host": ready_host})
            if conn.getresponse().status == 200:
                return server
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"dockext serve did not answer within 30 s:\n{log.read_text()}")


def listening_socket(backlog: int = 128) -> socket.socket:
    """A TCP socket listening on 127.0.0.1 at a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


@contextlib.contextmanager
def uvicorn_in_thread(config: uvicorn.Config, sock: socket.socket) -> Iterator[uvicorn.Server]:
    """Run a real uvicorn server with ``config`` on ``sock`` in a thread while the block runs; yields it (set its
    ``should_exit`` to stop it sooner)."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
