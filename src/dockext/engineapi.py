"""The Docker Engine API, synchronously: the engine client of the CLI and of the installer.

HTTP/1.1 with the standard library's ``http.client`` over a unix socket, TCP or TLS (an ``ssh://`` engine is a
unix socket of :mod:`dockext.sshdial`), a small pool of kept-alive connections shared by threads, and the API
version the engine says it speaks (``GET /version``, asked once, as the Docker CLI and the docker SDK's
``version="auto"`` do). The dashboard's own client is asynchronous (``server/engine_http.py``, httpx).

Why not the docker SDK, which dockext used before: it imports ``requests`` and ``urllib3``, about 0.18 s of CPU at
the start of every ``dockext`` command on a slow machine (0.62 s before any work with it, 0.44 s without:
docs/performance.md), and dockext used it only as an HTTP client of the Engine API (its low-level ``APIClient``),
which is what this module is. The tests still use the SDK, as a second, independent client of the same engine.

Errors (turned into :mod:`dockext.errors` by :meth:`dockext.engine.Engine.errors`; a caller that can do without
an answer suppresses them):
:class:`Unreachable` (no connection, or the engine dropped it), :class:`BrokenAnswer` (a timeout, an answer that
is not HTTP or not the JSON it should be), :class:`APIError` (the engine answered an error status; its
``explanation`` is the engine's own message) and its :class:`NotFound` (404).
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import http.client
import json
import re
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

__all__ = ["APIError", "Answer", "BrokenAnswer", "EngineAPI", "NotFound", "TransportError", "Unreachable",
           "demux", "name_in_path", "query", "registry_auth"]

POOL = 8  # idle connections kept per client
CHUNK = 2 << 20  # bytes read at most at once from a streamed answer (an export, a file archive)
BLOCK = 1 << 20  # bytes sent at once from a request body that is a file
MAX_MESSAGE = 1 << 20  # characters of one message of a progress stream (the engine's are a few hundred)
MAX_ERROR = 64 << 10  # bytes of an error's answer read for its explanation
_SPACE = re.compile(r"\s*")


class Readable(Protocol):
    """A request body sent as a file is: read block by block until it gives nothing."""

    def read(self, n: int = -1, /) -> bytes: ...


class TransportError(Exception):
    """The engine could not be asked, or its answer could not be read."""


class Unreachable(TransportError):
    """No connection to the engine, or the engine dropped it (stopped, restarted, refused)."""


class BrokenAnswer(TransportError):
    """The engine did not answer in time, or answered something that is not what the Engine API says."""


class APIError(Exception):
    """The engine answered an error status; ``explanation`` is its own message (``No such image: x``)."""

    def __init__(self, status: int, reason: str, explanation: str, what: str) -> None:
        self.status = status
        self.explanation = explanation
        super().__init__(f"{status} {reason} for {what}: {explanation}" if explanation else
                         f"{status} {reason} for {what}")


class NotFound(APIError):
    """404: no such image, container, volume or path."""


def query(params: Mapping[str, Any] | None) -> str:
    """``?a=1&filters=...`` as the Engine API reads it: booleans as 1/0, ``filters`` as JSON whose values are
    lists (a single string is a list of one), None left out."""
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if name == "filters" and isinstance(value, Mapping):
            value = json.dumps({k: [v] if isinstance(v, str) else list(v) for k, v in value.items()})
        elif isinstance(value, bool):
            value = "1" if value else "0"
        pairs.append((name, str(value)))
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def demux(data: bytes) -> bytes:
    """The payload of a multiplexed stream (a container without a TTY: logs, an exec's output), stdout and stderr in
    the order they came; ``data`` as it is when it is not one (a TTY's raw stream)."""
    out, i = [], 0
    while i < len(data):
        if len(data) - i < 8 or data[i] not in (0, 1, 2) or data[i + 1:i + 4] != b"\0\0\0":
            return data
        size = int.from_bytes(data[i + 4:i + 8], "big")
        if i + 8 + size > len(data):
            return data
        out.append(data[i + 8:i + 8 + size])
        i += 8 + size
    return b"".join(out)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=BLOCK)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Answer:
    """An answer being read: its status, its headers, and its body (whole, in chunks or as JSON messages)."""

    def __init__(self, response: http.client.HTTPResponse, what: str) -> None:
        self.response = response
        self.status = response.status
        self.what = what

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def read(self) -> bytes:
        with _reading(self.what):
            return self.response.read()

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body as it comes, in pieces of at most ``size`` bytes."""
        while True:
            with _reading(self.what):
                data = self.response.read1(size)
            if not data:
                return
            yield data

    def messages(self) -> Iterator[dict[str, Any]]:
        """The JSON objects of a progress stream (a pull, a load, a build), one after the other as they come."""
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")("replace")  # a character may be cut between two reads
        buf = ""
        for data in self.chunks(64 << 10):
            buf += text.decode(data)
            pos = 0
            while True:
                pos = _SPACE.match(buf, pos).end()  # type: ignore[union-attr]  # \s* always matches
                if pos == len(buf):
                    break
                try:
                    obj, pos = decoder.raw_decode(buf, pos)
                except ValueError:
                    break  # not whole yet
                if isinstance(obj, dict):
                    yield obj
            buf = buf[pos:]
            if len(buf) > MAX_MESSAGE:
                raise BrokenAnswer(f"{self.what}: the engine sent a JSON message of over {MAX_MESSAGE} bytes, "
                                   "or something that is not JSON")
        if (buf + text.decode(b"", final=True)).strip():
            raise BrokenAnswer(f"{self.what}: the engine's answer ended inside a JSON message")


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        raise BrokenAnswer(f"{what}: the engine did not answer in time") from None
    except (http.client.IncompleteRead, http.client.LineTooLong, http.client.BadStatusLine) as exc:
        if isinstance(exc, ConnectionError):  # RemoteDisconnected: the engine went away
            raise Unreachable(f"{what}: the engine closed the connection") from None
        raise BrokenAnswer(f"{what}: the engine's answer is cut or not HTTP ({type(exc).__name__})") from None
    except ssl.SSLError as exc:
        raise Unreachable(f"{what}: TLS: {exc}") from None
    except (ConnectionError, OSError) as exc:
        raise Unreachable(f"{what}: {exc.strerror or exc}") from None
    except http.client.HTTPException as exc:
        raise BrokenAnswer(f"{what}: {type(exc).__name__}: {exc}") from None


class EngineAPI:
    """A client of one engine's API at ``url`` (``unix:///path``, ``tcp://host:port``, TLS when ``ssl_context``
    is given)."""

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 300.0,
                 version: str | None = None) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "unix":
            if not parsed.path:
                raise ValueError(f"{url!r} names no socket")
        elif parsed.scheme in ("tcp", "http", "https"):
            if not parsed.hostname:
                raise ValueError(f"{url!r} names no host")
        else:
            raise ValueError(f"{url!r}: only unix://, tcp:// and ssh:// engines are supported")
        self.url = url
        self._parsed = parsed
        self._ssl = ssl_context if ssl_context is not None else (
            ssl.create_default_context() if parsed.scheme == "https" else None)
        self.timeout = timeout
        self._version = version
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------------------------
    def _new_connection(self) -> http.client.HTTPConnection:
        p = self._parsed
        if p.scheme == "unix":
            return _UnixConnection(p.path, self.timeout)
        port = p.port or (2376 if self._ssl is not None else 2375)
        if self._ssl is not None:
            return http.client.HTTPSConnection(p.hostname or "", port, timeout=self.timeout, context=self._ssl,
                                               blocksize=BLOCK)
        return http.client.HTTPConnection(p.hostname or "", port, timeout=self.timeout, blocksize=BLOCK)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A kept-alive connection that is still open, else a new one; and whether it was kept."""
        while True:
            with self._lock:
                if not self._idle:
                    return self._new_connection(), False
                conn = self._idle.pop()
            if not _dropped(conn):
                return conn, True
            conn.close()

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < POOL:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @property
    def api_version(self) -> str:
        """The API version the engine speaks (``GET /version``'s ``ApiVersion``), asked once."""
        if self._version is None:
            found = self.request_json("GET", "/version", versioned=False).get("ApiVersion")
            if not isinstance(found, str) or not found:
                raise BrokenAnswer("GET /version: the engine did not say which API version it speaks")
            self._version = found
        return self._version

    # -- requests ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def open(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
             json_body: Any = None, body: bytes | Readable | None = None,
             headers: Mapping[str, str] | None = None, timeout: float | None = None,
             versioned: bool = True, missing_ok: bool = False) -> Iterator[Answer]:
        """Send one request; the answer, to read within the block (the connection is kept for the next request
        when the answer was read to its end, else closed). An error status raises :class:`APIError` (with its
        explanation read), but 404 when ``missing_ok`` (the caller looks at :attr:`Answer.status`)."""
        url = (f"/v{self.api_version}{path}" if versioned else path) + query(params)
        what = f"{method} {path}"
        sent_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent_headers["Content-Type"] = "application/json"
        if isinstance(body, bytes):
            sent_headers["Content-Length"] = str(len(body))
        elif body is None and method in ("POST", "PUT"):
            sent_headers["Content-Length"] = "0"
        conn, reused = self._take()
        response = self._send(conn, reused, method, url, body, sent_headers, what, timeout)
        done = False
        try:
            answer = Answer(response, what)
            if response.status >= 400 and not (missing_ok and response.status == 404):
                error = self._error(answer)  # its body read: the connection can be kept
                done = response.isclosed() and not response.will_close
                raise error
            yield answer
            if not response.isclosed() and response.length == 0:
                response.read()  # an empty body (HEAD, 204): read, so that the connection is kept
            done = response.isclosed() and not response.will_close
        finally:
            if done:
                if conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
                self._give_back(conn)
            else:
                conn.close()

    def _send(self, conn: http.client.HTTPConnection, reused: bool, method: str, url: str,
              body: bytes | Readable | None, headers: dict[str, str], what: str,
              timeout: float | None) -> http.client.HTTPResponse:
        for attempt in (1, 2):
            try:
                with _reading(what):
                    conn.request(method, url, body=body, headers=headers)
                    if timeout is not None and conn.sock is not None:
                        conn.sock.settimeout(timeout)
                    return conn.getresponse()
            except Unreachable:
                conn.close()
                # a kept-alive connection the engine closed just as it was taken: a request that changes nothing
                # is sent once more, on a new connection (any other could have been done before the engine closed)
                if attempt == 2 or not reused or method not in ("GET", "HEAD"):
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _error(self, answer: Answer) -> APIError:
        text = b""
        with contextlib.suppress(TransportError), _reading(answer.what):
            text = answer.response.read(MAX_ERROR)
        explanation = text.decode(errors="replace").strip()
        with contextlib.suppress(ValueError):
            found = json.loads(explanation)
            if isinstance(found, dict) and isinstance(found.get("message"), str):
                explanation = found["message"]
        kind = NotFound if answer.status == 404 else APIError
        return kind(answer.status, answer.response.reason, explanation, answer.what)

    def request_json(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                     json_body: Any = None, timeout: float | None = None, versioned: bool = True) -> Any:
        """One request whose answer is JSON (None for an empty one)."""
        with self.open(method, path, params, json_body=json_body, timeout=timeout, versioned=versioned) as answer:
            data = answer.read()
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise BrokenAnswer(f"{method} {path}: the engine's answer is not JSON") from None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request_json("GET", path, params)

    def post(self, path: str, params: Mapping[str, Any] | None = None, *, json_body: Any = None,
             timeout: float | None = None) -> Any:
        return self.request_json("POST", path, params, json_body=json_body, timeout=timeout)

    def delete(self, path: str, params: Mapping[str, Any] | None = None) -> None:
        self.request_json("DELETE", path, params)

    # -- the calls dockext makes more than once -----------------------------------------------------------------
    def ping(self) -> None:
        with self.open("GET", "/_ping", versioned=False) as answer:
            answer.read()

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return dict(self.get(f"/images/{name_in_path(ref)}/json"))

    def remove_image(self, ref: str, *, noprune: bool = False) -> None:
        self.delete(f"/images/{name_in_path(ref)}", {"noprune": noprune})

    def containers(self, *, all: bool = False, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.get("/containers/json", {"all": all, "filters": filters}) or [])

    def remove_container(self, container: str) -> None:
        """Remove a container, running or not (``docker rm -f``)."""
        self.delete(f"/containers/{name_in_path(container)}", {"force": True})

    def logs(self, container: str, tail: int | str = "all") -> bytes:
        """A stopped or running container's output so far (stdout and stderr, in the order they came)."""
        with self.open("GET", f"/containers/{name_in_path(container)}/logs",
                       {"stdout": True, "stderr": True, "tail": tail}) as answer:
            return demux(answer.read())


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the engine meanwhile (or has bytes nobody asked for): an idle
    HTTP/1.1 connection has nothing to read until a request is sent (as urllib3 checks before reusing one)."""
    if conn.sock is None:
        return False  # made again on the next request
    poll = select.poll()
    poll.register(conn.sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


def registry_auth(auth: Mapping[str, str]) -> str:
    """The ``X-Registry-Auth`` header of a login (``{}``: anonymous), as the Docker CLI encodes it."""
    return base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()


def name_in_path(name: str) -> str:
    """A name in a path, as the docker SDK writes it (``repo@sha256:...`` is ``repo%40sha256:...``)."""
    return urllib.parse.quote(name, safe="/:")
