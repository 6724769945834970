"""The relayed connection of a remote engine's backend (server/relay.py), fed bytes as the engine sends them.

The engine test (tests/engine/test_remote_engine.py) runs the same code against a real engine; these pin the
framing at every split point and the wording of failures, which the engine rarely produces on demand."""

from __future__ import annotations

import asyncio
import struct

import pytest

from dockext import sockperm
from dockext.errors import BackendNotReady
from dockext.server.engine_http import EngineReplied
from dockext.server.relay import RelayStream
from tests.support.aio import run

UPGRADED = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\n\r\n"


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", kind, len(payload)) + payload


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.received = bytearray()
        self.lost: list[Exception | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


async def started(inner: Inner) -> tuple[RelayStream, Transport]:
    stream = RelayStream(inner, b"POST /exec/x/start ...", "backend.sock")
    transport = Transport()
    stream.connection_made(transport)
    return stream, transport


def test_stdout_reaches_the_protocol_whole_at_every_split_and_stderr_does_not() -> None:
    run(_test_stdout_reaches_the_protocol_whole_at_every_split_and_stderr_does_not())


async def _test_stdout_reaches_the_protocol_whole_at_every_split_and_stderr_does_not() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 3
    wire = UPGRADED + frame(1, answer[:20]) + frame(2, b"noise\n") + frame(1, answer[20:]) + frame(1, b"")
    for size in (1, 3, 7, 8, 9, 64, len(wire)):
        inner = Inner()
        stream, transport = await started(inner)
        assert transport.written == b"POST /exec/x/start ..."  # the exec start goes first, by itself
        for i in range(0, len(wire), size):
            stream.data_received(wire[i: i + size])
        assert stream.ready.done() and stream.ready.exception() is None
        assert inner.transport is transport  # the protocol writes raw: the exec's stdin has no framing
        assert bytes(inner.received) == answer, size
        stream.connection_lost(None)
        # what the helper said on stderr comes with the end (the protocol ignores it once bytes came)
        assert len(inner.lost) == 1 and isinstance(inner.lost[0], BackendNotReady)
        assert inner.lost[0].message == "the relay failed: noise"
    inner = Inner()
    stream, _ = await started(inner)
    stream.data_received(UPGRADED + frame(1, answer))
    stream.connection_lost(None)
    assert bytes(inner.received) == answer and inner.lost == [None]


def test_a_refusing_socket_becomes_the_error_a_local_socket_gives() -> None:
    run(_test_a_refusing_socket_becomes_the_error_a_local_socket_gives())


async def _test_a_refusing_socket_becomes_the_error_a_local_socket_gives() -> None:
    for name, words in (
        ("ENOENT", "connect ENOENT backend.sock (the backend socket does not exist; is the backend running?)"),
        ("ECONNREFUSED", "connect ECONNREFUSED backend.sock (nothing listens on the backend socket)"),
        ("EACCES", "connect EACCES backend.sock (dockext may not connect to the backend socket)"),
    ):
        inner = Inner()
        stream, _ = await started(inner)
        line = f"sockperm: connect {name} /run/guest-services/backend.sock: reason\n".encode()
        stream.data_received(UPGRADED + frame(2, line))
        stream.connection_lost(None)
        assert len(inner.lost) == 1 and isinstance(inner.lost[0], BackendNotReady)
        assert inner.lost[0].message == words


def test_the_engine_refusing_the_exec_start_rejects_ready() -> None:
    run(_test_the_engine_refusing_the_exec_start_rejects_ready())


async def _test_the_engine_refusing_the_exec_start_rejects_ready() -> None:
    inner = Inner()
    stream, transport = await started(inner)
    stream.data_received(b"HTTP/1.1 409 Conflict\r\nContent-Length: 40\r\n\r\n"
                         b'{"message":"Container x is not running"}')
    with pytest.raises(EngineReplied, match="is not running"):
        await stream.ready
    assert transport.closed and inner.transport is None


def test_a_connection_lost_before_the_upgrade_rejects_ready() -> None:
    run(_test_a_connection_lost_before_the_upgrade_rejects_ready())


async def _test_a_connection_lost_before_the_upgrade_rejects_ready() -> None:
    inner = Inner()
    stream, _ = await started(inner)
    stream.connection_lost(ConnectionResetError("reset"))
    with pytest.raises(BackendNotReady, match="before the exec started"):
        await stream.ready
    assert inner.lost == []  # never connected, so never lost


def test_an_exec_that_fails_after_the_upgrade_is_the_relays_error_not_an_invalid_answer() -> None:
    run(_test_an_exec_that_fails_after_the_upgrade())


async def _test_an_exec_that_fails_after_the_upgrade() -> None:
    # the engine writes a failed exec start into the stdout stream; its own error stream is type 3
    for wire in (frame(1, b"OCI runtime exec failed: container is paused\r\n"), frame(3, b"exec failed\r\n")):
        inner = Inner()
        stream, _ = await started(inner)
        for i in range(0, len(UPGRADED + wire), 3):
            stream.data_received((UPGRADED + wire)[i: i + 3])
        stream.connection_lost(None)
        assert inner.received == b""
        assert isinstance(inner.lost[0], BackendNotReady) and "the relay failed" in inner.lost[0].message


def test_refusal_lines_are_recognised_and_nothing_else():
    assert sockperm.refusal("sockperm: connect ENOENT /run/guest-services/a.sock: No such file\n") == (
        "ENOENT", "/run/guest-services/a.sock")
    assert sockperm.refusal("sockperm: probe E111 /x: y") == ("E111", "/x")
    assert sockperm.refusal("something else entirely") is None
    assert sockperm.refusal("sockperm: connect ENOENT") is None
    assert sockperm.connect_command("b.sock") == ["/sockperm", "connect", "/run/guest-services/b.sock"]
