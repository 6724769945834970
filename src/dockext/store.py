"""Installed-extension records on disk: one ``extension.json`` per extension, written atomically and last.

The presence of ``extensions/<key>/extension.json`` is what "installed" means. A directory without it is an
install that never finished (or a removal that was interrupted) and is cleaned up by the installer.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import Busy, NotInstalled, StateError
from .paths import Layout

__all__ = [
    "PREV_PREFIX", "RECORD_FILE", "SCHEMA_VERSION", "Record", "Store", "UiInfo", "VmInfo", "atomic_write",
    "durable_rename", "fsync_dir", "read_settings", "settings_part", "sync_tree",
]

#: raised with every change of the record's fields (tests/unit/test_store.py pins them): a dockext reads records
#: up to its own version and refuses newer ones, since it cannot know what their fields mean (2: VmInfo's
#: ``engine``, ``engine_at`` and ``policy``)
SCHEMA_VERSION = 2
RECORD_FILE = "extension.json"
PREV_PREFIX = ".prev-"  # extensions/.prev-<key>: an installed version moved aside by an update (installer.py)


@dataclass(frozen=True)
class UiInfo:
    title: str
    src: str


@dataclass(frozen=True)
class VmInfo:
    project: str
    first_service: str
    container: str  # container name of the first service: where vm.cli.exec runs
    socket: str | None
    gs_key: str
    sockperm: bool = False
    #: container name of the relay a remote engine's backend socket is reached through; None: the socket is
    #: in ``gs/<gs_key>/`` on this host
    relay: str | None = None
    #: backend grants denied when it was last (re)created (``permissions.BACKEND_NAMES``): taken out of its compose
    withheld: tuple[str, ...] = ()
    #: the ID of the engine the backend was created on (``GET /info``: the same through any address that
    #: reaches it), and that engine as dockext reached it then (for messages); None in older records
    engine: str | None = None
    engine_at: str | None = None
    #: the version of dockext's backend policy (``backendpolicy.POLICY``) its compose file was restricted by;
    #: 0 in older records: a denied grant may not cover all it covers now
    policy: int = 0

    def elsewhere(self, here: str, here_at: str) -> bool:
        """Whether the backend was made on another engine than ``here`` (the ID of the engine reached now, at
        ``here_at``: ``DockerHost.describe()``). Unknown (no ID recorded, or none now) counts as not.

        A Podman service's ID is ``podman:<host name>:<storage root>`` (Podman answers a random ``ID`` at every
        call): the same engine when the storage root is the same and the host name or the address is (a machine
        renamed keeps its storage). A record an older dockext wrote on Podman holds one of those random IDs, which
        cannot be told from a Docker engine's (a UUID since Docker 23): it is elsewhere, as a Docker engine's
        record found at the same address would be (`rm --forget`, then install again, adopts the backend)."""
        if not self.engine or not here or self.engine == here:
            return False
        if not (here.startswith("podman:") and self.engine.startswith("podman:")):
            return True
        _, name, root = here.split(":", 2)
        _, was_name, was_root = self.engine.split(":", 2)
        return root != was_root or (name != was_name and _address(self.engine_at) != _address(here_at))

    def elsewhere_message(self, title: str, here_at: str) -> str:
        """Why the backend of the extension ``title`` is not on the engine reached now (at ``here_at``)."""
        if self.engine_at and _address(self.engine_at) == _address(here_at):
            return (f"the backend of {title} was made on the engine that was at {_address(here_at)} then (ID "
                    f"{self.engine}), and another answers there now: the engine was reinstalled or replaced")
        return f"the backend of {title} is on another engine ({self.engine_at or self.engine}), not the one " \
               f"dockext reaches now ({here_at})"


def _address(described: str | None) -> str:
    """The engine's address in ``DockerHost.describe()``'s words, without the notes: ``unix:///var/run/x.sock``."""
    return (described or "").split(" (", 1)[0]


@dataclass(frozen=True)
class Record:
    key: str
    id: str  # image reference without tag: the ID column of `ls`
    image: str  # the reference installed, with tag (what `extension.image` returns)
    image_id: str
    version: str
    title: str
    provider: str
    origin_slug: str
    installed_at: float
    ui: UiInfo | None = None
    vm: VmInfo | None = None
    icon: str | None = None  # file name inside the extension dir
    host_binaries: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["host_binaries"] = list(self.host_binaries)
        return {"schema": SCHEMA_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """The record ``data`` holds; TypeError, ValueError or KeyError for one of another shape (the readers say
        which file), StateError for a newer schema."""
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__} where an object belongs")
        schema = data.get("schema")
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise StateError(
                f"extension record has schema {schema!r}, this dockext understands up to {SCHEMA_VERSION}",
                hint="It was probably written by a newer dockext: upgrade dockext.",
            )
        body = {k: v for k, v in data.items() if k != "schema"}
        ui = body.pop("ui", None)
        vm = body.pop("vm", None)
        body["host_binaries"] = tuple(body.get("host_binaries", ()))
        if vm:
            vm = {**vm, "withheld": tuple(vm.get("withheld") or ())}
        return cls(**body, ui=UiInfo(**ui) if ui else None, vm=VmInfo(**vm) if vm else None)


def read_settings(path: Path, schema: int, what: str, delete_hint: str) -> dict[str, Any] | None:
    """A versioned JSON settings file (``{"schema": N, ...}``): None if missing, else its object.

    An unreadable file, or one from a newer dockext, is a :class:`StateError` naming ``what`` it is: never read
    as "no settings" (for the allow-list or the grants that would lift a restriction)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{what} {path} are unreadable: {exc}",
                         hint=f"Fix or delete the file ({delete_hint}).") from None
    found = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(found, int) or found > schema:
        raise StateError(
            f"{what} {path} have schema {found!r}; this dockext understands up to {schema}",
            hint="It was probably written by a newer dockext: upgrade dockext, or delete the file.",
        )
    return dict(data)


def settings_part(data: dict[str, Any], name: str, kind: type[dict[Any, Any]] | type[list[Any]], path: Path,
                  what: str, delete_hint: str) -> Any:
    """``data[name]`` of a settings file :func:`read_settings` read: ``kind()`` when absent or null, a
    :class:`StateError` naming the file when it is another JSON type (a hand edit), never a crash further on."""
    value = data.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise StateError(f"{what} {path} are invalid: {name!r} is not a JSON {'object' if kind is dict else 'list'}",
                         hint=f"Fix or delete the file ({delete_hint}).")
    return value


def file_stamp(path: Path) -> tuple[int, int]:
    """Changes whenever ``path`` is written by :func:`atomic_write`, which puts a new inode in place each time (a
    write in the same clock tick as the last one keeps the mtime, never the inode number, since both coexist);
    ``(0, 0)`` while it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a torn file.

    temp file in the same directory → fsync → rename → fsync of the directory (rename alone is atomic but
    not durable).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (made if missing, 0600): for a read-modify-write of one small
    state file that several processes on a home may make at once (two servers, a server and the CLI), which
    :func:`atomic_write` alone would let one of them undo. Blocking: the holders keep it for one write. The
    kernel drops it when its holder dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync(2) of a directory: what makes the renames and creations in it durable."""
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def durable_rename(src: Path, dst: Path) -> None:
    """``os.rename``, then an fsync of the directories involved: a rename is atomic at once, but durable only
    once its directory is synced (else a power cut may undo an install dockext has said is done)."""
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def sync_tree(path: Path) -> None:
    """Make durable every file written under the directory ``path``, before a rename publishes it: one
    syncfs(2) of its file system (a staged extension is many small files: an fsync each would cost more), or
    sync(2) where there is no syncfs."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = getattr(_libc(), "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(fd) != 0:
            code = ctypes.get_errno()
            if code != errno.ENOSYS:  # an I/O error: the files may not be on disk, so nothing may say they are
                raise OSError(code, os.strerror(code), str(path))
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class Store:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    # -- records ---------------------------------------------------------------------------------------
    def record_path(self, key: str) -> Path:
        return self.layout.extension_dir(key) / RECORD_FILE

    def write(self, record: Record) -> None:
        data = json.dumps(record.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        atomic_write(self.record_path(record.key), data)

    def read(self, key: str) -> Record:
        path = self.record_path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotInstalled(f"no extension {key!r} is installed") from None
        try:
            return Record.from_json(json.loads(raw))
        except StateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"the record {path} is unreadable: {exc}",
                             hint=f"`dockext rm {key}` removes the extension all the same.") from exc

    def records(self) -> list[Record]:
        """Every installed extension, sorted by title. Unreadable records are skipped."""
        out: list[Record] = []
        for key in self.keys():
            try:
                out.append(self.read(key))
            except (NotInstalled, StateError):
                continue
        return sorted(out, key=lambda r: (r.title.lower(), r.key))

    def keys(self) -> list[str]:
        try:
            entries = sorted(os.listdir(self.layout.extensions))
        except FileNotFoundError:
            return []
        return [e for e in entries if not e.startswith(".") and (self.layout.extensions / e / RECORD_FILE).is_file()]

    def updating(self) -> list[Record]:
        """Extensions in the middle of an update: their old version moved aside (``.prev-<key>``), the new one not
        committed yet. Not installed at this moment, but about to be again (the old or the new version)."""
        try:
            entries = sorted(os.listdir(self.layout.extensions))
        except FileNotFoundError:
            return []
        out: list[Record] = []
        for entry in entries:
            key = entry[len(PREV_PREFIX):]
            if not entry.startswith(PREV_PREFIX) or not key or (self.layout.extensions / key / RECORD_FILE).exists():
                continue
            try:
                out.append(Record.from_json(json.loads((self.layout.extensions / entry / RECORD_FILE).read_bytes())))
            except (OSError, ValueError, TypeError, KeyError, AttributeError, StateError):
                continue
        return out

    def incomplete(self) -> list[str]:
        """Extension dirs without a record: interrupted installs or removals."""
        try:
            entries = sorted(os.listdir(self.layout.extensions))
        except FileNotFoundError:
            return []
        return [
            e for e in entries
            if not e.startswith(".") and (self.layout.extensions / e).is_dir()
            and not (self.layout.extensions / e / RECORD_FILE).exists()
        ]

    def signature(self) -> tuple[tuple[str, int], ...]:
        """Cheap fingerprint of the installed set; changes whenever a record is written or removed."""
        sig: list[tuple[str, int]] = []
        for key in self.keys():
            try:
                sig.append((key, self.record_path(key).stat().st_mtime_ns))
            except FileNotFoundError:
                continue
        return tuple(sig)

    # -- locking ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = 120.0, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Exclusive lock for mutations. The kernel drops it if the holder dies, even with kill -9. ``waiting`` is
        called once if another process holds it (to say so: the wait may last minutes)."""
        self.layout.ensure()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.layout.lock_file, flags, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if waiting is not None:
                        waiting()
                        waiting = None
                    if time.monotonic() >= deadline:
                        raise Busy(
                            "another dockext operation is in progress",
                            hint="Wait for it to finish, then try again.",
                        ) from None
                    time.sleep(0.1)
            yield
        finally:
            os.close(fd)
