"""A TCP port of the host's network namespace made reachable at the same address inside the tests' own.

The test session runs in a network namespace of its own (tests/conftest.py), so 127.0.0.1:5000 there is not
the local registry. Engine pulls do not care (dockerd pulls, in the host's namespace), but dockext's own HTTP
clients do: the Marketplace reads the registry itself. :func:`bridge` listens on 127.0.0.1:<port> here and
relays each connection to 127.0.0.1:<port> in the host's namespace: a thread that has entered that namespace
(network namespaces are per thread) opens the connections there. Only loopback is involved on either side.

It can also listen in a third namespace (``into``: a Podman service's, which runs in one of its own), and on
another port than the host's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import socket
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _relay(a: socket.socket, b: socket.socket) -> None:
    back = threading.Thread(target=_pump, args=(b, a), daemon=True)
    back.start()
    _pump(a, b)
    back.join()
    a.close()
    b.close()


def _setns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into the network namespace {path} failed")
    finally:
        os.close(fd)


def _listener(port: int, into: str | None) -> socket.socket:
    """A socket listening on 127.0.0.1:``port``, here or in the namespace ``into`` (made by a thread that has
    entered it: a socket stays in the namespace it was made in)."""
    made: queue.Queue[socket.socket | OSError] = queue.Queue()

    def make() -> None:
        try:
            if into is not None:
                _setns(into)
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            made.put(listener)
        except OSError as exc:
            made.put(exc)

    thread = threading.Thread(target=make, daemon=True, name=f"netns-listen-{port}")
    thread.start()
    thread.join()
    got = made.get()
    if isinstance(got, OSError):
        raise got
    return got


class _Connector(threading.Thread):
    """A thread living in the host's network namespace that opens TCP connections there on request."""

    def __init__(self, host_ns: str, port: int) -> None:
        super().__init__(daemon=True, name="netns-connector")
        self.host_ns = host_ns
        self.port = port
        self.requests: queue.Queue[queue.Queue[socket.socket | OSError]] = queue.Queue()
        self.ready: queue.Queue[OSError | None] = queue.Queue()

    def run(self) -> None:
        try:
            _setns(self.host_ns)
        except OSError as exc:
            self.ready.put(exc)
            return
        self.ready.put(None)
        while True:
            reply = self.requests.get()
            try:
                reply.put(socket.create_connection(("127.0.0.1", self.port), timeout=10))
            except OSError as exc:
                reply.put(exc)

    def connect(self) -> socket.socket:
        reply: queue.Queue[socket.socket | OSError] = queue.Queue()
        self.requests.put(reply)
        got = reply.get()
        if isinstance(got, OSError):
            raise got
        got.settimeout(None)
        return got


@contextlib.contextmanager
def bridge(port: int, *, into: str | None = None, host_port: int | None = None) -> Iterator[None]:
    """While the block runs, 127.0.0.1:``port`` here (or in the namespace at the path ``into``) reaches
    127.0.0.1:``host_port`` (``port`` by default) of the host's namespace.

    Without ``into``, does nothing when the tests run in the host's namespace (DOCKEXT_TEST_NETNS=0, or not
    root)."""
    host_ns = os.environ.get("DOCKEXT_TEST_HOST_NETNS")
    if not host_ns and into is None:
        yield
        return
    connector = _Connector(host_ns or f"/proc/{os.getpid()}/ns/net", host_port or port)
    connector.start()
    failed = connector.ready.get()
    if failed is not None:
        raise failed
    listener = _listener(port, into)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = connector.connect()
            except OSError:
                client.close()
                continue
            threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()

    threading.Thread(target=serve, daemon=True, name=f"netns-bridge-{port}").start()
    try:
        yield
    finally:
        stop.set()
        listener.close()
