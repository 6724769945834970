"""Streaming exec for extensions over a WebSocket (the ``{stream: ...}`` overload of the three CLIs).

``extension.py`` has already checked the capability and that ``Origin`` is the extension's own origin. One
connection runs one command (docs/design.md, "Streaming exec (WebSocket)"):

* the page sends ``{"cli", "cmd", "args", "options": {"cwd"?, "env"?}}`` (text); ``args`` are the argv as given;
* the server sends the output as it arrives, as **binary** messages: one byte naming the stream (``1`` stdout,
  ``2`` stderr) followed by the bytes read from it, untouched (the page decodes UTF-8 incrementally, per
  stream, so a character split between two reads is never mangled). Order is kept within a stream;
* then the text message ``{"exit": status, "signal": name | null}`` once the process has exited *and* its
  output has ended (like Node's ``close`` event), ``status`` as a shell reports it (128 + N when killed by
  signal N), and closes with 1000;
* or ``{"error": message, "type": "ExecRefused" | "PermissionDenied" | "ExecError" | "BadRequest", "code": status}``
  when nothing ran (refused by policy or by the user's grants: 126; binary or cwd not found: 127; not
  executable: 126), and closes with 1008 for a refusal or a bad request, 1000 otherwise.

The page sends ``{"close": true}`` (or just closes the socket) to end the process group: SIGTERM, SIGKILL
after a grace period. After ``{"close": true}`` the server still sends the output that arrives and the
``exit`` message.

Output travels as raw bytes rather than JSON strings because escaping and parsing JSON costs three times the
CPU per megabyte of the whole binary path (bench/stream.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import execution
from ..errors import DockextError
from . import wire
from .security import parse_json
from .state import HostState, Instance

__all__ = ["handle"]

MAX_REQUEST = 1 << 20  # bytes of the first message
REQUEST_TIMEOUT = 30.0  # seconds to wait for the first message
FIRST_READ = 64 << 10  # bytes read from a pipe at once at first; grows while reads fill the buffer...
READ_SIZE = 1 << 20  # ...up to this (one message); a quiet process never costs more than FIRST_READ
PIPE_SIZE = 1 << 20  # bytes a pipe holds before the process waits (Linux default 64 KiB; the unprivileged max)
DRAIN_AFTER_KILL = 1.0  # seconds to wait for the pipes once the group is dead (a setsid child may hold them)
BURST_GAP = 0.002  # seconds: output read less than this ago means the process is writing in a burst...
GATHER = 0.0005  # ...and then its next output is read this much after the pipe becomes readable
CLOSE_POLICY = 1008
CLOSE_NORMAL = 1000
STDOUT, STDERR = 1, 2  # the first byte of an output message


async def handle(state: HostState, inst: Instance, ws: WebSocket) -> None:
    await ws.accept()
    request = await _request(ws)
    if request is None:
        return
    pipes = (_pipe(), _pipe())  # (read end, write end) for stdout and for stderr
    try:
        options = request.get("options")
        if request.get("cli") in ("docker", "host"):  # the user's grants (dockext permissions)
            state.check_permission(inst.record, str(request.get("cli")))
        container = None
        if request.get("cli") == "vm":  # its backend, on the engine it was made on, and its own container
            state.check_engine(inst.record)
            container = await state.vm_container(inst.record) if inst.record.vm else None
        p = execution.plan(
            inst.record, inst.ext_dir, str(request.get("cli")), request.get("cmd"), request.get("args", []),
            options if isinstance(options, dict) else None,
            docker_host=state.engine.target, verbatim=True, container=container,
        )
        proc = await inst.processes.spawn(p, stdout=pipes[0][1], stderr=pipes[1][1])
    except BaseException as exc:
        for fd in (*pipes[0], *pipes[1]):  # whatever went wrong: the pipes never outlive a failed start
            os.close(fd)
        if isinstance(exc, DockextError):  # refused (policy, the user's grants, or they cannot be read)
            await _final(ws, {"error": str(exc), "type": exc.type, "code": 126}, CLOSE_POLICY)
        elif isinstance(exc, OSError):
            code, message = execution.spawn_failure(p, exc)
            await _final(ws, {"error": message, "type": "ExecError", "code": code}, CLOSE_NORMAL)
        else:
            raise
        return
    os.close(pipes[0][1])  # the child has them now: EOF comes when it (and its children) close theirs
    os.close(pipes[1][1])
    await _Stream(inst.processes, proc, ws, pipes[0][0], pipes[1][0]).run()


def _pipe() -> tuple[int, int]:
    """A pipe for one output stream: a larger buffer where the system allows it, the read end non-blocking."""
    r, w = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    os.set_blocking(r, False)
    return r, w


async def _request(ws: WebSocket) -> dict[str, Any] | None:
    """The first message, or None after answering why there is none."""
    try:
        message = await asyncio.wait_for(ws.receive(), REQUEST_TIMEOUT)
    except TimeoutError:
        await _final(ws, {"error": "no exec request received", "type": "BadRequest", "code": 126}, CLOSE_POLICY)
        return None
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None and message.get("bytes") is not None:
        raw = message["bytes"].decode(errors="replace")
    body: Any = None
    if isinstance(raw, str) and len(raw) <= MAX_REQUEST:
        with contextlib.suppress(ValueError):
            body = parse_json(raw)
    if not isinstance(body, dict):
        await _final(
            ws, {"error": "expected one JSON object {cli, cmd, args, options}", "type": "BadRequest", "code": 126},
            CLOSE_POLICY,
        )
        return None
    return body


async def _final(ws: WebSocket, message: dict[str, Any], code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await ws.send_text(json.dumps(message))
        await ws.close(code)


class _Stream:
    """Pumps one running process to one WebSocket until the process and its output have ended."""

    def __init__(
        self, group: execution.ProcessGroup, proc: asyncio.subprocess.Process, ws: WebSocket, stdout: int,
        stderr: int,
    ) -> None:
        self.group = group
        self.proc = proc
        self.ws = ws
        self.fds = (stdout, stderr)
        self.connected = True
        self._lock = asyncio.Lock()
        # uvicorn with dockext's protocol (wire.WebSocketProtocol) sends output frames without copying them
        extension = ws.scope.get("extensions", {}).get(wire.BINARY_FRAMES)
        self._frames: wire.BinaryFrames | None = extension["frames"] if extension else None

    async def run(self) -> None:
        output = asyncio.ensure_future(asyncio.gather(self._pump(self.fds[0], STDOUT), self._pump(self.fds[1], STDERR)))
        ended = asyncio.ensure_future(self._ended(output))
        client = asyncio.ensure_future(self._client())
        try:
            await asyncio.wait({ended, client}, return_when=asyncio.FIRST_COMPLETED)
            if not ended.done():  # the page asked to close, or went away: end the process group
                await self.group.terminate(self.proc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended), DRAIN_AFTER_KILL)
            returncode = self.proc.returncode
            if returncode is None:  # unreachable in practice: terminate() waits for the leader
                returncode = await self.proc.wait()
            self.group.reaped(self.proc)
            status, sig = execution.exit_status(returncode)
            if await self._send({"exit": status, "signal": sig}):
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await self.ws.close(CLOSE_NORMAL)
        finally:
            for task in (client, ended, output):
                task.cancel()
            if self.proc.returncode is None:  # cancelled (server shutdown): never leave the process behind
                await asyncio.shield(self.group.terminate(self.proc))

    async def _ended(self, output: asyncio.Future[Any]) -> None:
        await output
        await self.proc.wait()

    async def _pump(self, fd: int, tag: int) -> None:
        """Sends what ``fd`` gives until EOF; reads straight from the pipe (no StreamReader copies), waiting for
        it only when it is empty, so a fast writer costs one read and one message per ``READ_SIZE``.

        Output is read into a buffer laid out as the message: the frame header's room, the stream byte, then
        the bytes. With uvicorn's protocol from ``wire`` that buffer is the frame as sent (no copy); the buffer
        is used again for the next read unless the transport still holds a view of it (a new one is made
        then: making one costs a memset of its size, which was a tenth of the CPU of a fast stream).

        While a process writes in a burst, its next output is read ``GATHER`` after the pipe becomes readable
        rather than at its first byte: a writer of small pieces (``head`` writes 8 KiB at a time) would
        otherwise cost a wake-up, a read and a message per piece: measured, 0.9-1.0 ms of dockext's CPU per MB
        of a fast stream against 0.55-0.6 ms with the pause. A line written after a pause is read at once.
        """
        size = FIRST_READ
        buf = bytearray(wire.HEADROOM + 1 + size)
        loop = asyncio.get_running_loop()
        last = -BURST_GAP
        try:
            while True:
                try:
                    n = os.readv(fd, [memoryview(buf)[wire.HEADROOM + 1:]])
                except BlockingIOError:
                    await _readable(fd)
                    if loop.time() - last < BURST_GAP:
                        await asyncio.sleep(GATHER)
                    continue
                if not n:
                    return
                last = loop.time()
                buf[wire.HEADROOM] = tag
                # when the page is gone, keep reading so the process never blocks on a full pipe
                await self._send_output(buf, wire.HEADROOM, wire.HEADROOM + 1 + n)
                if n == size and size < READ_SIZE:
                    size = min(size * 4, READ_SIZE)
                    buf = bytearray(wire.HEADROOM + 1 + size)
                elif _viewed(buf):
                    buf = bytearray(wire.HEADROOM + 1 + size)
        finally:
            os.close(fd)

    async def _send_output(self, buf: bytearray, start: int, end: int) -> None:
        if not self.connected:
            return
        try:
            async with self._lock:
                if self._frames is not None:
                    self.connected = await self._frames.send(buf, start, end)
                else:
                    await self.ws.send_bytes(bytes(memoryview(buf)[start:end]))
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.connected = False

    async def _client(self) -> None:
        """Returns when the page asks to close the process or goes away; other messages are ignored."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.connected = False
                return
            with contextlib.suppress(ValueError, TypeError):
                body = parse_json(message.get("text") or message.get("bytes") or b"null")
                if isinstance(body, dict) and body.get("close"):
                    return

    async def _send(self, message: dict[str, Any]) -> bool:
        if not self.connected:
            return False
        try:
            async with self._lock:
                await self.ws.send_text(json.dumps(message))
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.connected = False
        return self.connected


def _viewed(buf: bytearray) -> bool:
    """True while a memoryview of ``buf`` exists (a transport keeping part of it to send later).

    A bytearray cannot change size while it is viewed; removing and putting back its last byte is free
    otherwise (a shrink by one byte never reallocates).
    """
    try:
        last = buf.pop()
    except BufferError:
        return True
    buf.append(last)
    return False


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
