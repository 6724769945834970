"""Start the server: bind, print the login URL (the token in it), open a browser, run uvicorn."""

from __future__ import annotations

import contextlib
import errno
import html
import json
import os
import re
import secrets
import socket
import tempfile
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from ..errors import DockextError, InvalidToken
from ..paths import Layout
from ..store import atomic_write
from .app import create_app
from .state import DASHBOARD_NAME, HostState
from .wire import HttpProtocol, WebSocketProtocol

__all__ = ["serve"]

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def bind(host: str, port: int) -> socket.socket:
    addr = "127.0.0.1" if host == "localhost" else host.removeprefix("[").removesuffix("]")  # [::1] as in URLs
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    host_hint = ("Choose an address of this machine with --host: 127.0.0.1 (the default), ::1, or 0.0.0.0 for "
                 "every interface.")
    if re.fullmatch(r"[0-9.]+", addr):  # meant as an IPv4 address (never looked up as a host name)
        try:
            socket.inet_pton(socket.AF_INET, addr)
        except OSError:
            raise DockextError(f"cannot listen on {host}: it is not an IPv4 address", hint=host_hint) from None
    sock: socket.socket | None = None
    try:
        # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets that say they are TCP, and without
        # it Nagle + delayed ACKs add ~40 ms to every response after the first on a kept-alive connection.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
    except OSError as exc:
        if sock is not None:
            sock.close()
        if isinstance(exc, socket.gaierror) or exc.errno in _NOT_HERE:  # the address's fault, not the port's
            raise DockextError(f"cannot listen on {host}: {exc.strerror or exc}", hint=host_hint) from None
        raise DockextError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="Choose another port with --port (0 picks a free one).",
        ) from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


#: errors of bind() that are the address's fault, not the port's: not one of this machine's (EADDRNOTAVAIL), an
#: IPv6 address where there is no IPv6 or a link-local one without its interface (EAFNOSUPPORT, EINVAL)
_NOT_HERE = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL})


#: the shortest ``DOCKEXT_TOKEN`` taken; the token made by default has 48 hexadecimal characters (192 bits)
MIN_TOKEN = 32
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # unreserved in a URL: the token goes into the login URL as it is


def login_token(given: str | None) -> str:
    """The token that logs a browser in: ``given`` (``DOCKEXT_TOKEN``) if it is fit to be one, else a new one."""
    if not given:
        return secrets.token_hex(24)
    if len(given) < MIN_TOKEN or not _TOKEN_CHARS.fullmatch(given):
        raise InvalidToken(
            f"DOCKEXT_TOKEN must be at least {MIN_TOKEN} characters of letters, digits and . _ ~ - "
            f"(it has {len(given)}{'' if _TOKEN_CHARS.fullmatch(given) else ', and other characters'}): anyone who "
            "can reach the dashboard could guess a short one",
            hint="Unset it to get a new token at each start, or set one made with: "
                 "python3 -c 'import secrets; print(secrets.token_hex(24))'",
        )
    return given


def serve(
    layout: Layout,
    *,
    host: str = "127.0.0.1",
    port: int = 7683,
    open_browser: bool = True,
    allow_hosts: tuple[str, ...] = (),
    echo: Callable[[str], None] = print,
) -> None:
    token = login_token(os.environ.get("DOCKEXT_TOKEN"))
    layout.ensure()
    sock = bind(host, port)
    port = sock.getsockname()[1]
    state = HostState(layout, port=port, token=token)
    for name in allow_hosts:
        state.dashboard_hosts.add(f"{name.lower()}:{port}")
    url = f"{state.dashboard_url}/?token={token}"
    info = layout.root / "server.json"
    atomic_write(info, json.dumps({"url": url, "port": port, "pid": os.getpid()}).encode(), mode=0o600)
    echo(f"dockext dashboard: {url}")
    if host not in LOOPBACK:
        for line in _exposed_notice(host, port):
            echo(line)
    if open_browser:
        _open_browser(layout.root, url)
    try:
        uvicorn.Server(server_config(create_app(state))).run(sockets=[sock])
    finally:
        with contextlib.suppress(FileNotFoundError):
            info.unlink()


def _exposed_notice(host: str, port: int) -> list[str]:
    """What ``serve`` says when it listens beyond loopback: what the token guards, and what it does not."""
    return [
        f"Listening on {host}:{port}: anyone who can reach it still needs the token.",
        "It is plain HTTP: the token and the session cookie cross the network unencrypted, and extension tabs load",
        f"from *.{DASHBOARD_NAME}, which only a browser on this machine can reach. From another machine, forward",
        f"the port over SSH instead (ssh -L {port}:127.0.0.1:{port} THIS-HOST) and open the URL above there.",
    ]


def server_config(app: ASGIApp, **overrides: Any) -> uvicorn.Config:
    """How ``dockext serve`` runs ``app`` (the tests run the server with this too)."""
    settings: dict[str, Any] = {
        "log_level": "warning", "access_log": False, "server_header": False,
        "loop": "auto",  # uvloop (a dependency where it exists): ~15% less CPU per proxied request than asyncio
        "http": HttpProtocol,  # uvicorn's httptools protocol, limits on request heads, one send() per response
        "ws": WebSocketProtocol,  # uvicorn's websockets protocol, binary messages sent without copies
        "proxy_headers": False, "lifespan": "on", "timeout_graceful_shutdown": 5,
        # browsers offer permessage-deflate; compressing streamed output costs more CPU than it saves bytes
        "ws_per_message_deflate": False,
    }
    return uvicorn.Config(app, **{**settings, **overrides})


def _open_browser(root: Path, url: str) -> None:
    """Open the dashboard through a 0600 redirect file, so the token is not on a browser's command line."""
    fd, name = tempfile.mkstemp(prefix="dockext-open-", suffix=".html", dir=root)
    with os.fdopen(fd, "w") as fh:
        fh.write(
            f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
            f'<a href="{html.escape(url)}">Open the dockext dashboard</a>'
        )
    with contextlib.suppress(webbrowser.Error):
        webbrowser.open(Path(name).as_uri())
