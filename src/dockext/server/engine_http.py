"""The Docker Engine API, asynchronously, straight over its socket (httpx), for the server's Docker views.

Unlike :mod:`dockext.engine` (:mod:`dockext.engineapi`, blocking, used by the CLI and install), this talks to
the engine from the event loop: lists and inspects, log and stats streams, and interactive exec sessions on a hijacked
connection. Engine errors are translated into :class:`EngineReplied` (404 → ``NotFound`` and so on) or
:class:`~dockext.errors.EngineUnavailable` here, at the boundary.

Also here, as pure functions: the stdout/stderr framing of non-TTY streams (:class:`Demuxer`), log lines with
their timestamps (:class:`LogLines`) and the numbers ``docker stats`` shows (:func:`stats_summary`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import re
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from .. import sshdial
from ..dockerhost import DockerHost
from ..errors import DockextError, EngineUnavailable

__all__ = [
    "Demuxer",
    "EngineHTTP",
    "EngineReplied",
    "ExecSession",
    "LogLine",
    "LogLines",
    "endpoint",
    "stats_summary",
]

STREAM_TIMEOUT = httpx.Timeout(None, connect=5.0)
MAX_LINE = 16 * 1024
TIMESTAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ?")
# CSI sequences, OSC strings, and the two-byte escapes: logs are shown as plain text
ANSI_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class EngineReplied(DockextError):
    """The engine answered a request with an error status; ``status`` is the engine's, ``type`` says what."""

    TYPES = {400: "BadRequest", 404: "NotFound", 409: "Conflict"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = status if status in self.TYPES else 502

    @property
    def type(self) -> str:
        return self.TYPES.get(self.status, "EngineError")


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    uds: str | None = None
    tcp: tuple[str, int] | None = None
    ssl: ssl.SSLContext | None = None


def endpoint(host: DockerHost | str) -> Endpoint:
    """Where the engine is: ``unix:///path``, ``tcp://host:port`` (``http://``) in plain HTTP or TLS, or
    ``ssh://`` (the socket of this process's ssh dialer)."""
    target = host if isinstance(host, DockerHost) else DockerHost(host)
    parsed = urlparse(target.url)
    if parsed.scheme == "unix":
        if not parsed.path:
            raise EngineUnavailable(f"DOCKER_HOST {target.url!r} names no socket path")
        return Endpoint("http://docker", uds=parsed.path)
    if parsed.scheme == "ssh":  # through this process's ssh dialer (dockext/sshdial.py)
        return Endpoint("http://docker", uds=sshdial.dialer_for(target.url).path)
    if parsed.scheme in ("tcp", "http", "https"):
        if not parsed.hostname:
            raise EngineUnavailable(f"DOCKER_HOST {target.url!r} names no host")
        context = target.ssl_context()
        if context is None and parsed.scheme == "https":
            context = DockerHost(target.url, tls=True, verify=True).ssl_context()
        try:
            port = parsed.port or (2376 if context else 2375)
        except ValueError:
            raise EngineUnavailable(f"DOCKER_HOST {target.url!r}: the port is not a number from 1 to 65535") from None
        name = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        scheme = "https" if context else "http"
        return Endpoint(f"{scheme}://{name}:{port}", tcp=(parsed.hostname, port), ssl=context)
    raise EngineUnavailable(
        f"DOCKER_HOST {target.url!r} is not supported by the dashboard's Docker views",
        hint="Use unix:///path/to/docker.sock, tcp://host:port (with DOCKER_TLS_VERIFY for TLS) or ssh://user@host.",
    )


def _message(response: httpx.Response, body: bytes) -> str:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    text = body.decode(errors="replace").strip()
    return text[:500] or f"the engine answered HTTP {response.status_code}"


class EngineHTTP:
    """One pooled async connection to the engine (``state.engine.host``)."""

    def __init__(self, host: DockerHost | str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.target = host if isinstance(host, DockerHost) else DockerHost(host)
        self.host = self.target.url
        self.endpoint = endpoint(self.target)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                uds=self.endpoint.uds, retries=0, verify=self.endpoint.ssl if self.endpoint.ssl else True
            )
        # one idle connection kept: a burst of calls (one per vm exec, say) leaves no open connections behind
        self.client = httpx.AsyncClient(
            transport=transport, base_url=self.endpoint.base_url, timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_keepalive_connections=1),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        why = str(exc) or type(exc).__name__
        if self.target.scheme == "ssh":
            why = sshdial.dialer_for(self.target.url).last_error or why
        return EngineUnavailable(
            f"cannot reach the Docker engine at {self.target.describe()}: {why}",
            hint="Is dockerd running, and may this user use it?",
        )

    async def request(
        self, method: str, path: str, params: Mapping[str, str] | None = None, json_body: Any = None
    ) -> httpx.Response:
        """One request; a non-2xx answer raises :class:`EngineReplied`."""
        try:
            response = await self.client.request(method, path, params=params, json=json_body)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None
        if response.status_code >= 400:
            raise EngineReplied(response.status_code, _message(response, response.content))
        return response

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return (await self.request("GET", path, params)).json()

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: Mapping[str, str] | None = None) -> AsyncIterator[httpx.Response]:
        """A streaming GET (logs, stats) with no read timeout; closed on exit."""
        try:
            async with self.client.stream("GET", path, params=params, timeout=STREAM_TIMEOUT) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise EngineReplied(response.status_code, _message(response, body))
                yield response
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None

    # -- interactive exec ----------------------------------------------------------------------------
    async def open_exec(self, container: str, cmd: list[str], *, cols: int, rows: int,
                        env: list[str] | None = None) -> ExecSession:
        """``docker exec -it``: create the exec, start it on a hijacked connection, size its terminal."""
        created = await self.request(
            "POST", f"/containers/{quote(container, safe='')}/exec",
            json_body={
                "AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": True,
                "Cmd": cmd, "Env": env or [],
            },
        )
        exec_id = str(created.json()["Id"])
        reader, writer = await self._raw_connection()
        body = json.dumps({"Detach": False, "Tty": True, "ConsoleSize": [rows, cols]}).encode()
        head = (
            f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            writer.write(head + body)
            await writer.drain()
            status_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            writer.close()
            raise self._unavailable(exc) from None
        status_line = status_head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if code not in (101, 200):
            rest = b""
            with contextlib.suppress(Exception):
                rest = await asyncio.wait_for(reader.read(4096), 2)
            writer.close()
            raise EngineReplied(code or 502, _message(httpx.Response(code or 502), rest))
        session = ExecSession(self, exec_id, reader, writer)
        await session.resize(cols, rows)
        return session

    async def _raw_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.endpoint.uds is not None:
                return await asyncio.open_unix_connection(self.endpoint.uds)
            assert self.endpoint.tcp is not None
            return await asyncio.open_connection(*self.endpoint.tcp, ssl=self.endpoint.ssl)
        except OSError as exc:
            raise self._unavailable(exc) from None

    async def connect(self, factory: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """A new connection to the engine driven by the protocol ``factory`` makes (for hijacked streams)."""
        loop = asyncio.get_running_loop()
        try:
            if self.endpoint.uds is not None:
                _, protocol = await loop.create_unix_connection(factory, self.endpoint.uds)
            else:
                assert self.endpoint.tcp is not None
                _, protocol = await loop.create_connection(factory, *self.endpoint.tcp, ssl=self.endpoint.ssl)
        except OSError as exc:
            raise self._unavailable(exc) from None
        return protocol


# The shell of an interactive session: tell dockext its pid (as an OSC sequence a terminal would ignore),
# then become bash when the image has it, else sh. The pid lets dockext end the session's processes later:
# the engine has no API to kill an exec, and closing the connection leaves them running.
SHELL_SCRIPT = (
    "printf '\\033]dockext-pid;%s\\007' \"$$\"; "
    "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh"
)
PID_RE = re.compile(rb"\x1b\]dockext-pid;(\d+)\x07")
# Ends every process of one session (the shell is the session leader of its terminal): SIGHUP first, as a
# closing terminal would, SIGKILL for what is left. Shell builtins only (read, set, kill, test).
KILL_SCRIPT = (
    'sid=$1; sig=$2; for d in /proc/[0-9]*; do read -r s 2>/dev/null < "$d/stat" || continue; '
    's=${s##*) }; set -- $s; [ "$4" = "$sid" ] && kill "-$sig" "${d#/proc/}" 2>/dev/null; done; true'
)


@dataclass
class ExecSession:
    """One interactive exec on a hijacked connection: raw bytes both ways (a TTY has no stream framing)."""

    engine: EngineHTTP
    exec_id: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pid: str | None = None
    _head: bytearray = field(default_factory=bytearray)
    _head_done: bool = False

    async def read(self) -> bytes:
        """The next output bytes (b"" at the end), with the pid announcement taken out."""
        while True:
            chunk = await self.reader.read(65536)
            if self._head_done:
                return chunk
            if not chunk:  # the end before any announcement
                self._head_done = True
                out = bytes(self._head)
                self._head.clear()
                return out
            self._head += chunk
            m = PID_RE.search(self._head)
            if m:
                self.pid = m.group(1).decode()
                out = bytes(self._head[: m.start()] + self._head[m.end():])
            elif len(self._head) > 256:
                out = bytes(self._head)
            else:
                continue
            self._head.clear()
            self._head_done = True
            if out:
                return out

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(DockextError):
            await self.engine.request(
                "POST", f"/exec/{self.exec_id}/resize", params={"h": str(rows), "w": str(cols)}
            )

    async def exit_code(self) -> int | None:
        with contextlib.suppress(DockextError, ValueError):
            info = await self.engine.get_json(f"/exec/{self.exec_id}/json")
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if isinstance(code, int) else None
        return None

    async def close(self, container: str) -> None:
        """Close the connection and end the session's processes (they would outlive it otherwise)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if self.pid is None:
            return
        try:
            info = await self.engine.get_json(f"/exec/{self.exec_id}/json")
        except DockextError:
            return
        if not info.get("Running"):
            return
        for sig, pause in (("HUP", 1.0), ("KILL", 0.0)):
            await self._signal_session(container, sig)
            if pause:
                await asyncio.sleep(pause)
                with contextlib.suppress(DockextError):
                    if not (await self.engine.get_json(f"/exec/{self.exec_id}/json")).get("Running"):
                        return

    async def _signal_session(self, container: str, sig: str) -> None:
        with contextlib.suppress(DockextError, KeyError, ValueError):
            created = await self.engine.request(
                "POST", f"/containers/{quote(container, safe='')}/exec",
                json_body={"Cmd": ["sh", "-c", KILL_SCRIPT, "sh", self.pid, sig], "AttachStdout": False,
                           "AttachStderr": False, "User": "0"},
            )
            kill_id = created.json()["Id"]
            await self.engine.request("POST", f"/exec/{kill_id}/start", json_body={"Detach": True, "Tty": False})


# -- stream framing --------------------------------------------------------------------------------------

class Demuxer:
    """The Engine's stdout/stderr framing of non-TTY streams: an 8-byte header ``[stream, 0, 0, 0, size
    (big-endian u32)]`` before each payload. Feed it chunks as they come; it yields ``(stream, payload)``
    with ``stream`` 1 (stdout) or 2 (stderr); 0 (stdin) is reported as stdout."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        self._buf += chunk
        while len(self._buf) >= 8:
            kind, size = self._buf[0], struct.unpack(">I", self._buf[4:8])[0]
            if len(self._buf) < 8 + size:
                return
            payload = bytes(self._buf[8: 8 + size])
            del self._buf[: 8 + size]
            yield (2 if kind == 2 else 1), payload


@dataclass(frozen=True)
class LogLine:
    stream: str  # "stdout" | "stderr"
    ts: str | None  # RFC 3339 with nanoseconds, as the engine writes it
    text: str
    partial: bool = False  # the line goes on in the next LogLine of the same stream

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"s": self.stream, "t": self.ts, "x": self.text}
        if self.partial:
            out["p"] = True
        return out


def clean_log_text(text: str) -> str:
    text = ANSI_RE.sub("", text.rstrip("\r"))
    return CONTROL_RE.sub("", text.replace("\r", ""))


@dataclass
class _Pending:
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    text: str = ""


class LogLines:
    """Lines out of a log stream fetched with ``timestamps=1``: each line starts with its timestamp.

    ``feed`` gives complete lines; ``flush`` gives what is left of unfinished ones (called when the stream
    has been quiet for a moment, so a prompt without a newline still shows)."""

    def __init__(self) -> None:
        self._streams: dict[str, _Pending] = {}

    @property
    def pending(self) -> bool:
        """Some stream has an unfinished line."""
        return any(p.text for p in self._streams.values())

    def feed(self, stream: str, data: bytes) -> list[LogLine]:
        pending = self._streams.setdefault(stream, _Pending())
        pending.text += pending.decoder.decode(data)
        out: list[LogLine] = []
        while True:
            nl = pending.text.find("\n")
            if nl < 0:
                break
            raw, pending.text = pending.text[:nl], pending.text[nl + 1:]
            out += self._lines(stream, raw, finished=True)
        if len(pending.text) > MAX_LINE:  # no end in sight: give out what there is
            raw, pending.text = pending.text, ""
            out += self._lines(stream, raw, finished=False)
        return out

    def flush(self) -> list[LogLine]:
        out: list[LogLine] = []
        for stream, pending in self._streams.items():
            if pending.text:
                raw, pending.text = pending.text, ""
                out += self._lines(stream, raw, finished=False)
        return out

    def _lines(self, stream: str, raw: str, *, finished: bool) -> list[LogLine]:
        """One line of the log (pieces of at most MAX_LINE characters; all but a finished line's last are
        partial)."""
        ts = None
        m = TIMESTAMP_RE.match(raw)
        if m:
            ts, raw = m.group(1), raw[m.end():]
        text = clean_log_text(raw)
        pieces = [text[i:i + MAX_LINE] for i in range(0, len(text), MAX_LINE)] or [""]
        return [
            LogLine(stream, ts, piece, partial=not (finished and i == len(pieces) - 1))
            for i, piece in enumerate(pieces)
        ]


def ts_to_since(ts: str) -> str | None:
    """An RFC 3339 timestamp as the ``since`` parameter of the logs endpoint, 1 ns later (``since`` is
    inclusive): ``seconds.nanoseconds``. None if it cannot be read."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", ts)
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        seconds = int(datetime.fromisoformat(m.group(1) + zone).timestamp())
    except ValueError:
        return None
    nanos = int((m.group(2) or "0").ljust(9, "0")[:9]) + 1
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    return f"{seconds}.{nanos:09d}"


# -- stats ---------------------------------------------------------------------------------------------

def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def stats_summary(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What ``docker stats`` shows, from one sample of ``GET /containers/{id}/stats``.

    CPU % = container CPU time delta / system CPU time delta * online CPUs * 100; memory used = usage minus
    the inactive page cache (cgroup v1 ``total_inactive_file``, v2 ``inactive_file``), as the docker CLI does.
    """
    cpu = raw.get("cpu_stats") or {}
    pre = raw.get("precpu_stats") or {}
    cpu_delta = _num((cpu.get("cpu_usage") or {}).get("total_usage")) - _num(
        (pre.get("cpu_usage") or {}).get("total_usage")
    )
    sys_delta = _num(cpu.get("system_cpu_usage")) - _num(pre.get("system_cpu_usage"))
    online = int(_num(cpu.get("online_cpus"))) or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0

    mem = raw.get("memory_stats") or {}
    usage = _num(mem.get("usage"))
    details = mem.get("stats") or {}
    cache = 0.0
    for key in ("total_inactive_file", "inactive_file"):
        if key in details and _num(details[key]) < usage:
            cache = _num(details[key])
            break
    used = max(usage - cache, 0.0)
    limit = _num(mem.get("limit"))
    mem_percent = used / limit * 100.0 if limit > 0 else 0.0

    rx = tx = 0.0
    for net in (raw.get("networks") or {}).values():
        rx += _num(net.get("rx_bytes"))
        tx += _num(net.get("tx_bytes"))
    read = write = 0.0
    for entry in (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += _num(entry.get("value"))
        elif op == "write":
            write += _num(entry.get("value"))
    when = raw.get("read")
    running = isinstance(when, str) and not when.startswith("0001-")
    return {
        "read": when if running else None,
        "running": running,
        "cpu": {"percent": round(cpu_percent, 2), "online": online},
        "memory": {"used": int(used), "limit": int(limit), "percent": round(mem_percent, 2)},
        "network": {"rx": int(rx), "tx": int(tx)},
        "block": {"read": int(read), "write": int(write)},
        "pids": int(_num((raw.get("pids_stats") or {}).get("current"))),
    }
