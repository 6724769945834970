"""Engine API reads: the dashboard's Docker views, and ``docker.listContainers/listImages`` for extensions.

Dashboard routes (behind the dashboard's auth gate; see docs/design.md, "Docker views"):

* ``GET|PUT /api/settings``: dockext's settings (:mod:`dockext.settings`).
* ``GET /api/docker/containers[?all=1]``, ``/containers/{id}``, ``/containers/{id}/logs`` (SSE),
  ``/containers/{id}/stats`` (SSE), ``WS /containers/{id}/terminal``.
* ``GET /api/docker/images``, ``/images/{id}``, ``/volumes``, ``/volumes/{name}``.

Extension route: ``GET /i/<cap>/__dockext__/docker/{containers|images}?options=<JSON>`` answers the Engine's
own JSON of ``/containers/json`` / ``/images/json``, extension containers included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import settings
from ..engine import ONE_OFF_LABEL
from ..errors import DockextError
from .engine_http import (
    SHELL_SCRIPT,
    Demuxer,
    EngineHTTP,
    EngineReplied,
    ExecSession,
    LogLine,
    LogLines,
    stats_summary,
    ts_to_since,
)
from .security import error_response, harden, parse_json, read_json
from .state import HostState, Instance

__all__ = ["EXTENSION_LABEL", "InvalidOptions", "engine_for", "for_extension", "list_params", "routes"]

EXTENSION_LABEL = "com.docker.desktop.extension"
#: dockext's own short-lived containers (reading files out of an image, emptying a guest-services dir)
INTERNAL_LABELS = (ONE_OFF_LABEL,)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")  # container ids and names, volume names
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,511}$")
TAIL_RE = re.compile(r"^(all|\d{1,7})$")
MAX_TERMINAL_INPUT = 1 << 16
LOG_FLUSH_AFTER = 0.25  # seconds of quiet before an unfinished line (a prompt) is shown
PING_EVERY = 15.0

#: ``listContainers`` / ``listImages`` options and how each becomes an Engine API query parameter
OPTION_KINDS: dict[str, str] = {
    "all": "bool", "limit": "int", "size": "bool", "filters": "filters", "digests": "bool",
    "before": "str", "since": "str", "shared-size": "bool",
}
EXTENSION_LISTS = {"containers": "/containers/json", "images": "/images/json"}


class InvalidOptions(DockextError):
    http_status = 400


# -- the engine connection -------------------------------------------------------------------------------

def engine_for(state: HostState) -> EngineHTTP:
    """The one async engine client of this server (closed with the server's other clients)."""
    return state.engine_api()


def set_engine(state: HostState, engine: EngineHTTP) -> None:
    """Use ``engine`` for ``state`` (tests: an engine over a mock transport)."""
    state.set_engine_api(engine)


# -- extensions: listContainers / listImages -------------------------------------------------------------

def list_params(options: Any) -> dict[str, str]:
    """``listContainers(options)`` / ``listImages(options)`` as Engine API query parameters.

    Booleans become ``1``/``0``, ``limit`` an integer, ``filters`` a JSON string (given as one, or as an
    object). Unknown options and ``null`` values are ignored; a known option of the wrong type is refused.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidOptions("options must be a JSON object")
    out: dict[str, str] = {}
    for name, value in options.items():
        kind = OPTION_KINDS.get(name)
        if kind is None or value is None:
            continue
        if kind == "bool":
            if isinstance(value, bool | int) and not isinstance(value, float):
                out[name] = "1" if value else "0"
            elif isinstance(value, str) and value.lower() in ("1", "0", "true", "false"):
                out[name] = "1" if value.lower() in ("1", "true") else "0"
            else:
                raise InvalidOptions(f"option {name!r} must be a boolean")
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                out[name] = str(value)
            elif isinstance(value, float) and value.is_integer():
                out[name] = str(int(value))
            elif isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value):
                out[name] = value
            else:
                raise InvalidOptions(f"option {name!r} must be an integer")
        elif kind == "filters":
            if isinstance(value, str):
                out[name] = value
            elif isinstance(value, dict):
                out[name] = json.dumps(value, separators=(",", ":"))
            else:
                raise InvalidOptions("option 'filters' must be a JSON string or an object")
        elif isinstance(value, str | int) and not isinstance(value, bool):
            out[name] = str(value)
        else:
            raise InvalidOptions(f"option {name!r} must be a string")
    return out


async def for_extension(state: HostState, inst: Instance, request: Request, path: str) -> Response:
    engine_path = EXTENSION_LISTS.get(path)
    if engine_path is None:
        return error_response(status=404, type_="NotFound", message=f"unknown docker API path {path!r}")
    if request.method not in ("GET", "HEAD"):
        return error_response(status=405, type_="MethodNotAllowed", message="use GET")
    try:
        state.check_permission(inst.record, "docker")  # the user's grant (dockext permissions)
    except DockextError as exc:
        return error_response(exc)
    raw = request.query_params.get("options")
    try:
        options = parse_json(raw) if raw else None
    except ValueError:
        return error_response(status=400, type_="InvalidOptions", message="options must be JSON")
    try:
        params = list_params(options)
        response = await engine_for(state).request("GET", engine_path, params)
        if not response.content and "digests" in params and "Libpod-Api-Version" in response.headers:
            # Podman 4 answers `digests` with an empty body; its images carry RepoDigests without it
            del params["digests"]
            response = await engine_for(state).request("GET", engine_path, params)
    except DockextError as exc:
        return error_response(exc)
    out = Response(response.content, media_type="application/json")
    out.headers["Cache-Control"] = "no-store"
    return out


# -- the dashboard's routes ------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200) -> Response:
    response = JSONResponse(data, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return harden(response)


def _errors(fn: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except DockextError as exc:
            return harden(error_response(exc))

    return wrapped


def _name(value: str, what: str, pattern: re.Pattern[str] = NAME_RE) -> str:
    if not pattern.match(value) or ".." in value:
        raise _not_found(what, value)
    return quote(value, safe="/:@")


def _not_found(what: str, value: str) -> DockextError:
    return EngineReplied(404, f"No such {what}: {value}")


async def _one(engine: EngineHTTP, path: str, what: str, name: str) -> Any:
    """GET one object; the engine's 404 (worded differently for each kind) becomes "No such <what>: <name>"."""
    try:
        return await engine.get_json(path)
    except EngineReplied as exc:
        if exc.status == 404:
            raise _not_found(what, name) from None
        raise


def is_extension_container(container: dict[str, Any]) -> bool:
    labels = container.get("Labels") or {}
    return labels.get(EXTENSION_LABEL) == "true" or any(k in labels for k in INTERNAL_LABELS)


def _brief(container: dict[str, Any]) -> dict[str, Any]:
    return {k: container.get(k) for k in ("Id", "Names", "Image", "ImageID", "State", "Status", "Labels")}


def _sse(generator: AsyncIterator[str]) -> Response:
    async def encoded() -> AsyncIterator[bytes]:
        async for text in generator:
            yield text.encode()

    response = StreamingResponse(encoded(), media_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return harden(response)


def _event(name: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def routes(state: HostState) -> list[BaseRoute]:
    home = state.layout.root

    def engine() -> EngineHTTP:
        return engine_for(state)

    async def get_settings(request: Request) -> Response:
        return _json(settings.load(home).to_json())

    async def put_settings(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            return harden(error_response(status=400, type_="BadRequest", message="expected a JSON body"))
        if not isinstance(body, dict):
            return harden(error_response(status=400, type_="BadRequest", message="expected a JSON object"))
        return _json(settings.update(home, body).to_json())

    # -- containers ------------------------------------------------------------------------------------
    async def containers(request: Request) -> Response:
        all_ = request.query_params.get("all", "0") in ("1", "true")
        items = await engine().get_json("/containers/json", {"all": "1" if all_ else "0"})
        show = settings.load(home).show_extension_containers
        shown = [c for c in items if show or not is_extension_container(c)]
        return _json({"containers": shown, "hidden": len(items) - len(shown), "show_extension_containers": show})

    async def container(request: Request) -> Response:
        cid = _name(request.path_params["id"], "container")
        return _json(await _one(engine(), f"/containers/{cid}/json", "container", request.path_params["id"]))

    async def logs(request: Request) -> Response:
        raw_id = request.path_params["id"]
        cid = _name(raw_id, "container")
        info = await _one(engine(), f"/containers/{cid}/json", "container", raw_id)
        tty = bool((info.get("Config") or {}).get("Tty"))
        tail = request.query_params.get("tail", "1000")
        if not TAIL_RE.match(tail):
            return harden(error_response(status=400, type_="BadRequest", message="tail must be a number or all"))
        follow = request.query_params.get("follow", "1") not in ("0", "false")
        params = {"stdout": "1", "stderr": "1", "timestamps": "1", "follow": "1" if follow else "0", "tail": tail}
        resume = request.headers.get("last-event-id")
        since = ts_to_since(resume) if resume else None
        if since:  # the browser reconnected: go on after the last line it has
            params.update(since=since, tail="all")
        return _sse(_log_events(engine(), f"/containers/{cid}/logs", params, tty))

    async def stats(request: Request) -> Response:
        cid = _name(request.path_params["id"], "container")
        # a missing container is a 404, not an empty stream
        await _one(engine(), f"/containers/{cid}/json", "container", request.path_params["id"])
        return _sse(_stats_events(engine(), f"/containers/{cid}/stats"))

    async def terminal(ws: WebSocket) -> None:
        await _terminal(engine(), ws)

    # -- images ----------------------------------------------------------------------------------------
    async def images(request: Request) -> Response:
        items, all_containers = await asyncio.gather(
            engine().get_json("/images/json"), engine().get_json("/containers/json", {"all": "1"})
        )
        users: dict[str, int] = {}
        for c in all_containers:
            users[c.get("ImageID", "")] = users.get(c.get("ImageID", ""), 0) + 1
        for image in items:
            if image.get("Containers", -1) < 0:
                image["Containers"] = users.get(image.get("Id", ""), 0)
        return _json({"images": items})

    async def image(request: Request) -> Response:
        ref = _name(request.path_params["ref"], "image", IMAGE_RE)
        inspect, history, all_containers = await asyncio.gather(
            _one(engine(), f"/images/{ref}/json", "image", request.path_params["ref"]),
            _one(engine(), f"/images/{ref}/history", "image", request.path_params["ref"]),
            engine().get_json("/containers/json", {"all": "1"}),
        )
        used_by = [_brief(c) for c in all_containers if c.get("ImageID") == inspect.get("Id")]
        return _json({"image": inspect, "history": history, "containers": used_by})

    # -- volumes ---------------------------------------------------------------------------------------
    async def volumes(request: Request) -> Response:
        listed, all_containers = await asyncio.gather(
            engine().get_json("/volumes"), engine().get_json("/containers/json", {"all": "1"})
        )
        refs: dict[str, int] = {}
        for c in all_containers:
            for m in c.get("Mounts") or []:
                if m.get("Type") == "volume" and m.get("Name"):
                    refs[m["Name"]] = refs.get(m["Name"], 0) + 1
        items = (listed or {}).get("Volumes") or []
        for v in items:
            usage = v.get("UsageData") or {"Size": -1, "RefCount": -1}
            if usage.get("RefCount", -1) < 0:
                usage["RefCount"] = refs.get(v.get("Name", ""), 0)
            v["UsageData"] = usage
        return _json({"volumes": items})

    async def volume(request: Request) -> Response:
        raw_name = request.path_params["name"]
        name = _name(raw_name, "volume")
        inspect, users = await asyncio.gather(
            _one(engine(), f"/volumes/{name}", "volume", raw_name),
            engine().get_json("/containers/json", {"all": "1", "filters": json.dumps({"volume": [raw_name]})}),
        )
        return _json({"volume": inspect, "containers": [_brief(c) for c in users]})

    return [
        Route("/api/settings", _errors(get_settings), methods=["GET"]),
        Route("/api/settings", _errors(put_settings), methods=["PUT"]),
        Route("/api/docker/containers", _errors(containers), methods=["GET"]),
        Route("/api/docker/containers/{id}", _errors(container), methods=["GET"]),
        Route("/api/docker/containers/{id}/logs", _errors(logs), methods=["GET"]),
        Route("/api/docker/containers/{id}/stats", _errors(stats), methods=["GET"]),
        WebSocketRoute("/api/docker/containers/{id}/terminal", terminal),
        Route("/api/docker/images", _errors(images), methods=["GET"]),
        Route("/api/docker/images/{ref:path}", _errors(image), methods=["GET"]),
        Route("/api/docker/volumes", _errors(volumes), methods=["GET"]),
        Route("/api/docker/volumes/{name}", _errors(volume), methods=["GET"]),
    ]


# -- streams ---------------------------------------------------------------------------------------------

async def _log_events(engine: EngineHTTP, path: str, params: dict[str, str], tty: bool) -> AsyncIterator[str]:
    """SSE: ``event: logs`` with ``{"lines": [{"s": "stdout"|"stderr", "t": timestamp, "x": text, "p"?: true}]}``
    (``id:`` is the last timestamp, so a reconnecting browser resumes there), then ``event: end`` when the
    log ends (the container stopped, or ``follow=0``), or ``event: failed`` ``{"message"}``."""
    queue: asyncio.Queue[tuple[str, bytes | str]] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async with engine.stream(path, params) as response:
                async for chunk in response.aiter_bytes():
                    await queue.put(("data", chunk))
            await queue.put(("end", b""))
        except DockextError as exc:
            await queue.put(("failed", exc.message))
        except Exception as exc:  # noqa: BLE001 - the stream must end with an event, whatever happened
            await queue.put(("failed", f"reading the log failed: {exc or type(exc).__name__}"))

    task = asyncio.create_task(pump())
    demux = None if tty else Demuxer()
    lines = LogLines()
    last_ts: str | None = None

    def batch(chunks: list[bytes]) -> str | None:
        out: list[LogLine] = []
        for chunk in chunks:
            parts = demux.feed(chunk) if demux is not None else [(1, chunk)]
            for stream, payload in parts:
                out += lines.feed("stdout" if stream == 1 else "stderr", payload)
        return render(out)

    def render(out: list[LogLine]) -> str | None:
        nonlocal last_ts
        if not out:
            return None
        for line in out:
            last_ts = line.ts or last_ts
        return _event("logs", {"lines": [line.to_json() for line in out]}, last_ts)

    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), LOG_FLUSH_AFTER if lines.pending else PING_EVERY)
            except TimeoutError:
                text = render(lines.flush())
                yield text or ": ping\n\n"
                continue
            chunks: list[bytes] = []
            end: tuple[str, bytes | str] | None = None
            while True:  # everything already queued goes out as one event
                if kind == "data" and isinstance(item, bytes):
                    chunks.append(item)
                elif kind != "data":
                    end = (kind, item)
                    break
                try:
                    kind, item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
            text = batch(chunks)
            if text:
                yield text
            if end is None:
                continue
            text = render(lines.flush())
            if text:
                yield text
            if end[0] == "end":
                yield _event("end", {})
            else:
                yield _event("failed", {"message": str(end[1])})
            return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _stats_events(engine: EngineHTTP, path: str) -> AsyncIterator[str]:
    """SSE: ``event: stats`` with :func:`~dockext.server.engine_http.stats_summary` of each sample (about one a
    second), ``event: end`` when the stream ends (the container is not running), ``event: failed``."""
    yield "retry: 2000\n\n"
    try:
        async with engine.stream(path, {"stream": "1"}) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    sample = parse_json(line)
                except ValueError:
                    continue
                if isinstance(sample, dict):
                    yield _event("stats", stats_summary(sample))
        yield _event("end", {})
    except DockextError as exc:
        yield _event("failed", {"message": exc.message})
    except Exception as exc:  # noqa: BLE001 - the stream must end with an event, whatever happened
        yield _event("failed", {"message": f"reading the stats failed: {exc or type(exc).__name__}"})


def _int_param(ws: WebSocket, name: str, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(ws.query_params.get(name, default)), low), high)
    except ValueError:
        return default


async def _terminal(engine: EngineHTTP, ws: WebSocket) -> None:
    """``docker exec -it <id> sh`` over a WebSocket.

    Server → browser: binary frames of terminal output; text frames ``{"ready": true}``, ``{"exit": code}``,
    ``{"error": {"type", "message"}}``. Browser → server: binary frames are keyboard input; text frames are
    ``{"input": text}`` or ``{"resize": {"cols", "rows"}}``. Closing the socket ends the session's processes.
    """
    raw_id = ws.path_params["id"]
    cols = _int_param(ws, "cols", 80, 2, 1000)
    rows = _int_param(ws, "rows", 24, 2, 500)
    await ws.accept()
    try:
        cid = _name(raw_id, "container")
        session = await engine.open_exec(
            cid, ["sh", "-c", SHELL_SCRIPT], cols=cols, rows=rows, env=["TERM=xterm-256color"]
        )
    except DockextError as exc:
        with contextlib.suppress(Exception):
            await ws.send_json({"error": {"type": exc.type, "message": exc.message}})
            await ws.close(1000)
        return
    try:
        with contextlib.suppress(Exception):
            await ws.send_json({"ready": True})
        await _terminal_session(ws, session)
    finally:
        await session.close(cid)


async def _terminal_session(ws: WebSocket, session: ExecSession) -> None:
    async def output() -> None:
        while True:
            data = await session.read()
            if not data:
                return
            await ws.send_bytes(data)

    async def keyboard() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await session.write(data[:MAX_TERMINAL_INPUT])
                continue
            try:
                command = parse_json(message.get("text") or "null")
            except ValueError:
                continue
            if not isinstance(command, dict):
                continue
            if isinstance(command.get("input"), str):
                await session.write(command["input"][:MAX_TERMINAL_INPUT].encode())
            resize = command.get("resize")
            if isinstance(resize, dict):
                try:
                    c = min(max(int(resize.get("cols", 0)), 2), 1000)
                    r = min(max(int(resize.get("rows", 0)), 2), 500)
                except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity), JSON allows it
                    continue
                await session.resize(c, r)

    out_task = asyncio.create_task(output())
    in_task = asyncio.create_task(keyboard())
    done, pending = await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in (out_task, in_task):
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError, DockextError):
            await task
    if out_task in done:  # the shell ended: say how, then close
        code = await session.exit_code()
        with contextlib.suppress(Exception):
            await ws.send_json({"exit": code})
            await ws.close(1000)
