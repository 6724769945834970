"""Start the server: bind, print the login URL (the token in it), open a browser, run uvicorn."""

from __future__ import annotations

import contextlib
import errno
import html
import json
import os
import re
import secrets
import signal
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from ..errors import DockextError, InvalidToken
from ..paths import Layout
from ..store import atomic_write, file_stamp
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


@dataclass(frozen=True)
class Tls:
    """The certificate and key ``dockext serve --tls-cert/--tls-key`` serves HTTPS with (PEM files)."""

    cert: str
    key: str

    @classmethod
    def of(cls, cert: str | None, key: str | None) -> Tls | None:
        """Both files checked to make a server's TLS context together, or None when neither is given."""
        if cert is None and key is None:
            return None
        if not cert or not key:
            raise DockextError(
                "--tls-cert and --tls-key go together",
                hint="Give the certificate (PEM, with its chain) and its private key (PEM, unencrypted).",
            )
        for path in (cert, key):  # the TLS library's own errors do not say which file it could not open
            try:
                Path(path).read_bytes()
            except OSError as exc:
                raise DockextError(f"cannot read {path}: {exc.strerror or exc}") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except ssl.SSLError as exc:
            raise DockextError(
                f"cannot serve HTTPS with the certificate {cert} and the key {key}: {exc.reason or exc}",
                hint="Both must be PEM files, the key unencrypted and the one the certificate was made for.",
            ) from None
        return cls(cert, key)

    def stamps(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Changes when either file is replaced or written (a renewal; through a symlink too, as certbot keeps them)."""
        return file_stamp(Path(self.cert)), file_stamp(Path(self.key))

    def names(self) -> list[str] | None:
        """The DNS names the certificate is for (its subjectAltName), or None when they cannot be read."""
        try:  # CPython's own reader of a PEM file (its ssl tests use it); there is no public one
            decoded = ssl._ssl._test_decode_cert(self.cert)  # type: ignore[attr-defined]
        except (AttributeError, OSError, ValueError):
            return None
        return [str(v).lower() for k, v in decoded.get("subjectAltName", ()) if k == "DNS"]


class Renewals:
    """Loads the certificate again into the running server's TLS context when its files change (a renewal by
    certbot or acme.sh), for the connections that follow; the ones open keep theirs. The new pair is checked in a
    context of its own first, so a half-written renewal (the certificate replaced, its key not yet) never reaches
    the server: the certificate in use stays until both files make a pair."""

    def __init__(self, tls: Tls, context: ssl.SSLContext, echo: Callable[[str], None]) -> None:
        self.tls = tls
        self.context = context
        self.echo = echo
        self._stamps = tls.stamps()

    def check(self) -> None:
        stamps = self.tls.stamps()
        if stamps == self._stamps:
            return
        self._stamps = stamps
        try:
            Tls.of(self.tls.cert, self.tls.key)
            self.context.load_cert_chain(self.tls.cert, self.tls.key, password=_no_password)
        except (DockextError, OSError) as exc:
            why = exc.message if isinstance(exc, DockextError) else str(exc)
            self.echo(f"dockext: kept the certificate in use; the files changed but cannot be used yet: {why}")
            return
        self.echo(f"dockext: serving the certificate {self.tls.cert} as it is now (the files changed)")


def _no_password() -> str:
    raise DockextError("the TLS key is encrypted", hint="Give an unencrypted key (openssl pkey -in KEY -out NEW).")


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (an exact name, or ``*.rest`` for one label)."""
    first, _, rest = host.partition(".")
    return any(n == host or (bool(first) and n.startswith("*.") and n[2:] == rest) for n in names)


def local_only(name: str) -> bool:
    """A name under ``localhost``: browsers resolve it to their own machine by themselves, whatever DNS says."""
    return name.endswith(".localhost")


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def dashboard_domain(given: str | None, tls: bool, option: str = "--domain") -> str:
    """The name the dashboard is served on (``--domain``, checked), its extensions on ``<slug>.<name>``."""
    if not given:
        return DASHBOARD_NAME
    name = given.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 200 or not all(_LABEL.fullmatch(label) for label in labels):
        raise DockextError(f"{option} {given} is not a DNS name: letters, digits and hyphens, in labels between dots")
    if all(label.isdigit() for label in labels):
        raise DockextError(f"{option} {given} is an IP address: extensions are served on names under it",
                           hint="Give a DNS name that this machine has, such as dockext.example.lan.")
    if len(labels) < 2:
        raise DockextError(
            f"{option} {given} has one label: browsers would take each extension's name under it for another site, "
            "and keep its storage from its tab", hint=f"Give a name of two labels or more, such as dockext.{name}.lan.",
        )
    if not tls and not local_only(name):
        raise DockextError(
            f"--domain {given} needs --tls-cert and --tls-key: over plain HTTP the token and the session cross the "
            "network unencrypted, and browsers treat the pages of a name other than localhost as insecure "
            "(no crypto.subtle, no clipboard), which extensions use",
            hint=f"Give a certificate valid for {name} and *.{name} (a wildcard), and its key.",
        )
    return name


def public_address(url: str) -> tuple[str, int | None]:
    """The name and port (None for 443) of ``--public-url``: where browsers reach dockext through a proxy that
    terminates TLS in front of it."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DockextError(f"--public-url {url} is not a URL: {exc}") from None
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment \
            or parts.username is not None:
        raise DockextError(
            f"--public-url {url} must be https://NAME or https://NAME:PORT: the address browsers open, at the root "
            "of its name (the proxy there serves the extensions on names under it)",
            hint="Over plain HTTP the token and the session would cross the network in clear: let the proxy serve "
                 "HTTPS.",
        )
    return dashboard_domain(parts.hostname, tls=True, option="--public-url"), port


STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Server(uvicorn.Server):
    """uvicorn's server, given the stopping signals that came while dockext was starting it (see :func:`serve`),
    and stopped gracefully by SIGHUP as by SIGINT and SIGTERM."""

    def __init__(self, config: uvicorn.Config, early: list[int] | None) -> None:
        super().__init__(config)
        self.early = early
        self.stopped_by: list[int] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            hup = signal.signal(signal.SIGHUP, self.handle_exit) if self.early is not None else None
            try:
                for sig in list(self.early or ()):
                    self.handle_exit(sig, None)
                yield
            finally:
                if hup is not None:
                    signal.signal(signal.SIGHUP, hup)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped_by.append(sig)
        super().handle_exit(sig, frame)


@contextlib.contextmanager
def _held_signals() -> Iterator[list[int] | None]:
    """Until uvicorn's handlers take over (:class:`_Server`), a stopping signal is written down rather than
    acted on: the CLI's own handler raises wherever the main thread is, and where that is a finalizer or a
    callback the exception is only printed, the server goes on and no longer stops (seen under load). Once the
    server is done, the first signal that stopped it is raised again under the CLI's handlers, which report it.
    None when :func:`serve` runs in another thread than the main one, where no signal is handled."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    early: list[int] = []
    previous = {sig: signal.signal(sig, lambda sig, _frame: early.append(sig)) for sig in STOPPING}
    try:
        yield early
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    layout: Layout,
    *,
    host: str = "127.0.0.1",
    port: int = 7683,
    open_browser: bool = True,
    allow_hosts: tuple[str, ...] = (),
    domain: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    public_url: str | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    with _held_signals() as early:
        stopped_by = _serve(layout, early, host=host, port=port, open_browser=open_browser, allow_hosts=allow_hosts,
                            domain=domain, tls_cert=tls_cert, tls_key=tls_key, public_url=public_url, echo=echo)
    if stopped_by:
        signal.raise_signal(stopped_by[0])


def _serve(
    layout: Layout, early: list[int] | None, *, host: str, port: int, open_browser: bool, allow_hosts: tuple[str, ...],
    domain: str | None, tls_cert: str | None, tls_key: str | None, public_url: str | None,
    echo: Callable[[str], None],
) -> list[int]:
    """:func:`serve`'s work; the signals that stopped the server, in the order they came (``early`` ones
    first)."""
    token = login_token(os.environ.get("DOCKEXT_TOKEN"))
    if public_url and (domain or tls_cert or tls_key):
        raise DockextError("--public-url names the domain, and the proxy in front serves TLS: give it without "
                           "--domain, --tls-cert and --tls-key")
    tls = Tls.of(tls_cert, tls_key)
    name, public_port = public_address(public_url) if public_url else (dashboard_domain(domain, tls is not None), None)
    layout.ensure()
    sock = bind(host, port)
    port = sock.getsockname()[1]
    state = HostState(layout, port=port, token=token, domain=name, tls=tls is not None or public_url is not None,
                      public_port=(public_port or 443) if public_url else None)
    for extra in allow_hosts:
        state.dashboard_hosts.add(state.at_port(extra.lower()))
    url = f"{state.dashboard_url}/?token={token}"
    info = layout.root / "server.json"
    atomic_write(info, json.dumps({"url": url, "port": port, "pid": os.getpid()}).encode(), mode=0o600)
    echo(f"dockext dashboard: {url}")
    notice = _tls_notice(tls, name)
    if public_url:
        notice += _proxy_notice(host, port, name, state.dashboard_url)
    elif host not in LOOPBACK:
        notice += _exposed_notice(host, port, name, tls is not None, state.dashboard_url)
    elif not local_only(name):  # a name for other machines, on an address they cannot reach
        notice.append(f"Listening on {host} only: browsers on other machines cannot reach {state.dashboard_url} "
                      "until --host names an address of this machine they can (0.0.0.0 for every interface).")
    for line in notice:
        echo(line)
    if open_browser:
        _open_browser(layout.root, url)
    ssl_files = {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key} if tls else {}
    config = server_config(create_app(state), **ssl_files)
    if tls:
        config.load()  # makes the TLS context the server will use, which renewals are loaded into
        if config.ssl is not None:
            state.every_watch.append(Renewals(tls, config.ssl, echo).check)
    server = _Server(config, early)
    try:
        server.run(sockets=[sock])
    finally:
        with contextlib.suppress(FileNotFoundError):
            info.unlink()
    return server.stopped_by


def _tls_notice(tls: Tls | None, domain: str) -> list[str]:
    """A warning when the certificate is not valid for the dashboard's name or the extension origins under it."""
    names = tls.names() if tls else None
    missing = [n for n in (domain, f"EXTENSION.{domain}") if names is not None and not covers(names, n)]
    if tls is None or names is None or not missing:
        return []
    return [f"Warning: the certificate {tls.cert} is not valid for {' or '.join(missing)} (it names "
            f"{', '.join(names) or 'no DNS name'}): browsers will refuse "
            f"{'the dashboard' if domain in missing else 'the extension tabs'}. Make one for {domain} and *.{domain}."]


def _proxy_notice(host: str, port: int, domain: str, url: str) -> list[str]:
    """What ``serve --public-url`` says: what the proxy in front must do."""
    lines = [f"Serving plain HTTP on {host}:{port} for the proxy in front, which browsers open at {url}/ .",
             f"It must serve HTTPS for {domain} and *.{domain} (a wildcard certificate and DNS record), pass the Host",
             "header on as the browser sent it, and pass WebSocket upgrades."]
    if host not in LOOPBACK:
        lines.append(f"{host} is reachable beyond this machine: anyone who reaches it bypasses the proxy's TLS. "
                     "Listen on loopback (the default) when the proxy runs here.")
    return lines


def _exposed_notice(host: str, port: int, domain: str, tls: bool, url: str) -> list[str]:
    """What ``serve`` says when it listens beyond loopback: what the token guards, and what it does not."""
    lines = [f"Listening on {host}:{port}: anyone who can reach it still needs the token."]
    if tls and not local_only(domain):
        return [*lines,
                f"Browsers on other machines open {url}/ : there, {domain} and *.{domain} must",
                "resolve to this machine (a wildcard DNS record) and the certificate must be one they trust."]
    if tls:
        return [*lines,
                f"Extension tabs load from *.{domain}, which only a browser on this machine can reach. For other",
                "machines, give --domain with a name they resolve, or forward the port over SSH",
                f"(ssh -L {port}:127.0.0.1:{port} THIS-HOST) and open the URL above there."]
    return [*lines,
            "It is plain HTTP: the token and the session cookie cross the network unencrypted, and extension tabs load",
            f"from *.{domain}, which only a browser on this machine can reach. From another machine, forward",
            f"the port over SSH instead (ssh -L {port}:127.0.0.1:{port} THIS-HOST) and open the URL above there,",
            "or serve HTTPS on a name of your network (--domain with --tls-cert and --tls-key)."]


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


#: seconds a browser has to read the redirect file before it is deleted (the token is in it)
OPEN_FILE_SECONDS = 60.0


def _open_browser(root: Path, url: str) -> None:
    """Open the dashboard through a 0600 redirect file, so the token is not on a browser's command line. The file
    is deleted once the browser has had time to read it; one a killed server left is deleted at the next start."""
    for old in root.glob("dockext-open-*.html"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > OPEN_FILE_SECONDS:
                old.unlink()
    fd, name = tempfile.mkstemp(prefix="dockext-open-", suffix=".html", dir=root)
    cleanup = threading.Timer(OPEN_FILE_SECONDS, lambda: Path(name).unlink(missing_ok=True))
    cleanup.daemon = True
    cleanup.start()
    with os.fdopen(fd, "w") as fh:
        fh.write(
            f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
            f'<a href="{html.escape(url)}">Open the dockext dashboard</a>'
        )
    with contextlib.suppress(webbrowser.Error):
        webbrowser.open(Path(name).as_uri())
