"""The dashboard's Marketplace: the catalog of the configured sources, and install / update / remove jobs.

* ``GET /api/marketplace[?refresh=1]``: ``{"sources": [{"label", "kind"}], "onlyListed", "extensions": [...], "errors":
  [{"source", "message"}]}``. Each extension: ``image`` (repository, no tag), ``tag`` (the version offered),
  ``tags``, ``title``, ``vendor``, ``description``, ``detailedDescription`` and ``changelog`` (the labels' HTML
  reduced to plain text), ``categories``, ``screenshots`` (``[{"url", "alt"}]``, http(s) only),
  ``publisherUrl`` (http(s) or null), ``source``, ``file`` (a folder source's file it installs from, or null),
  ``installed`` (``{"key", "version", "image"}`` or null) and
  ``update`` (a greater version than the installed one is offered). The catalog is built by
  :func:`dockext.marketplace.browse` in a worker thread; what sources answered is reused for a minute unless
  ``refresh=1`` asks them again.
* ``POST /api/marketplace/sources`` ``{"registry": "REGISTRY[/NAMESPACE]"}`` (``201 {"source": {"label",
  "kind"}}``) and ``DELETE /api/marketplace/sources?label=...`` (204): ``dockext marketplace add|rm`` for registry
  sources (lists name a file on the server's host: the CLI adds those). The allow-list switch stays on the CLI.
* ``POST /api/marketplace/jobs`` ``{"action": "install" | "update" | "remove", "image": "repo:tag" | "repo",
  "deny"?: ["engine" | "system" | "network"], "source"?: label, "forget"?: bool}`` (``deny``: backend grants
  withheld from the first start, install only; ``source``: the folder source whose card asked, installed from
  its file; without it a folder is used only when the image cannot be pulled; ``forget``, remove only: ``dockext
  rm --forget``, dockext's files only, for a backend on an engine dockext no longer reaches). The Home page's
  Remove uses ``remove`` with the extension's ID, for any installed extension:
  ``202 {"job": job}``; ``GET /api/marketplace/jobs/{id}``: ``{"job": job}``, job = ``{"id", "action",
  "image", "state": "running" | "done" | "failed", "steps": [text], "error": {"type", "message", "hint"} |
  null}``. A job runs the same :class:`~dockext.installer.Installer` as the CLI (its lock, its rollback, the
  allow-list of ``dockext marketplace only-listed``) in a thread; its steps are the lines the CLI prints.
  Finished jobs are kept for 10 minutes.
* ``POST /api/marketplace/upload?name=FILE[&image=REF][&deny=engine,system]``, the body the file itself (a
  ``docker save`` file or an OCI archive, compressed or not) with its ``Content-Length``: ``dockext install
  FILE [--image REF] [--deny ...]`` for a file the browser has. The body is written as it comes (never held in
  memory, written off the event loop) to ``<home>/uploads/<pid>/<random>/FILE`` (0600, private directories;
  one per server, so servers on one home leave each other's alone). Refused before a byte is read, closing the
  connection: larger than :data:`MAX_UPLOAD` (413), no room on the disk beside the uploads under way (507), no
  length (411), or :data:`MAX_RUNNING` reached by jobs and uploads being received (429). ``202 {"job": job}``
  (``image`` is FILE) once the whole file is in; the job deletes it when it ends; the directory of a server
  that is gone is deleted when the next one starts. A client that goes away mid-upload, or a server that stops
  during one, leaves nothing.

Only the dashboard reaches these routes (its auth gate: session cookie, and ``X-Dockext`` with a dashboard
``Origin`` for the POST). An installed extension appears in the tabs through the usual change events.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import marketplace, model, offline, permissions
from ..engine import Engine, PullEvent
from ..errors import DockextError
from ..installer import Installer
from ..store import Record
from ..validate import Version
from .security import error_response, harden, read_json
from .state import HostState

__all__ = ["routes"]

ACTIONS = ("install", "update", "remove")
MAX_RUNNING = 4  # jobs at once (each holds a thread; the installer's lock runs them one after the other anyway)
KEEP_FINISHED = 600.0  # seconds a finished job can still be read
MAX_TEXT = 20_000  # characters of a description or changelog sent to the dashboard
MAX_UPLOAD = 16 << 30  # bytes of an uploaded extension file
UPLOAD_RESERVE = 256 << 20  # bytes left free on the disk after an upload
WRITE_BLOCK = 4 << 20  # bytes of an upload gathered before one write (in a thread: the event loop never waits)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass
class Job:
    action: str
    image: str
    deny: tuple[str, ...] = ()  # backend grants withheld from the first start (install only)
    file: Path | None = None  # an uploaded file to install (``image`` is then its name)
    source: str | None = None  # the Marketplace folder source whose card asked (installed from its file)
    forget: bool = False  # remove: dockext's files only (`dockext rm --forget`)
    pick: str | None = None  # the image to install from ``file`` (``--image``)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = "running"
    steps: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- the Installer's Reporter ------------------------------------------------------------------------
    def step(self, message: str) -> None:
        with self._lock:
            self.steps.append(message)

    def pull(self, event: PullEvent) -> None:
        detail = event.get("progressDetail") or {}
        if not detail.get("total"):
            return
        prefix = f"{event.get('status', 'Pulling')} {event.get('id', '')}:"
        line = f"{prefix} {detail.get('current', 0)} of {detail['total']} bytes"
        with self._lock:  # one line per layer, updated in place
            if self.steps and self.steps[-1].startswith(prefix):
                self.steps[-1] = line
            else:
                self.steps.append(line)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.id, "action": self.action, "image": self.image, "state": self.state,
                    "steps": list(self.steps), "error": self.error}


class _Jobs:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        now = time.time()
        for key in [k for k, j in self.jobs.items() if j.finished and now - j.finished > KEEP_FINISHED]:
            del self.jobs[key]
        self.jobs[job.id] = job


def routes(state: HostState) -> list[BaseRoute]:
    jobs = _Jobs()
    # jobs have threads of their own: catalog reads (the default executor) never keep one from starting
    workers = ThreadPoolExecutor(MAX_RUNNING, thread_name_prefix="dockext-job")

    async def stop_workers() -> None:
        workers.shutdown(wait=False, cancel_futures=True)

    state.close_with(stop_workers)

    async def catalog(request: Request) -> Response:
        try:
            settings = marketplace.load(state.layout)
        except DockextError as exc:
            return harden(error_response(exc))
        if request.query_params.get("refresh") == "1":  # the Refresh button: ask the sources again
            marketplace.clear_cache()
        found = await asyncio.to_thread(marketplace.browse, settings, insecure=state.engine.insecure_registries)
        installed = {r.id: r for r in state.store.records()}
        return harden(JSONResponse({
            "sources": [{"label": s.label, "kind": s.kind} for s in settings.sources],
            "onlyListed": settings.only_listed,
            "extensions": [_entry_json(e, installed.get(e.image)) for e in found.entries],
            "errors": [{"source": source, "message": message} for source, message in found.errors],
        }))

    async def start(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        action = body.get("action") if isinstance(body, dict) else None
        image = body.get("image") if isinstance(body, dict) else None
        deny = body.get("deny", []) if isinstance(body, dict) else None
        source = body.get("source") if isinstance(body, dict) else None
        forget = body.get("forget", False) if isinstance(body, dict) else None
        if (action not in ACTIONS or not isinstance(image, str) or not image or not isinstance(deny, list)
                or any(d not in permissions.BACKEND_NAMES for d in deny) or (deny and action != "install")
                or not (source is None or (isinstance(source, str) and action != "remove"))
                or not isinstance(forget, bool) or (forget and action != "remove")):
            return harden(error_response(status=400, type_="BadRequest",
                                         message='expected {"action": "install" | "update" | "remove", "image", '
                                                 '"deny"?: ["engine" | "system" | "network"] (install only), '
                                                 '"source"?: a folder source (install, update), '
                                                 '"forget"?: true | false (remove only)}'))
        try:
            model.ImageRef.parse(image)
        except DockextError as exc:
            return harden(error_response(exc, status=400))
        if sum(1 for j in jobs.jobs.values() if j.finished is None) >= MAX_RUNNING:
            return harden(error_response(status=429, type_="Busy",
                                         message=f"{MAX_RUNNING} installs, updates or removals are running: wait"))
        job = Job(action, image, tuple(deny), source=source, forget=forget)
        jobs.add(job)
        asyncio.get_running_loop().run_in_executor(workers, _run, state, job)
        return harden(JSONResponse({"job": job.to_json()}, status_code=202))

    # uploads/<pid>/: each server its own, so that one starting on the same home touches no other's
    uploads = state.layout.root / "uploads" / str(os.getpid())
    receiving = _Receiving()
    with contextlib.suppress(OSError):
        sweep_uploads(uploads.parent)

    def refuse(status: int, type_: str, message: str) -> Response:
        """An answer before the body is read: the connection closes, so the client stops sending it."""
        response = harden(error_response(status=status, type_=type_, message=message))
        response.headers["Connection"] = "close"
        return response

    async def upload(request: Request) -> Response:
        """``POST ?name=FILE[&image=REF][&deny=...]`` with the file as the body: ``dockext install FILE``."""
        query = request.query_params
        name = upload_name(query.get("name", ""))
        pick = query.get("image") or None
        deny = [d for d in query.get("deny", "").split(",") if d]
        if any(d not in permissions.BACKEND_NAMES for d in deny):
            return refuse(400, "BadRequest", "deny: one or more of engine, system, network")
        if pick is not None:
            try:
                model.ImageRef.parse(pick)
            except DockextError as exc:
                return refuse(400, exc.type, exc.message)
        try:
            length = int(request.headers["content-length"])
        except (KeyError, ValueError):
            return refuse(411, "LengthRequired", "send the file with its Content-Length")
        if length > MAX_UPLOAD:
            return refuse(413, "TooLarge", (
                f"{name} is {length / 2**30:.1f} GiB, more than the {MAX_UPLOAD >> 30} GiB an upload may be: "
                f"copy it to the server and run `dockext install ./{name}` there"))
        # uploads being received count as jobs, and their sizes as taken, from now until their job ends
        if sum(1 for j in jobs.jobs.values() if j.finished is None) + receiving.count >= MAX_RUNNING:
            return refuse(429, "Busy", f"{MAX_RUNNING} installs, updates or removals are running: wait")
        try:
            uploads.parent.mkdir(mode=0o700, exist_ok=True)
            uploads.mkdir(mode=0o700, exist_ok=True)
            free = shutil.disk_usage(uploads).free - receiving.bytes
            if length + UPLOAD_RESERVE > free:
                return refuse(507, "InsufficientStorage",
                              f"no room for {name} ({length / 1e6:.1f} MB) on the server: {max(free, 0) / 1e6:.0f} "
                              "MB free, with the uploads under way")
            folder = uploads / secrets.token_hex(8)
            folder.mkdir(mode=0o700)
        except OSError as exc:
            return refuse(500, "StorageError", f"cannot keep uploads in {uploads}: {exc.strerror or exc}")
        path = folder / name
        receiving.count += 1
        receiving.bytes += length
        handed_off = False
        try:
            written = await _receive(request, path, length)
            if written != length:
                return harden(error_response(status=400, type_="BadRequest",
                                             message=f"{name}: got {written} bytes, Content-Length said {length}"))
            job = Job("install", name, tuple(deny), file=path, pick=pick)
            jobs.add(job)
            future = asyncio.get_running_loop().run_in_executor(workers, _run, state, job)
            handed_off = True

            def done(f: asyncio.Future[None]) -> None:  # on the loop: the job's bytes are free again
                receiving.bytes -= length
                if f.cancelled():  # queued when the server stopped: it never ran
                    shutil.rmtree(folder, ignore_errors=True)

            future.add_done_callback(done)
            return harden(JSONResponse({"job": job.to_json()}, status_code=202))
        except ClientDisconnect:
            return harden(error_response(status=400, type_="BadRequest", message="the upload was cut off"))
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            return harden(error_response(status=507 if full else 500,
                                         type_="InsufficientStorage" if full else "StorageError",
                                         message=f"cannot write {name} on the server: {exc.strerror or exc}"))
        finally:  # also when the server stops under it (the task is cancelled)
            receiving.count -= 1
            if not handed_off:
                receiving.bytes -= length
                shutil.rmtree(folder, ignore_errors=True)

    async def status(request: Request) -> Response:
        job = jobs.jobs.get(request.path_params["id"])
        if job is None:
            return harden(error_response(status=404, type_="NotFound", message="no such job"))
        return harden(JSONResponse({"job": job.to_json()}))

    async def add_source(request: Request) -> Response:
        """``POST {"registry": "REGISTRY[/NAMESPACE]"}``: what ``dockext marketplace add`` does."""
        try:
            body = await read_json(request)
        except ValueError:
            body = None
        spec = body.get("registry") if isinstance(body, dict) else None
        if not isinstance(spec, str) or not spec.strip() or len(spec) > 300:
            return harden(error_response(status=400, type_="BadRequest", message='expected {"registry": "HOST[/NS]"}'))
        try:
            source = await asyncio.to_thread(marketplace.add_registry, state.layout, spec)
        except DockextError as exc:
            return harden(error_response(exc))
        return harden(JSONResponse({"source": {"label": source.label, "kind": source.kind}}, status_code=201))

    async def remove_source(request: Request) -> Response:
        """``DELETE ?label=...``: what ``dockext marketplace rm`` does."""
        label = request.query_params.get("label", "")
        try:
            await asyncio.to_thread(marketplace.remove, state.layout, label)
        except DockextError as exc:
            return harden(error_response(exc))
        return harden(Response(status_code=204))

    return [
        Route("/api/marketplace/sources", add_source, methods=["POST"]),
        Route("/api/marketplace/sources", remove_source, methods=["DELETE"]),
        Route("/api/marketplace", catalog),
        Route("/api/marketplace/jobs", start, methods=["POST"]),
        Route("/api/marketplace/upload", upload, methods=["POST"]),
        Route("/api/marketplace/jobs/{id}", status),
    ]


def _run(state: HostState, job: Job) -> None:
    """In a worker thread: what `dockext install|update|rm` would do, reported into ``job``."""
    engine = Engine(state.engine.target)
    installer = Installer(state.layout, engine=engine, reporter=job)
    try:
        if job.file is not None:
            offline.install_tarball(installer, job.file, job.pick, job, deny=job.deny, label=job.image)
        elif job.action in ("install", "update"):  # a folder card's job comes with its source
            offline.by_name(installer, job.image, job, deny=job.deny, update=job.action == "update",
                            source=job.source)
        else:
            installer.remove(job.image, forget=job.forget)
        outcome, error = "done", None
    except DockextError as exc:
        outcome, error = "failed", {"type": exc.type, "message": exc.message, "hint": exc.hint}
    except Exception as exc:  # noqa: BLE001 - a bug must still end the job, with what happened
        outcome = "failed"
        error = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__, "hint": None}
    finally:
        engine.close()
        if job.file is not None:
            shutil.rmtree(job.file.parent, ignore_errors=True)
    with job._lock:
        job.state, job.error, job.finished = outcome, error, time.time()


@dataclass
class _Receiving:
    count: int = 0  # uploads whose body is being received
    bytes: int = 0  # their declared sizes, and those of uploaded files whose job has not ended


async def _receive(request: Request, path: Path, length: int) -> int:
    """Write the request body to a new file at ``path`` (0600), in blocks written off the event loop; the
    bytes received (more than ``length`` stops early)."""
    written = 0
    block: list[bytes] = []
    pending = 0
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        async for chunk in request.stream():
            written += len(chunk)
            if written > length:
                break
            block.append(chunk)
            pending += len(chunk)
            if pending >= WRITE_BLOCK:
                await asyncio.to_thread(f.writelines, block)
                block, pending = [], 0
        if block:
            await asyncio.to_thread(f.writelines, block)
    return written


def upload_name(raw: str) -> str:
    """A file name that is safe as one path component: the last part of what the browser sent, with only
    letters, digits and ``._+-`` kept (``ext.tar`` stays ``ext.tar``)."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", base)[-120:].lstrip(".")
    return name or "upload.tar"


def sweep_uploads(root: Path) -> None:
    """Delete what servers that are gone left in ``root`` (``uploads/``): the directory of each server whose
    process no longer runs, or that was this process's (a server of the same PID before it)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    os.kill(int(entry.name), 0)
                    continue  # that server still runs
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue  # a process of another user: not ours to judge
            shutil.rmtree(entry, ignore_errors=True)


def _entry_json(entry: marketplace.Entry, record: Record | None) -> dict[str, Any]:
    installed = None
    update = False
    if record is not None:
        installed = {"key": record.key, "version": record.version, "image": record.image}
        offered, have = Version.parse(entry.tag), Version.parse(record.version)
        # semver on both sides: a greater one; otherwise any other tag is worth offering
        update = offered.key > have.key if offered is not None and have is not None else record.version != entry.tag
    labels = entry.details  # URLs there are http(s) only
    return {
        "image": entry.image,
        "tag": entry.tag,
        "tags": list(entry.tags),
        "title": entry.title,
        "vendor": entry.vendor,
        "description": entry.description,
        "detailedDescription": html_to_text(labels.detailed_description or ""),
        "changelog": html_to_text(labels.changelog or ""),
        "categories": list(labels.categories),
        "screenshots": [{"url": s["url"], "alt": s.get("alt", "")[:200]} for s in labels.screenshots[:12]],
        "publisherUrl": labels.publisher_url,
        "source": entry.source,
        "file": Path(entry.file).name if entry.file else None,  # a folder source's file it installs from
        "installed": installed,
        "update": update,
    }


class _Text(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("• ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The text of label HTML (Marketplace descriptions and changelogs are HTML): tags dropped, blocks on lines."""
    parser = _Text()
    parser.feed(markup[: MAX_TEXT * 4])
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(line for line in lines if line)
    return text[:MAX_TEXT]
