"""A "remote" engine for tests: the local dockerd reached over TCP, as ``DOCKER_HOST=tcp://127.0.0.1:PORT``.

dockext treats any engine not reached through a unix socket as remote (its containers cannot see this host's
files), so a TCP port relayed to the local engine's socket makes it take every remote path while the engine,
Compose and the containers stay real. The relay counts connections, so a test can tell that dockext went
through it rather than to the socket directly. :func:`tls_engine` does the same behind TLS with client certificates, as
``dockerd --tlsverify`` does. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.bridge import _relay

ENGINE_SOCKET = "/var/run/docker.sock"


@dataclass
class TcpEngine:
    host: str  # tcp://127.0.0.1:<port>
    connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> None:
        with self._lock:
            self.connections += 1


@contextlib.contextmanager
def tcp_engine(socket_path: str = ENGINE_SOCKET) -> Iterator[TcpEngine]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    engine = TcpEngine(f"tcp://127.0.0.1:{listener.getsockname()[1]}")
    open_: set[socket.socket] = set()

    def serve(client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(socket_path)
        except OSError:
            client.close()
            upstream.close()
            return
        open_.update((client, upstream))
        _relay(client, upstream)
        open_.difference_update((client, upstream))

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            engine.count()
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True, name="tcp-engine").start()
    try:
        yield engine
    finally:
        listener.close()
        for s in list(open_):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


# -- TLS -----------------------------------------------------------------------------------------------------

def make_certs(directory: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as ``docker`` expects them:
    ``ca.pem``, ``cert.pem`` and ``key.pem`` (the client's) in ``directory``, the server's beside them."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=dockext test CA",
            "-keyout", "ca-key.pem", "-out", "ca.pem")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}-key.pem",
                "-out", f"{who}.csr")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}-cert.pem")
    (directory / "client-cert.pem").rename(directory / "cert.pem")
    (directory / "client-key.pem").rename(directory / "key.pem")
    return directory


@contextlib.contextmanager
def tls_engine(certs: Path, socket_path: str = ENGINE_SOCKET) -> Iterator[TcpEngine]:
    """The local engine on ``tcp://127.0.0.1:PORT`` behind TLS that requires a client certificate signed by
    ``certs/ca.pem`` (as ``dockerd --tlsverify`` does). Runs an event loop in a thread: one TLS object is
    never read and written from two threads at once."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs / "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(certs / "server-cert.pem"), str(certs / "server-key.pem"))
    loop = asyncio.new_event_loop()
    ready: queue.Queue[int] = queue.Queue()
    engine = TcpEngine("")
    stop = loop.create_future()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        engine.count()
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            writer.close()
            return
        # as dockerd does: the client's end of input is passed on (a half-close of the unix socket), and the
        # engine's end of output closes the TLS connection (TLS has no half-close)
        to_engine = asyncio.ensure_future(pump(reader, up_writer))
        await pump(up_reader, writer)
        to_engine.cancel()
        for w in (writer, up_writer):
            w.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
        ready.put(server.sockets[0].getsockname()[1])
        await stop
        server.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True, name="tls-engine")
    thread.start()
    engine.host = f"tcp://127.0.0.1:{ready.get(timeout=10)}"
    try:
        yield engine
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)
