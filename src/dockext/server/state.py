"""In-memory state of a running server: installed extensions by origin, and live UI instances."""

from __future__ import annotations

import asyncio
import contextlib
import platform
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from .. import devmode, permissions, sockperm
from ..devmode import DevSettings
from ..engine import Engine
from ..errors import DockextError, ExecRefused, OtherEngine
from ..execution import ProcessGroup
from ..paths import Layout
from ..store import Record, Store, file_stamp
from . import security
from .backend_http import BackendPool
from .engine_http import EngineHTTP, EngineReplied
from .relay import open_relayed
from .sessions import Sessions
from .stalesockets import StaleSockets

__all__ = ["DASHBOARD_NAME", "HostState", "Instance", "host_info"]

#: The dashboard's host name; each extension's UI is served on ``<slug>.dockext.localhost``. One registrable
#: domain for all, so that extension frames are *same-site* with the dashboard (each still its own origin):
#: browsers that block third-party storage (Chromium here) deny a cross-site frame its localStorage and
#: cookies, and ``localhost`` has no registrable domain, so ``<slug>.localhost`` under ``localhost`` is
#: cross-site. Browsers resolve every ``*.localhost`` name to the loopback address themselves. ``dockext serve
#: --domain`` replaces it (a name the user's DNS resolves, with a wildcard, for browsers on other machines).
DASHBOARD_NAME = "dockext.localhost"
#: other names the dashboard answers on; a browser opening a page on one is sent to DASHBOARD_NAME
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: seconds between two questions for its ID to an engine that did not answer (HostState.watch)
ENGINE_ID_RETRY = 5.0
#: seconds between two looks at the states of the backends' containers (HostState.watch_backends)
BACKEND_POLL = 3.0


@dataclass
class Instance:
    """One opened extension UI (one iframe life). Its ``cap`` is the capability in its URLs."""

    id: str
    cap: str
    record: Record
    ext_dir: Path
    dashboard_origin: str
    theme: str | None = None  # "light"/"dark" when the dashboard forces one; None follows the browser
    dev: DevSettings = field(default_factory=DevSettings)  # `dockext dev` settings when the tab was opened
    created: float = field(default_factory=time.time)
    processes: ProcessGroup = field(default_factory=ProcessGroup)


def host_info() -> dict[str, str]:
    """``ddClient.host``: the values Node's ``os`` module would give."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i686": "ia32"}.get(
        machine, machine
    )
    plat = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), platform.system())
    return {"platform": plat, "arch": arch, "hostname": socket.gethostname()}


class HostState:
    def __init__(self, layout: Layout, *, port: int, token: str, engine: Engine | None = None,
                 domain: str = DASHBOARD_NAME, tls: bool = False, public_port: int | None = None) -> None:
        self.layout = layout
        self.store = Store(layout)
        self.port = port
        self.token = token
        self.engine = engine or Engine()
        self.sessions = Sessions.for_home(layout.root)  # signed cookies: a restart keeps browsers logged in
        self.boot = secrets.token_hex(8)  # changes at each start: the dashboard reopens its tab after a restart
        # browsers reach this server over TLS (dockext serve --tls-cert, or a proxy in front: --public-url): every
        # origin is https, the cookie Secure
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.domain = domain
        #: the dashboard pages' Content-Security-Policy: frames only from extension origins
        self.dashboard_csp = security.dashboard_csp(f"{self.scheme}://*.{domain}:*")
        # Behind a proxy (dockext serve --public-url), browsers reach the names on the proxy's port, and the
        # loopback names (on this server's own port) only lead to a page that says where to go
        # (app.HostRouter): redirecting there would loop through a proxy that does not pass Host on.
        self.behind_proxy = public_port is not None
        shown = public_port or port
        # browsers leave the scheme's default port out of Host and Origin (dockext serve --port 443 with TLS)
        self._default_port = f":{443 if tls else 80}"
        self._at = "" if f":{shown}" == self._default_port else f":{shown}"
        self.dashboard_host = self.at_port(domain)  # where browsers are sent
        self.loopback_hosts = frozenset(  # sent on to dashboard_host
            f"{name}:{port}" if self.behind_proxy else self.at_port(name) for name in LOOPBACK_NAMES)
        self.dashboard_hosts = {self.dashboard_host, *(() if self.behind_proxy else self.loopback_hosts)}
        self.by_slug: dict[str, Record] = {}
        self._policy: tuple[frozenset[str], list[tuple[bytes, bytes]]] | None = None  # extension_policy()
        self.updating: list[Record] = []  # old versions of extensions being updated (listed, not served)
        self._grants: dict[str, permissions.Grants] = {}
        self._grants_stamp: tuple[int, int] | None = None
        self._engine_id: str | None = None  # the engine's ID, asked once it answers: see check_engine
        self._engine_id_asked = 0.0  # when it was last asked without an answer (time.monotonic)
        self.generation = 0
        self._signature: tuple[object, ...] | None = None
        self.instances: dict[str, Instance] = {}  # by cap
        self.instance_ids: dict[str, Instance] = {}
        self._pools: dict[tuple[str, str], BackendPool] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._engine_api: EngineHTTP | None = None
        self._vm_containers: dict[str, tuple[int, str]] = {}  # key -> (generation, ID): see vm_container
        self._vm_lock = asyncio.Lock()
        self.stale_sockets = StaleSockets()
        self.every_watch: list[Callable[[], None]] = []  # also run by watch() each time (certificate renewals)
        self.changed = asyncio.Event()
        self.refresh()

    # -- installed extensions ------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the records if the installed set, the developer settings or the grants changed on disk (by this
        process or a CLI); the dashboard is told through ``changed``."""
        sig = (self.store.signature(), self._stamp(devmode.FILE), self._stamp(permissions.FILE))
        if sig == self._signature:
            return False
        self._signature = sig
        self.by_slug = {r.origin_slug: r for r in self.store.records()}
        self.updating = self.store.updating()
        live = {(r.vm.gs_key, r.vm.socket) for r in self.by_slug.values() if r.vm is not None and r.vm.socket}
        for key in [k for k in self._pools if k not in live]:  # removed (or updated) extensions
            self._pools.pop(key).close()
        for inst in list(self.instances.values()):
            current = self.by_slug.get(inst.record.origin_slug)
            if current is None or current.image_id != inst.record.image_id:
                self._forget(inst)
        self._announce()
        return True

    def _announce(self) -> None:
        """Tell every dashboard (``/api/events``) to read the extension list again."""
        self.generation += 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def watch_backends(self, interval: float = BACKEND_POLL) -> None:
        """Tell the dashboards when extension backends change state (a container stops or starts, the engine goes
        away or comes back): the states they show come with the extension list, which is otherwise read again only
        when the installed set changes. Its own task: an engine slow to answer holds nothing else up."""
        seen: object = None
        while True:
            now = await asyncio.to_thread(self._backend_signature)
            if seen is not None and now != seen:
                self._announce()
            seen = now
            await asyncio.sleep(interval)

    def _backend_signature(self) -> object:
        try:
            found = self.engine.backend_containers()
        except DockextError:
            return "unreachable"
        return frozenset((c.get("Id"), c.get("State")) for c in found)

    def records(self) -> list[Record]:
        return sorted(self.by_slug.values(), key=lambda r: (r.title.lower(), r.key))

    def at_port(self, name: str) -> str:
        """``name`` as a browser writes it in ``Host`` to reach this server: with the port, unless the default."""
        return name + self._at

    def normal_host(self, host: str) -> str:
        """A ``Host`` as :attr:`dashboard_hosts` keeps names: on the scheme's default port, without it (which some
        clients write anyway)."""
        return host[: -len(self._default_port)] if not self._at and host.endswith(self._default_port) else host

    def record(self, key: str) -> Record | None:
        return next((r for r in self.by_slug.values() if r.key == key), None)

    def extension_origin(self, record: Record) -> str:
        return f"{self.scheme}://{record.origin_slug}.{self.extension_suffix}"

    @property
    def extension_suffix(self) -> str:
        """``dockext.localhost:<port>`` (or the ``--domain``'s, without the port when it is the scheme's default):
        what follows ``<slug>.`` in an extension's host."""
        return self.dashboard_host

    @property
    def dashboard_url(self) -> str:
        return f"{self.scheme}://{self.dashboard_host}"

    def dashboard_origins(self) -> list[str]:
        return [f"{self.scheme}://{h}" for h in sorted(self.dashboard_hosts)]

    def extension_policy(self) -> list[tuple[bytes, bytes]]:
        """Set on every answer of an extension origin, replacing the backend's: only the dashboard may frame it."""
        hosts = frozenset(self.dashboard_hosts)
        if self._policy is None or self._policy[0] != hosts:
            # Chromium rejects IPv6 literals in frame-ancestors (and logs it on every page): leave them out
            frame_ancestors = " ".join(o for o in self.dashboard_origins() if "[" not in o)
            self._policy = (hosts, [
                (b"content-security-policy", f"frame-ancestors {frame_ancestors}".encode()),
                (b"cross-origin-resource-policy", b"same-origin"),
            ])
        return self._policy[1]

    async def watch(self, interval: float = 0.5) -> None:
        while True:
            if not self._engine_id and time.monotonic() - self._engine_id_asked >= ENGINE_ID_RETRY:
                # off the event loop, before any call needs it (check_engine), and again while it is unknown
                await asyncio.to_thread(self._ask_engine_id)
            await asyncio.sleep(interval)
            with contextlib.suppress(OSError, DockextError):
                self.refresh()
            for path in self.stale_sockets.sweep(self.local_backend_sockets()):
                print(f"dockext: removed {path}: nothing listened on it (its backend can listen again)", flush=True)
            for check in self.every_watch:
                check()

    def local_backend_sockets(self) -> list[Path]:
        """The backend sockets of installed extensions that are files here (not a remote engine's, and not one
        being updated, whose directory the update itself empties)."""
        updating = {r.key for r in self.updating}
        return [
            self.layout.guest_services / r.vm.gs_key / r.vm.socket
            for r in self.by_slug.values()
            if r.vm is not None and r.vm.socket and r.vm.relay is None and r.key not in updating
        ]

    # -- UI instances --------------------------------------------------------------------------------
    def open_instance(self, record: Record, dashboard_origin: str, theme: str | None = None) -> Instance:
        inst = Instance(
            theme=theme,
            dev=self.dev_settings().get(record.key, DevSettings()),
            id=secrets.token_hex(8),
            cap=secrets.token_urlsafe(24),
            record=record,
            ext_dir=self.layout.extension_dir(record.key),
            dashboard_origin=dashboard_origin,
        )
        self.instances[inst.cap] = inst
        self.instance_ids[inst.id] = inst
        return inst

    def check_permission(self, record: Record, name: str) -> None:
        """PermissionDenied unless the user lets ``record`` use ``name`` (``docker``, ``host``, ``web``)."""
        permissions.check(self._grants_of(record), name, record.title, record.id)

    def allows(self, record: Record, name: str) -> bool:
        """Whether the user lets ``record`` use ``name`` now (False while the grants cannot be read)."""
        try:
            return self._grants_of(record).allows(name)
        except DockextError:
            return False

    def _grants_of(self, record: Record) -> permissions.Grants:
        stamp = self._stamp(permissions.FILE)
        if stamp != self._grants_stamp:
            self._grants = permissions.load(self.layout)
            self._grants_stamp = stamp
        return self._grants.get(record.key, permissions.DEFAULT)

    def check_engine(self, record: Record) -> None:
        """OtherEngine when the backend of ``record`` was made on another engine than this server's: a
        ``vm.cli.exec`` or ``vm.service`` call would reach nothing, or a container of that name on this one."""
        vm = record.vm
        if vm is None or not vm.engine:
            return
        here = self._engine_id if self._engine_id is not None else self._ask_engine_id()
        if not here:  # the engine cannot say or be reached: unknown counts as the same engine
            return
        if vm.elsewhere(here, self.engine.target.describe()):
            raise OtherEngine(
                vm.elsewhere_message(record.title, self.engine.target.describe()),
                hint="Serve dockext with that engine (DOCKER_HOST, or `docker context use`), or reinstall the "
                "extension here.",
            )

    def _ask_engine_id(self) -> str:
        """The engine's ID (``GET /info``), kept once known. Unknown (``""``) while the engine does not answer: then
        :meth:`watch` asks again every :data:`ENGINE_ID_RETRY` s, so a server started before its engine checks
        backends once the engine is up, not never."""
        try:
            self._engine_id = self.engine.identity()
        except DockextError:
            self._engine_id = ""
            self._engine_id_asked = time.monotonic()
        return self._engine_id

    def _stamp(self, name: str) -> tuple[int, int]:
        return file_stamp(self.layout.root / name)

    def dev_settings(self) -> dict[str, DevSettings]:
        """``dockext dev`` settings by extension key (an unreadable file counts as none, and is said so)."""
        try:
            return devmode.load(self.layout)
        except DockextError as exc:
            print(f"dockext: ignoring developer settings: {exc}", file=sys.stderr)
            return {}

    def dev_instance(self, record: Record) -> Instance | None:
        """A live UI instance of ``record`` whose UI comes from a dev server (for the dev server's own paths)."""
        for inst in self.instances.values():
            if inst.record.key == record.key and inst.dev.ui_source:
                return inst
        return None

    async def close_instance(self, inst: Instance) -> None:
        self._forget(inst)
        await inst.processes.close()

    def _forget(self, inst: Instance) -> None:
        self.instances.pop(inst.cap, None)
        self.instance_ids.pop(inst.id, None)
        if not inst.processes.closed:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(inst.processes.close())

    # -- backend connections -------------------------------------------------------------------------
    def backend_socket(self, record: Record) -> Path | None:
        if record.vm is None or record.vm.socket is None:
            return None
        return self.layout.guest_services / record.vm.gs_key / record.vm.socket

    def backend_pool(self, record: Record) -> BackendPool | None:
        """The kept-alive connections to the backend socket of ``record``; None if it exposes none."""
        if record.vm is None or record.vm.socket is None:
            return None
        key = (record.vm.gs_key, record.vm.socket)
        pool = self._pools.get(key)
        if pool is None:
            path = self.backend_socket(record)
            assert path is not None
            relay = record.vm.relay
            if relay is None:
                pool = self._pools[key] = BackendPool(path)
            else:  # a remote engine: each connection is an exec in the relay container
                engine, socket_name = self.engine_api(), record.vm.socket

                def opener(factory: Callable[[], asyncio.Protocol]) -> Awaitable[asyncio.Protocol]:
                    return open_relayed(engine, relay, socket_name, factory)

                remote_path = PurePosixPath(sockperm.GUEST_SERVICES) / socket_name
                pool = self._pools[key] = BackendPool(remote_path, opener=opener)
        return pool

    async def vm_container(self, record: Record) -> str:
        """The ID of the container ``vm.cli.exec`` runs in: the one named ``record.vm.container``, once it is seen
        to be of the extension's own Compose project. The name is what the extension's compose file chose
        (``container_name``), and a service that is never created (``profiles``) can name any container: found
        in a security review, one extension ran commands in another's backend that way. ExecRefused if it
        belongs to another project, and when there is no such container: ``docker exec`` given the bare name would
        look it up again, and another project's container of that name could be there by then (a second review)."""
        assert record.vm is not None
        name = record.vm.container
        # Kept until the extension list or a backend's containers change (generation): a burst of execs asks
        # once, on one connection, rather than each its own (the engine client keeps idle connections open)
        async with self._vm_lock:
            cached = self._vm_containers.get(record.key)
            if cached is not None and cached[0] == self.generation:
                return cached[1]
            try:
                found = await self.engine_api().get_json(f"/containers/{quote(name, safe='')}/json")
            except EngineReplied as exc:
                if exc.status == 404:
                    raise ExecRefused(f"No such container: {name} (the backend of {record.title} is not running: "
                                      "vm.cli.exec runs in its container)") from None
                raise
            labels = (found.get("Config") or {}).get("Labels") or {}
            if labels.get("com.docker.compose.project") != record.vm.project:
                raise ExecRefused(
                    f"the container {name} is not a container of {record.title}'s backend (its Compose project "
                    f"{record.vm.project}): vm.cli.exec runs only in the extension's own backend")
            container = str(found.get("Id") or name)
            self._vm_containers[record.key] = (self.generation, container)
            return container

    def engine_api(self) -> EngineHTTP:
        """The one async Engine API client of this server (closed with the server's other clients)."""
        if self._engine_api is None:
            self.set_engine_api(EngineHTTP(self.engine.target))
        assert self._engine_api is not None
        return self._engine_api

    def set_engine_api(self, engine: EngineHTTP) -> None:
        """Use ``engine`` (tests: one over a mock transport)."""
        self._engine_api = engine
        self.close_with(engine.aclose)

    async def aclose(self) -> None:
        await asyncio.gather(*(self.close_instance(i) for i in list(self.instances.values())))
        await asyncio.gather(*(p.aclose() for p in self._pools.values()), *(close() for close in self._closers))
        self._pools.clear()
        self._closers.clear()

    def close_with(self, close: Callable[[], Awaitable[None]]) -> None:
        """Have :meth:`aclose` (the server stopping) also call ``close`` (a client of another system)."""
        self._closers.append(close)

    def config_for(self, inst: Instance) -> dict[str, Any]:
        r = inst.record
        return {
            "api": f"/i/{inst.cap}/__dockext__",
            "dashboardOrigin": inst.dashboard_origin,
            "theme": inst.theme,
            "debug": inst.dev.debug,
            "web": self.allows(r, "web"),  # cross-origin requests go through the host (server/webfetch.py)
            "extension": {
                "id": r.id,
                "image": r.image,
                "hasVm": r.vm is not None,
                "hasService": self.backend_socket(r) is not None,
                "hasHost": bool(r.host_binaries),
            },
            "host": host_info(),
        }


