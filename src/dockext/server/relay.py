"""Backend sockets of a remote engine, reached through an exec in the extension's relay container.

On a remote engine (docs/design.md, "Remote engines") a backend's socket lives in a volume of the engine's
host, which this host cannot open. Each connection to it is instead an exec of ``sockperm connect PATH`` in
the ``dockext-relay`` container of the extension's Compose project, started on a hijacked Engine API
connection: what dockext writes is the process's stdin, raw; what the backend answers comes back as the
engine's 8-byte-framed stdout. :func:`open_relayed` returns the caller's protocol (``backend_http``'s
connection) once the stream is up, and :class:`RelayStream` takes the framing off before handing it the
bytes, so the protocol above cannot tell the relay from a unix socket.

When the helper cannot connect it prints ``sockperm: connect ENAME PATH: reason`` on stderr and exits; the
protocol above then sees the connection lost with a :class:`~dockext.errors.BackendNotReady` saying so, in the
words a local socket error gets (:func:`~dockext.server.backend_http.unreachable`).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from typing import cast
from urllib.parse import quote

from .. import sockperm
from ..errors import BackendNotReady, DockextError
from .backend_http import unreachable
from .engine_http import EngineHTTP, EngineReplied

__all__ = ["RelayStream", "open_relayed"]

MAX_STDERR = 4096


class RelayStream(asyncio.Protocol):
    """The engine side of one relayed connection: ``POST /exec/{id}/start`` with ``Upgrade: tcp``, then the
    demultiplexed stdout to ``inner``; stderr is kept for the reason of a failure."""

    def __init__(self, inner: asyncio.Protocol, start: bytes, socket_name: str) -> None:
        self.inner = inner
        self.start = start
        self.socket_name = socket_name
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._upgraded = False
        self._header = bytearray()  # the 8-byte frame header being read
        self._kind = 0
        self._left = 0  # payload bytes of the current frame still to come
        self._stderr = bytearray()
        self._start: bytearray | None = bytearray()  # the answer's first bytes, until they show it is HTTP
        self._failed = False  # they did not: what follows is the engine's error message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.start)

    def data_received(self, data: bytes) -> None:
        if not self._upgraded:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > 65536:
                    self._refused(502, "the engine's answer to the exec start has no end")
                return
            status_line = bytes(self._head[: self._head.find(b"\r\n")]).decode("latin-1")
            parts = status_line.split(" ", 2)
            code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            rest = bytes(self._head[end + 4:])
            self._head.clear()
            if code not in (101, 200):
                self._refused(code or 502, rest.decode(errors="replace").strip()[:300] or status_line)
                return
            self._upgraded = True
            assert self.transport is not None
            self.inner.connection_made(self.transport)
            if not self.ready.done():
                self.ready.set_result(None)
            if not rest:
                return
            data = rest
        self._frames(data)

    def _frames(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._left == 0:
                take = min(8 - len(self._header), n - i)
                self._header += data[i: i + take]
                i += take
                if len(self._header) < 8:
                    return
                self._kind = self._header[0]
                self._left = struct.unpack(">I", self._header[4:8])[0]
                self._header.clear()
                continue
            take = min(self._left, n - i)
            chunk = data[i: i + take] if (i or take < n) else data
            i += take
            self._left -= take
            if self._kind in (2, 3) or self._failed:  # stderr, the engine's error stream, or no answer at all
                self._stderr += chunk[: MAX_STDERR - len(self._stderr)]
            elif self._start is not None:
                self._answer_starts(chunk)
            else:
                self.inner.data_received(chunk)

    def _answer_starts(self, chunk: bytes) -> None:
        """The first stdout bytes: an HTTP answer, or the engine saying the exec failed (it writes that to stdout
        once the stream is hijacked), which becomes the error instead of an 'invalid HTTP response'."""
        assert self._start is not None
        self._start += chunk
        head = bytes(self._start[:5])
        if len(head) < 5 and b"HTTP/".startswith(head):
            return  # too short to tell yet
        start, self._start = bytes(self._start), None
        if head == b"HTTP/":
            self.inner.data_received(start)
            return
        self._failed = True
        self._stderr += start[: MAX_STDERR - len(self._stderr)]
        if self.transport is not None:
            self.transport.close()

    def _refused(self, code: int, message: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(EngineReplied(code, f"the engine refused the relay's exec: {message}"))
        if self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool | None:
        return False  # close: the exec has ended

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(
                BackendNotReady(f"the engine closed the relay's connection before the exec started ({exc})")
            )
            return
        refused = sockperm.refusal(self._stderr.decode(errors="replace"))
        if refused is not None:
            exc = unreachable(refused[0], self.socket_name)
        elif self._stderr.strip():
            exc = BackendNotReady(f"the relay failed: {self._stderr.decode(errors='replace').strip()[:300]}")
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def open_relayed(
    engine: EngineHTTP, container: str, socket_name: str, factory: Callable[[], asyncio.Protocol]
) -> asyncio.Protocol:
    """A connection to ``socket_name`` in the guest-services volume, through an exec in ``container``.

    Returns the protocol ``factory`` made, connected; the engine's refusals become BackendNotReady."""
    try:
        created = await engine.request(
            "POST", f"/containers/{quote(container, safe='')}/exec",
            json_body={"AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": False,
                       "Cmd": sockperm.connect_command(socket_name)},
        )
        exec_id = str(created.json()["Id"])
    except EngineReplied as exc:
        if exc.status == 404:
            raise BackendNotReady(f"the relay container {container} does not exist; is the backend running?") from None
        raise BackendNotReady(f"the relay container {container}: {exc.message}") from None
    except (DockextError, KeyError, ValueError) as exc:
        raise BackendNotReady(f"cannot start the relay in {container}: {exc}") from None
    body = json.dumps({"Detach": False, "Tty": False}).encode()
    start = (
        f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
        f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    inner = factory()
    stream: RelayStream | None = None

    def make() -> RelayStream:
        nonlocal stream
        stream = RelayStream(inner, start, socket_name)
        return stream

    try:
        await engine.connect(make)
        assert stream is not None
        try:
            await stream.ready
        except BaseException:
            if stream.transport is not None:
                stream.transport.close()
            raise
    except EngineReplied as exc:
        raise BackendNotReady(f"the relay container {container}: {exc.message}") from None
    except DockextError as exc:
        if isinstance(exc, BackendNotReady):
            raise
        raise BackendNotReady(f"cannot reach the relay in {container}: {exc.message}") from None
    return inner
