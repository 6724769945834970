"""Host file-system listing for the dashboard's own open dialog (never reachable from extension origins).

``ddClient.desktopUI.dialog.showOpenDialog`` is answered by the dashboard (``static/dashboard/dialog.js``): the
user browses the host here and the extension only ever receives the paths the user picked. These routes are
mounted in the dashboard app, behind its auth gate (session cookie); extension origins have their own router
and never reach them. On top of the cookie, every call needs ``X-Dockext: 1`` and, when the browser sends one,
a dashboard ``Origin``: a page on another origin (an extension's ``*.localhost``, which is same-site) cannot
make a browser send that header without a CORS preflight, which these routes never grant.

* ``GET /api/fs/home``: ``{"path": <the server user's home directory>}``
* ``GET /api/fs/list?path=<absolute path>``:
  ``{"path", "parent", "entries": [{"name", "type", "size", "mtime", "hidden"}], "truncated"}``

``path`` is normalised lexically (``..`` and ``//`` folded) but not resolved: a symlinked directory keeps the
name the user opened it by. ``parent`` is ``null`` at ``/``. ``type`` is ``"dir"``, ``"file"`` or ``"other"``
for what a symlink points to (a dangling link is ``"other"``); ``size`` is the byte size of files, else
``null``; ``hidden`` is true for names starting with a dot. Entries come directories first, then by name
(case-insensitive); at most :data:`MAX_ENTRIES` are returned (``truncated`` says when some were left out).

Nothing is ever read, written or executed: the server only lists directories and stats their entries.
Errors use the API's one body, ``{"error": {"type", "message"}}``: ``BadRequest`` (400: relative path, NUL),
``NotFound`` (404), ``NotADirectory`` (400), ``PermissionDenied`` (403), ``FileSystemError`` (500).
"""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
import stat
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .security import error_response, harden
from .state import HostState

__all__ = ["MAX_ENTRIES", "FsError", "home_directory", "list_directory", "routes"]

#: More entries than a person can browse; the rest is left out (``"truncated": true``).
MAX_ENTRIES = 20_000


class FsError(Exception):
    """A listing that cannot be made, with the HTTP status and error type the API answers."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_


def home_directory() -> str:
    home = os.path.expanduser("~")
    return home if os.path.isabs(home) else "/"


def normalise(path: str) -> str:
    if not path or "\0" in path:
        raise FsError(400, "BadRequest", "path must be an absolute path without NUL characters")
    if not path.startswith("/"):
        raise FsError(400, "BadRequest", f"path must be absolute: {path!r}")
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm  # POSIX keeps a leading "//"; we do not


def _os_error(path: str, exc: OSError) -> FsError:
    if exc.errno == errno.ENOENT:
        return FsError(404, "NotFound", f"No such directory: {path}")
    if exc.errno == errno.ENOTDIR:
        return FsError(400, "NotADirectory", f"Not a directory: {path}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FsError(403, "PermissionDenied", f"Permission denied: {path}")
    if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # the path asked for, not the server, is at fault
        return FsError(400, "BadRequest", f"Cannot list {path}: {exc.strerror or exc}")
    return FsError(500, "FileSystemError", f"Cannot list {path}: {exc.strerror or exc}")


def _entry(entry: os.DirEntry[str]) -> dict[str, Any]:
    try:
        st = entry.stat(follow_symlinks=True)  # a symlink is shown as what it points to
    except OSError:
        st = None  # dangling link, or a target we may not stat
    if st is None:
        kind = "other"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    return {
        "name": entry.name,
        "type": kind,
        "size": st.st_size if st is not None and kind == "file" else None,
        "mtime": int(st.st_mtime) if st is not None else None,
        "hidden": entry.name.startswith("."),
    }


def list_directory(path: str, *, limit: int = MAX_ENTRIES) -> dict[str, Any]:
    """The listing of directory ``path`` (absolute); raises :class:`FsError`."""
    path = normalise(path)
    entries: list[dict[str, Any]] = []
    truncated = False
    unnamed = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                if len(entries) >= limit:
                    truncated = True
                    break
                if not _utf8(entry.name):  # bytes that are not UTF-8 (a Latin-1 archive): no JSON can carry it,
                    unnamed += 1  # nor could an extension be given its path; one such name must not hide the rest
                    continue
                entries.append(_entry(entry))
    except OSError as exc:
        raise _os_error(path, exc) from exc
    entries.sort(key=lambda e: (e["type"] != "dir", e["name"].casefold(), e["name"]))
    parent = None if path == "/" else posixpath.dirname(path)
    return {"path": path, "parent": parent, "entries": entries, "truncated": truncated, "unnamed": unnamed}


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # os.scandir gives such bytes as lone surrogates
        return False
    return True


def routes(state: HostState) -> list[BaseRoute]:
    def allowed(request: Request) -> Response | None:
        # GETs pass the auth gate's CSRF check; these answers are private, so require what only the
        # dashboard's own scripts send (see the module docstring).
        origin = request.headers.get("origin")
        if request.headers.get("x-dockext") != "1" or (origin is not None and origin not in state.dashboard_origins()):
            return harden(error_response(status=403, type_="Forbidden", message="only the dashboard may browse files"))
        return None

    def answer(body: dict[str, Any]) -> Response:
        response = JSONResponse(body)
        response.headers["Cache-Control"] = "no-store"
        return harden(response)

    async def home(request: Request) -> Response:
        refused = allowed(request)
        if refused is not None:
            return refused
        return answer({"path": home_directory()})

    async def listing(request: Request) -> Response:
        refused = allowed(request)
        if refused is not None:
            return refused
        try:
            body = await asyncio.to_thread(list_directory, request.query_params.get("path", ""))
        except FsError as exc:
            return harden(error_response(status=exc.status, type_=exc.type, message=str(exc)))
        return answer(body)

    return [
        Route("/api/fs/home", home, methods=["GET"]),
        Route("/api/fs/list", listing, methods=["GET"]),
    ]

