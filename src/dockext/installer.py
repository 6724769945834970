"""Install, update and remove extensions, all or nothing.

Install stages everything in ``staging/``, moves it into ``extensions/<key>/`` (still without a record),
starts the backend, and commits by renaming ``pending.json`` to ``extension.json``. Remove turns the record
back into ``pending.json`` (a tombstone) before touching anything. A directory holding ``pending.json`` is
an operation that did not finish: :meth:`Installer.recover` finishes its removal.

Update stages the new version as ``extensions/.next-<key>/``, stops the old backend (named volumes stay),
moves the old version aside to ``extensions/.prev-<key>/`` and the new one into its place, starts the new
backend and commits as install does; only then is ``.prev-<key>`` deleted. If anything fails before the
commit, or a crash interrupted it, the new version is taken down and the old one put back and started
again (:meth:`Installer._roll_back_update`). The new version keeps the old one's origin (so the UI keeps
its ``localStorage``) and its backend socket directory. docs/design.md, "Update and rollback", has the
table of what recovery does after a crash at each step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from . import backendpolicy, crashpoint, devmode, marketplace, model, permissions, socketpath, sockperm
from . import compose as composefile
from .composecli import Compose
from .engine import REMOTE_ENV, Engine, ImageFiles, PullEvent
from .engineapi import TransportError
from .errors import (
    AlreadyInstalled,
    BackendNotReady,
    ComposeError,
    DockextError,
    EngineError,
    MetadataError,
    NotInstalled,
    OtherEngine,
    StateError,
    StorageError,
    UpdateFailed,
    reason,
)
from .paths import Layout
from .store import (
    PREV_PREFIX,
    RECORD_FILE,
    SCHEMA_VERSION,
    Record,
    Store,
    UiInfo,
    VmInfo,
    atomic_write,
    durable_rename,
    sync_tree,
)

__all__ = ["NEXT_PREFIX", "PENDING_FILE", "PREV_PREFIX", "UPDATE_FILE", "Installer", "Reporter", "Silent"]

PENDING_FILE = "pending.json"
UPDATE_FILE = "update.json"  # in a staged new version: what an update must undo (the volumes it may create)
INSTALL_FILE = "install.json"  # in an install not yet committed: the same for the install (its undo keeps the rest)
#: how long the undo of a failed install waits for an engine that does not answer (restarting, say) before it
#: leaves the undo to the next command's recovery
ENGINE_BACK_WAIT = 15.0
NEXT_PREFIX = ".next-"  # extensions/.next-<key>: the new version of an update, staged
SUN_PATH_MAX = 107


class Reporter(Protocol):
    def step(self, message: str) -> None: ...
    def pull(self, event: PullEvent) -> None: ...


class Silent:
    """A reporter that says nothing."""

    def step(self, message: str) -> None:
        pass

    def pull(self, event: PullEvent) -> None:
        pass


def write_compose(
    engine: Engine, compose: Compose, doc: dict[str, Any], path: Path, *, key: str, project: str, image: str,
    title: str, guest_services: dict[str, Any], grants: permissions.Grants,
    extra_services: dict[str, dict[str, Any]] | None = None,
) -> composefile.Rewritten:
    """An extension's compose file as ``up`` will be given it, written to ``path``: Docker Desktop's additional
    attributes for this engine (:func:`.compose.rewrite`), then Docker Compose's own reading of the written file
    vetted by the same rules under ``grants`` (:func:`.backendpolicy.check_resolved`). Install and validate both
    come through here, so that validate refuses what install would."""
    rewritten = composefile.rewrite(
        doc, key=key, project=project, image=image, title=title, engine_socket=engine.socket_path,
        guest_services=guest_services, extra_services=extra_services, podman=engine.podman,
        host_alias=engine.host_gateway,
    )
    atomic_write(path, rewritten.dump())
    resolved = compose.config(project, path, {"DESKTOP_PLUGIN_IMAGE": image})
    backendpolicy.check_resolved(resolved, engine=grants.engine, system=grants.system, network=grants.network,
                                 engine_socket=engine.socket_path, project=project)
    return rewritten


class Installer:
    def __init__(
        self,
        layout: Layout,
        engine: Engine | None = None,
        compose: Compose | None = None,
        reporter: Reporter | None = None,
        *,
        backend_timeout: float | None = None,
    ) -> None:
        self.layout = layout
        self.store = Store(layout)
        self.engine = engine or Engine()
        self.compose = compose or Compose(self.engine.target)
        self.report: Reporter = reporter or Silent()
        self.backend_timeout = backend_timeout or float(os.environ.get("DOCKEXT_BACKEND_TIMEOUT", "60"))
        self.owner = layout.owner
        #: extensions whose interrupted operation a newer dockext left (its records have a newer schema): the
        #: last recovery left them as they are, for that dockext to finish (:meth:`_recover_locked`)
        self.newer: list[str] = []

    # -- install -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _changing(self, image: str, *, listed: bool = True) -> Iterator[tuple[model.ImageRef, str]]:
        """An install or update of IMAGE: allowed by the allow-list, under the lock, after any recovery."""
        if listed:
            marketplace.check_allowed(self.layout, image)
        ref = model.ImageRef.parse(image)
        with self._storage_errors():
            self.layout.ensure()
            with self.store.lock(waiting=self._waiting):
                self._recover_locked()
                key = model.extension_key(ref)
                self._refuse_newer(key)
                yield ref, key

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """A file dockext could not write becomes a StorageError saying where and what to do, once the operation
        has rolled back (the exception passes through its undo first)."""
        try:
            yield
        except TransportError as exc:  # a backstop: the engine adapter translates its client's errors itself
            raise EngineError(f"the Docker engine did not answer properly: {exc}") from None
        except OSError as exc:
            where = exc.filename or self.layout.root
            why = exc.strerror or str(exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                hint = f"Free some space where dockext keeps its files ({self.layout.root}: df -h), then try again."
            else:
                hint = f"Check that {self.layout.root} is on a writable file system and belongs to this user."
            raise StorageError(f"cannot write {where}: {why} (the operation was undone)", hint=hint) from None

    def install(self, image: str, *, deny: tuple[str, ...] = ()) -> Record:
        """Install IMAGE. ``deny`` names backend grants (``engine``, ``system``) withheld from the start, so that
        its backend never runs with them."""
        unknown = [n for n in deny if n not in permissions.BACKEND_NAMES]
        if unknown:
            raise DockextError(f"--deny {', '.join(unknown)}: not a backend permission",
                               hint=f"The backend permissions are: {', '.join(permissions.BACKEND_NAMES)}.")
        with self._changing(image) as (ref, key):
            if (self.layout.extension_dir(key) / RECORD_FILE).exists():
                existing = self.store.read(key)
                if existing.id != ref.name:
                    raise AlreadyInstalled(
                        f"extension {ref.name} cannot be installed beside {existing.id}: both map to {key}",
                        hint=f"Remove {existing.id} first with: dockext rm {existing.id}",
                    )
                raise AlreadyInstalled(
                    f"extension {ref.name} is already installed ({existing.image})",
                    hint=f"Install {image} in its place with: dockext update {image}"
                    if model.canonical_ref(existing.image) != model.canonical_ref(image)
                    else f"To install it again, remove it first with: dockext rm {ref.name}",
                )
            image_id, labels = self._image(ref)
            stage = self.layout.staging / f"{key}.{uuid.uuid4().hex[:8]}"
            try:
                if deny:
                    permissions.set_grants_locked(self.layout, key, **{n: False for n in deny})
                record = self._stage(ref, key, image_id, labels, stage)
                crashpoint.reached("install:staged")
                return self._activate(record, stage)
            except BaseException:
                # nothing installed: no grants either. Never in the way of the error that stopped the install (an
                # unreadable grants file is named by the next command; recovery drops such grants anyway)
                with contextlib.suppress(DockextError, OSError):
                    permissions.forget(self.layout, key)
                raise
            finally:
                shutil.rmtree(stage, ignore_errors=True)

    def _image(self, ref: model.ImageRef) -> tuple[str, dict[str, str]]:
        """The image's ID and labels, pulled first if the engine does not have it."""
        self.engine.ping()
        info = self.engine.find_image(ref.pull_ref)
        if info is None:
            self.report.step(f"Image not available locally, pulling {ref.pull_ref}...")
            info = self.engine.pull(ref, self.report.pull)
        return str(info["Id"]), dict((info.get("Config") or {}).get("Labels") or {})

    def _stage(
        self, ref: model.ImageRef, key: str, image_id: str, labels: dict[str, str], stage: Path,
        previous: Record | None = None,
    ) -> Record:
        """Copy what the extension needs out of the image into ``stage``, with ``pending.json`` last.

        An update passes the installed ``previous`` record: the new version keeps its origin and its backend
        socket directory."""
        self.report.step(f'Extracting metadata and files for the extension "{ref.pull_ref}"')
        stage.mkdir(mode=0o755, parents=True)
        parsed_labels = model.parse_labels(labels)
        with self.engine.image_files(image_id, self.owner) as files:
            raw = files.read("/metadata.json", "metadata.json")
            if raw is None:
                raise MetadataError(
                    "metadata.json", "the image has no /metadata.json: it is not a Docker extension"
                )
            meta = model.parse_metadata(raw)
            (stage / "metadata.json").write_bytes(raw)
            icon = self._copy_icon(files, meta, stage)
            if meta.tab:
                if not files.copy_tree(meta.tab.root, stage / "ui", f"UI root {meta.tab.root}"):
                    raise MetadataError(
                        "ui.dashboard-tab.root", f"{meta.tab.root} does not exist in the image"
                    )
                entry = stage / "ui" / meta.tab.src
                if not entry.is_file():
                    raise MetadataError(
                        "ui.dashboard-tab.src", f"{meta.tab.src} does not exist in the UI root {meta.tab.root}"
                    )
            binaries = meta.binaries_for("linux")
            if binaries:
                (stage / "host").mkdir(mode=0o755)
                for b in binaries:
                    if not files.copy_file(b.path, stage / "host" / b.name, f"host binary {b.path}"):
                        raise MetadataError("host.binaries", f"{b.path} does not exist in the image")
            compose_doc: dict[str, Any] | None = None
            if meta.vm:
                if meta.vm.image:
                    compose_doc = composefile.generated()
                else:
                    assert meta.vm.composefile
                    text = files.read(meta.vm.composefile, f"compose file {meta.vm.composefile}")
                    if text is None:
                        raise MetadataError(
                            "vm.composefile", f"{meta.vm.composefile} does not exist in the image"
                        )
                    compose_doc = composefile.parse(text)
        title = parsed_labels.title or (meta.tab.title if meta.tab else None) or ref.name
        record = Record(
            key=key,
            id=ref.name,
            image=ref.pull_ref,
            image_id=image_id,
            version=ref.version,
            title=title,
            provider=parsed_labels.vendor or "-",
            origin_slug=previous.origin_slug if previous else model.origin_slug(key, secrets.token_hex(3)),
            installed_at=time.time(),
            ui=UiInfo(title=meta.tab.title, src=meta.tab.src) if meta.tab else None,
            icon=icon,
            host_binaries=tuple(b.name for b in binaries),
            labels=labels,
            metadata=meta.raw,
        )
        engine_socket = self.engine.socket_path
        asked = permissions.requested(compose_doc, record.host_binaries, engine_socket)
        got = asked
        if compose_doc is not None and meta.vm:
            gs_key = previous.vm.gs_key if previous and previous.vm else secrets.token_hex(4)
            project = model.compose_project(key)
            backendpolicy.check_isolation(compose_doc, project)
            grants = permissions.grants_for(self.layout, key)
            restricted = backendpolicy.restrict(compose_doc, engine=grants.engine, system=grants.system,
                                                network=grants.network, engine_socket=engine_socket, project=project)
            withheld = permissions.withheld(grants, asked)
            record = self._stage_backend(record, meta, restricted, stage, gs_key, grants, withheld)
            got = permissions.requested(restricted, record.host_binaries, engine_socket)
            for name in withheld:
                self.report.step(f"Withheld by your permissions ({name}=deny): it asked to "
                                 f"{permissions.EXPLAIN[name]}")
            leaky = self.engine.internal_dns_leaks() if "network" in withheld else None
            if leaky:
                self.report.step(f"Note: this engine (Docker {leaky}) still answers the DNS lookups of a cut-off "
                                 "backend through the host's resolvers (CVE-2024-29018), so it can send data out "
                                 "in the names it looks up; Docker Engine 25.0.5 or 26.0 closes that")
        for line in got.lines():
            self.report.step(f"It gets {line}")
        atomic_write(stage / permissions.REQUESTED_FILE, json.dumps(asked.to_json(), indent=2).encode())
        atomic_write(stage / PENDING_FILE, _record_bytes(record))
        return record

    def _copy_icon(self, files: ImageFiles, meta: model.Metadata, stage: Path) -> str | None:
        if not meta.icon:
            return None
        suffix = Path(meta.icon).suffix.lower()
        if suffix not in {".svg", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico"}:
            suffix = ".img"
        name = f"icon{suffix}"
        if not files.copy_file(meta.icon, stage / name, f"icon {meta.icon}", executable_ok=False):
            raise MetadataError("icon", f"{meta.icon} does not exist in the image")
        return name

    def _stage_backend(
        self, record: Record, meta: model.Metadata, doc: dict[str, Any], stage: Path, gs_key: str,
        grants: permissions.Grants, withheld: tuple[str, ...] = (),
    ) -> Record:
        self.report.step("Installing service in Desktop VM...")
        gs_dir = self.layout.guest_services / gs_key
        socket_name = meta.socket
        if socket_name and len(str(gs_dir / socket_name)) > SUN_PATH_MAX:
            raise DockextError(
                f"the backend socket path {gs_dir / socket_name} is longer than {SUN_PATH_MAX} bytes",
                hint="Set DOCKEXT_HOME to a shorter directory.",
            )
        project = model.compose_project(record.key)
        extra: dict[str, dict[str, Any]] = {}
        relay: str | None = None
        if self.engine.remote:
            # the engine's containers cannot see gs_dir: the sockets live in a project volume, reached
            # through an exec in a relay container (docs/design.md, "Remote engines")
            guest_services = composefile.guest_services_volume()
            use_sockperm = False
            if socket_name:
                relay = f"{project}-{sockperm.RELAY_SERVICE}"
                image = sockperm.ensure_image(self.engine)
                extra[sockperm.RELAY_SERVICE] = sockperm.relay_service(image, relay)
        else:
            guest_services = composefile.guest_services_bind(str(gs_dir))
            use_sockperm = os.geteuid() != 0 and bool(socket_name)
            if use_sockperm:
                image = sockperm.ensure_image(self.engine)
                # a rootless engine's container root is this user here; container uid N is a subordinate id
                ids = (0, 0) if self.engine.rootless else (os.geteuid(), os.getegid())
                extra["dockext-sockperm"] = sockperm.service(image, *ids, host_userns=self.engine.userns_remapped)
        self.report.step("Setting additional compose attributes")
        (stage / "vm").mkdir(mode=0o755)
        rewritten = write_compose(
            self.engine, self.compose, doc, stage / "vm" / "docker-compose.yaml", key=record.key, project=project,
            image=record.image, title=record.title, guest_services=guest_services, extra_services=extra,
            grants=grants,
        )
        first = rewritten.first_service
        vm = VmInfo(
            project=project,
            first_service=first,
            container=str(rewritten.document["services"][first]["container_name"]),
            socket=socket_name,
            gs_key=gs_key,
            sockperm=use_sockperm,
            relay=relay,
            withheld=withheld,
            policy=backendpolicy.POLICY,
            engine=self.engine.identity() or None,
            engine_at=self.engine.target.describe(),
        )
        return replace(record, vm=vm)

    def _activate(self, record: Record, stage: Path) -> Record:
        target = self.layout.extension_dir(record.key)
        # volumes of this project that exist already (kept by an earlier rm) must survive a failed install, even
        # one whose undo is left to the next command's recovery: written down before the backend is started
        volumes_before = sorted(self.engine.project_volumes(record.vm.project)) if record.vm else []
        atomic_write(stage / INSTALL_FILE, json.dumps({"volumes_before": volumes_before}).encode())
        sync_tree(stage)  # its files on disk before it is published (not only its record)
        durable_rename(stage, target)
        crashpoint.reached("install:moved")
        try:
            if record.vm:
                self._start_backend(record, target)
                crashpoint.reached("install:backend-started")
            if record.ui:
                self.report.step(f'Installing Desktop extension UI for tab "{record.ui.title}"...')
                self.report.step(f'Extension UI tab "{record.ui.title}" added.')
            if record.host_binaries:
                self.report.step(f"Copied {len(record.host_binaries)} host binarie(s)")
            durable_rename(target / PENDING_FILE, target / RECORD_FILE)  # the commit point
            crashpoint.reached("install:committed")
        except BaseException:
            self.report.step("Removing extension (install failed)")
            failed = self._undo_install(record, target)
            if failed is not None and not self._engine_answers():
                self.report.step("The Docker engine does not answer: the next dockext command finishes removing it")
            elif failed is not None:
                self.report.step(f"Could not remove its backend ({reason(failed)}): the next dockext command tries "
                                 "again")
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target / INSTALL_FILE)  # (rm unlinks it too: a crash may have left it)
        self.report.step(f'Extension "{record.title}" installed successfully')
        return record

    def _start_backend(self, record: Record, target: Path) -> None:
        assert record.vm
        gs_dir = self.layout.guest_services / record.vm.gs_key
        if record.vm.relay is None:
            self._remove_guest_services(gs_dir)
            gs_dir.mkdir(parents=True, exist_ok=True)  # (what could not be removed is left to the backend)
            # Backends that run as a non-root user must be able to create their socket here too. Other host
            # users cannot reach it: the dockext home above it is 0700.
            gs_dir.chmod(0o1777)
        self.report.step("Starting service in Desktop VM...")
        self.compose.up(
            record.vm.project, target / "vm" / "docker-compose.yaml", {"DESKTOP_PLUGIN_IMAGE": record.image}
        )
        if record.vm.socket:
            relay = record.vm.relay
            probe = (self._probe_local(gs_dir / record.vm.socket) if relay is None
                     else self._probe_relayed(relay, record.vm.socket))
            self._wait_for_socket(record, record.vm.socket, probe, local=relay is None)
        self.report.step("VM service started")

    def _wait_for_socket(self, record: Record, socket_name: str, probe: Callable[[], str | None], *,
                         local: bool) -> None:
        """Until ``probe()`` (None: it accepts; else why not, in words) says the backend's socket accepts.
        ``local``: the socket is probed in the guest-services directory here (not through a relay)."""
        deadline = time.monotonic() + self.backend_timeout
        last_error = "it does not exist"
        while time.monotonic() < deadline:
            why = probe()
            if why is None:
                return
            last_error = why
            time.sleep(0.1)
        assert record.vm
        details = self._backend_diagnosis(record.vm.project)
        hint = f"The backend must listen on /run/guest-services/{socket_name} in its container."
        kernel = ""
        if local:
            with contextlib.suppress(DockextError):
                kernel = self.engine.kernel()
        if kernel and kernel != os.uname().release:
            hint += (f" The engine runs on another kernel ({kernel}; this machine's is {os.uname().release}): in a "
                     "VM, or on another machine behind its socket, where a socket made in a shared folder cannot "
                     f"be reached from here. Set {REMOTE_ENV}=1 to reach backends through a relay container.")
        raise BackendNotReady(
            f"the backend did not expose its socket {socket_name} within {self.backend_timeout:.0f} s "
            f"({last_error}){details}",
            hint=hint,
        )

    @staticmethod
    def _probe_local(path: Path) -> Callable[[], str | None]:
        def probe() -> str | None:
            if not path.exists():
                return "it does not exist"
            try:  # the socket file itself, never what a link the backend put there names (socketpath.py)
                with socketpath.address(path) as address, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect(address)
                return None
            except PermissionError:
                return "dockext is not allowed to connect to it"
            except OSError as exc:
                return f"connecting fails: {exc.strerror or exc}"
        return probe

    def _probe_relayed(self, relay: str, socket_name: str) -> Callable[[], str | None]:
        """A remote engine: ``sockperm probe`` in the relay container."""
        def probe() -> str | None:
            code, err = self.engine.exec_run(relay, sockperm.probe_command(socket_name))
            if code == 0:
                return None
            refused = sockperm.refusal(err)
            if refused is not None:
                return {
                    "ENOENT": "it does not exist",
                    "ECONNREFUSED": "nothing listens on it",
                    "EACCES": "the relay is not allowed to connect to it",
                }.get(refused[0], f"connecting fails: {refused[0]}")
            return f"the relay container {relay}: {err.strip().splitlines()[-1]}" if err.strip() else "no answer"
        return probe

    def _backend_diagnosis(self, project: str) -> str:
        lines = []
        for c in self.engine.project_containers(project):
            name = (c.get("Names") or ["?"])[0].lstrip("/")
            lines.append(f"\n  container {name}: {c.get('Status', c.get('State'))}")
            logs = self.engine.container_logs(c["Id"], tail=5).strip()
            if logs:
                lines.extend(f"\n    | {ln}" for ln in logs.splitlines()[-5:])
        return "".join(lines)

    def _elsewhere(self, record: Record) -> bool:
        """Whether the backend of ``record`` was made on another engine than the one reached now. Unknown (an
        older record, an engine that gives no ID, or an engine that cannot be reached) counts as not."""
        if record.vm is None or not record.vm.engine:
            return False
        try:
            here = self.engine.identity()
        except DockextError:
            return False
        return record.vm.elsewhere(here, self.engine.target.describe())

    def check_engine(self, record: Record) -> None:
        """Refuse to change an extension whose backend is on another engine than the one reached now: its
        containers are there, and compose here would find none (or start a second backend)."""
        if self._elsewhere(record):
            assert record.vm is not None
            raise OtherEngine(
                record.vm.elsewhere_message(record.id, self.engine.target.describe()),
                hint="Point dockext at that engine (DOCKER_HOST, or `docker context use`) to update or remove it; "
                f"or forget it here with `dockext rm --forget {record.id}` (its containers stay on that engine).",
            )

    # -- update --------------------------------------------------------------------------------------
    def set_permissions(self, extension: str, **changes: bool) -> tuple[permissions.Grants, bool]:
        """``dockext permissions set``: save the grants; when a backend grant changes what the backend runs with,
        recreate it (:meth:`reapply`). If that fails the old version is back (update's rollback) and so are
        the old grants, so that what is saved is what runs. Returns the grants and whether it was recreated."""
        key = self.key_for(extension)
        record = self.store.read(key)
        if record.vm is not None and any(n in changes for n in permissions.BACKEND_NAMES):
            self.check_engine(record)
        before = permissions.grants_for(self.layout, key)
        grants = permissions.set_grants(self.layout, key, **changes)
        changed = [n for n in permissions.BACKEND_NAMES if grants.allows(n) != before.allows(n)]
        asked = permissions.read_requested(self.layout.extension_dir(key))
        if record.vm is None:
            return grants, False
        # recreated when a backend grant changed and the backend asks for what it covers (or did not say), or
        # when what its backend runs without is not what the grants say (a recreation that was interrupted)
        stale = asked is not None and permissions.withheld(grants, asked) != record.vm.withheld
        # made by older rules while a backend grant was denied, and one is set now: what a grant covers has grown
        # since (ports...), so the backend is made again by today's
        outdated = (any(n in changes for n in permissions.BACKEND_NAMES)
                    and permissions.outdated(record.vm.policy, grants))
        if not stale and not outdated and not any(asked is None or asked.asks(n) for n in changed):
            return grants, False
        try:
            self.reapply(key)
        except BaseException:
            permissions.set_grants(self.layout, key, **before.to_json())
            raise
        return grants, True

    def reapply(self, extension: str) -> Record:
        """Recreate an installed extension's backend with the permissions now in force (``dockext permissions
        set`` of ``engine``, ``system`` or ``network``): an update to the installed version, with its rollback. The
        allow-list is not asked again: the version is the one already installed."""
        record = self.store.read(self.key_for(extension))
        return self.update(record.image, listed=False,
                           announce=f'Recreating the backend of "{record.title}" with its new permissions')

    def update(self, image: str, *, listed: bool = True, announce: str | None = None) -> Record:
        """Replace the installed version of IMAGE's extension with IMAGE[:TAG]; the old one comes back if the
        new one cannot be installed and started. Named volumes, the UI's origin and its socket dir are kept."""
        with self._changing(image, listed=listed) as (ref, key):
            if not (self.layout.extension_dir(key) / RECORD_FILE).exists():
                raise NotInstalled(
                    f"extension {ref.name} is not installed, so it cannot be updated",
                    hint=f"Install it with: dockext install {ref.pull_ref}",
                )
            old = self.store.read(key)
            self.check_engine(old)
            if old.id != ref.name:
                raise AlreadyInstalled(
                    f"{ref.name} cannot replace {old.id}: they are different extensions that both map to {key}",
                    hint=f"Remove {old.id} first with: dockext rm {old.id}",
                )
            image_id, labels = self._image(ref)
            self.report.step(announce or f'Updating extension "{old.title}" from {old.image} to {ref.pull_ref}')
            stage = self.layout.staging / f"{key}.{uuid.uuid4().hex[:8]}"
            try:
                new = self._stage(ref, key, image_id, labels, stage, previous=old)
                return self._swap(old, new, stage)
            finally:
                shutil.rmtree(stage, ignore_errors=True)

    def _swap(self, old: Record, new: Record, stage: Path) -> Record:
        key = old.key
        target = self.layout.extension_dir(key)
        nxt = self.layout.extensions / f"{NEXT_PREFIX}{key}"
        prev = self.layout.extensions / f"{PREV_PREFIX}{key}"
        # the project is the same for both versions: volumes it has now are the old version's, kept whatever happens
        volumes = sorted(self.engine.project_volumes(new.vm.project)) if new.vm else []
        atomic_write(stage / UPDATE_FILE, json.dumps({"from": old.image, "volumes_before": volumes}).encode())
        sync_tree(stage)
        durable_rename(stage, nxt)
        crashpoint.reached("update:staged")
        try:
            if old.vm:
                self.report.step("Stopping the backend of the installed version...")
                self.compose.down(old.vm.project, target / "vm" / "docker-compose.yaml")
                crashpoint.reached("update:old-stopped")
            durable_rename(target, prev)  # from here until the commit it is not listed (as in Docker Desktop)
            crashpoint.reached("update:old-moved")
            durable_rename(nxt, target)
            crashpoint.reached("update:swapped")
            if new.vm:
                self._start_backend(new, target)
                crashpoint.reached("update:new-started")
            durable_rename(target / PENDING_FILE, target / RECORD_FILE)  # the commit point
            crashpoint.reached("update:committed")
        except BaseException as exc:
            self.report.step(f"Update failed: restoring {old.image}")
            try:
                self._roll_back_update(key)
            except (DockextError, OSError) as undo:
                raise UpdateFailed(
                    f"the update of {old.id} to {new.image} failed ({reason(exc)}), and restoring {old.image} "
                    f"failed too: {reason(undo)}",
                    hint=f"Check that the Docker engine runs, then run `dockext update {old.image}` to start it "
                    f"again, or remove it with `dockext rm {old.id}`.",
                ) from exc
            if isinstance(exc, Exception):
                hint = exc.hint if isinstance(exc, DockextError) else None
                raise UpdateFailed(
                    f"the update of {old.id} to {new.image} failed, and {old.image} was restored: {reason(exc)}",
                    hint=hint,
                ) from exc
            raise
        self._finish_update(key)
        crashpoint.reached("update:cleaned")
        self.report.step(f'Extension "{new.title}" updated to {new.image}')
        return new

    def _finish_update(self, key: str) -> None:
        """After the commit: the old version's files go (its backend was stopped before the swap)."""
        target = self.layout.extension_dir(key)
        prev = self.layout.extensions / f"{PREV_PREFIX}{key}"
        old = _read_record(prev)
        new = self.store.read(key)
        if old and old.vm and (new.vm is None or new.vm.gs_key != old.vm.gs_key):
            self._remove_guest_services(self.layout.guest_services / old.vm.gs_key)
        self._trash(prev)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target / UPDATE_FILE)

    def _roll_back_update(self, key: str) -> None:
        """Undo an update of ``key`` that did not commit, whatever step it reached; finish one that did.

        Raises if the engine cannot be reached or the old backend does not start again."""
        target = self.layout.extension_dir(key)
        nxt = self.layout.extensions / f"{NEXT_PREFIX}{key}"
        prev = self.layout.extensions / f"{PREV_PREFIX}{key}"
        if prev.exists() and (target / RECORD_FILE).exists():
            self._finish_update(key)  # it had committed: only the old files were left
            return
        if prev.exists():
            if target.exists():  # the new version, swapped in but not committed: take it down
                new = _read_pending(target)
                if new and new.vm:
                    self.compose.down(new.vm.project, target / "vm" / "docker-compose.yaml")
                    self._remove_new_volumes(new.vm.project, target / UPDATE_FILE)
                    old = _read_record(prev)
                    if old is None or old.vm is None or old.vm.gs_key != new.vm.gs_key:
                        self._remove_guest_services(self.layout.guest_services / new.vm.gs_key)
                self._trash(target)
            try:
                # started where it lies, so that it is listed again only once its backend answers (a dashboard
                # reopening its tab at once finds it working); put back even if that fails, to be seen and removed
                self._restart_backend(prev)
            finally:
                durable_rename(prev, target)
                self._trash(nxt)  # never needed again (else each later command would redo this recovery)
        else:  # only staged: the installed version never moved, but its backend may have been stopped
            try:
                self._restart_backend(target)
            finally:
                self._trash(nxt)

    def _restart_backend(self, directory: Path) -> None:
        record = _read_record(directory)
        if record is None or record.vm is None:
            return
        # Stopped or not (a crash does not say): down, then up as at install. "up" alone would leave a running
        # backend as it is, but _start_backend first empties its socket directory.
        self.compose.down(record.vm.project, directory / "vm" / "docker-compose.yaml")
        self._start_backend(record, directory)

    def _remove_new_volumes(self, project: str, journal: Path) -> None:
        try:
            before = set(json.loads(journal.read_bytes())["volumes_before"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # not known which volumes are new: keep them all
        with contextlib.suppress(DockextError):
            self.engine.remove_volumes(self.engine.project_volumes(project) - before)

    def _trash(self, path: Path) -> None:
        trash = self.layout.staging / f".trash-{path.name.lstrip('.')}-{uuid.uuid4().hex[:6]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # -- remove --------------------------------------------------------------------------------------
    def remove(self, image: str, *, forget: bool = False) -> Record | None:
        """Remove an installed extension: its backend (``compose down``; named volumes kept), then its files.
        ``forget``: its files only, for a backend on an engine dockext no longer reaches (it stays there). The
        record removed; None for one that could not be read (removed by its name: :meth:`_remove_unreadable`)."""
        with self._storage_errors(), self.store.lock(waiting=self._waiting):
            self._recover_locked()
            self._refuse_newer(model.extension_key(model.ImageRef.parse(image)))
            key = self.key_for(image)
            target = self.layout.extension_dir(key)
            try:
                record = self.store.read(key)
            except StateError as exc:
                if _newer_schema(target):  # it means what a newer dockext says it means: refused, as it says
                    raise
                self._remove_unreadable(key, exc, forget=forget)
                return None
            if not forget:
                self.check_engine(record)
            self.report.step(f"Removing extension {record.id}...")
            with contextlib.suppress(FileNotFoundError):  # left by an install killed just after its commit: with
                os.unlink(target / INSTALL_FILE)  # it, recovering this tombstone would delete the extension's volumes
            durable_rename(target / RECORD_FILE, target / PENDING_FILE)  # tombstone: no longer listed
            crashpoint.reached("rm:tombstoned")
            try:
                if record.vm and forget:
                    where = record.vm.engine_at or "its engine"
                    self.report.step(f"Leaving its backend ({record.vm.project}) on {where}")
                elif record.vm:
                    self.report.step("Removing extension VM service...")
                    self.engine.ping()
                    self.compose.down(record.vm.project, target / "vm" / "docker-compose.yaml")
                    if record.vm.relay:  # the sockets' tmpfs holds no data: unlike the extension's volumes, it goes
                        self.engine.remove_volumes({f"{record.vm.project}_{composefile.GS_VOLUME}"})
                    self.report.step("Extension removed from Desktop VM")
                    crashpoint.reached("rm:backend-stopped")
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: `compose down` may have stopped half the backend
                if record.vm is None or forget:
                    durable_rename(target / PENDING_FILE, target / RECORD_FILE)  # nothing was done: as it was
                else:  # listed again, it would be an extension without its backend: the tombstone stays
                    self.report.step(f"Interrupted: the next dockext command finishes removing {record.id}")
                raise
            except BaseException:
                durable_rename(target / PENDING_FILE, target / RECORD_FILE)  # still installed, as it was
                raise
            self._delete_files(record, target, helper=not forget)  # a forgotten backend may run, and elsewhere
            crashpoint.reached("rm:deleted")
            if record.ui:
                self.report.step(f"Extension UI tab {record.ui.title} removed")
            self.report.step(f'Extension "{record.title}" removed')
            return record

    def _remove_unreadable(self, key: str, exc: StateError, *, forget: bool) -> None:
        """rm of an extension whose record cannot be read (not listed: `ls` says so): its backend by the project
        name dockext gives every backend (``compose down`` by labels needs no file), then its files. Its
        guest-services dir is not known: the next recovery removes it, no record naming it."""
        self.report.step(f"The record of {key} cannot be read ({exc.message}): removing the extension by its name")
        if not forget:
            project = model.compose_project(key)
            self.report.step(f"Removing extension VM service ({project}), if it has one...")
            self.engine.ping()
            self.compose.down(project)
        permissions.forget(self.layout, key)
        devmode.forget(self.layout, key)
        self._trash(self.layout.extension_dir(key))
        self.report.step(f"Extension {key} removed")

    def key_for(self, image: str) -> str:
        """Find the installed extension an argument names: IMAGE, IMAGE:TAG or the extension key."""
        ref = model.ImageRef.parse(image)
        key = model.extension_key(ref)
        if not (self.layout.extension_dir(key) / RECORD_FILE).exists():
            raise NotInstalled(
                f"extension {ref.name} is not installed",
                hint="`dockext ls` lists the installed extensions.",
            )
        return key

    # -- recovery ------------------------------------------------------------------------------------
    def recover(self, *, wait: bool = True) -> list[str]:
        """Finish operations that a crash interrupted; returns the keys cleaned up.

        With ``wait=False`` it raises :class:`Busy` at once if another operation holds the lock (it is not
        interrupted then, only running)."""
        self.layout.ensure()
        with self.store.lock(timeout=120.0 if wait else 0.0, waiting=self._waiting if wait else None):
            return self._recover_locked()

    def needs_recovery(self) -> bool:
        """True if an operation was interrupted, or is running now (a cheap look at the directories)."""
        staging = self.layout.staging
        return bool(
            self.store.incomplete() or self._interrupted_updates() or (staging.is_dir() and any(staging.iterdir()))
        )

    def _recover_locked(self) -> list[str]:
        cleaned = []
        self.newer = []
        for key in self._interrupted_updates():
            if _newer_schema(self.layout.extension_dir(key), self.layout.extensions / f"{PREV_PREFIX}{key}",
                             self.layout.extensions / f"{NEXT_PREFIX}{key}"):
                self.newer.append(key)  # its files mean what a newer dockext says they mean: leave them to it
                continue
            old = _read_record(self.layout.extensions / f"{PREV_PREFIX}{key}") or _read_record(
                self.layout.extension_dir(key))
            if old is not None and self._elsewhere(old):
                continue  # its backend is on another engine: finished when dockext reaches that one again
            try:
                self._roll_back_update(key)
            except DockextError:
                continue  # engine unreachable: leave it for the next time
            cleaned.append(key)
        for key in self.store.incomplete():
            target = self.layout.extension_dir(key)
            if key in self.newer:  # an update of a newer dockext (above)
                continue
            if _newer_schema(target):
                self.newer.append(key)
                continue
            record = _read_pending(target)
            if record and self._elsewhere(record):
                continue  # the same: compose here would find nothing, and the containers there would be orphaned
            if record:
                try:  # an install's volumes go too (its journal); an rm's tombstone has none: its volumes stay
                    self._undo_backend(record, target)
                except DockextError:
                    continue  # engine unreachable: leave it for the next time
            if record:
                self._delete_files(record, target)
            else:
                shutil.rmtree(target, ignore_errors=True)
            cleaned.append(key)
        for leftover in self.layout.staging.iterdir() if self.layout.staging.exists() else []:
            shutil.rmtree(leftover, ignore_errors=True)
        self._forget_grants_of_the_uninstalled()
        with contextlib.suppress(DockextError):
            self.engine.gc_one_off_containers(self.owner)
            self._sweep_guest_services()
        return cleaned

    def _sweep_guest_services(self) -> None:
        """Remove the guest-services dirs that no record names: left by an rm whose helper could not empty one, by
        ``rm --forget``, or by a crash before an install wrote its pending record. A dir still mounted by a
        container (a forgotten backend that still runs here) stays, and so does every dir while a record cannot be
        read. Raises :class:`DockextError` if the engine does not answer (then nothing is removed)."""
        try:
            present = set(os.listdir(self.layout.guest_services))
        except OSError:
            return
        named = _named_gs_keys(self.layout.extensions)
        if named is None or not present - named:
            return
        mounted = self.engine.backend_mount_sources()
        for name in sorted(present - named):
            gs_dir = self.layout.guest_services / name
            if gs_dir.is_dir() and not gs_dir.is_symlink() and not any(
                src == str(gs_dir) or src.startswith(f"{gs_dir}/") for src in mounted
            ):
                self._remove_guest_services(gs_dir)

    def _forget_grants_of_the_uninstalled(self) -> None:
        """Grants of an extension that is not there: an install with ``--deny`` killed before it rolled back.
        Left, they would apply to a later install of the same extension without the user asking."""
        present = {*self.store.keys(), *self.store.incomplete(), *self._interrupted_updates()}
        with contextlib.suppress(DockextError):  # a grants file that cannot be read is reported where it is used
            for key in permissions.load(self.layout):
                if key not in present:
                    permissions.forget(self.layout, key)

    def _refuse_newer(self, key: str) -> None:
        if key in self.newer:
            raise StateError(
                f"an interrupted install, update or removal of {key} was left by a newer dockext (its records have "
                "a newer schema); dockext leaves it as it is",
                hint="Upgrade dockext: the newer version finishes it.",
            )

    def _interrupted_updates(self) -> list[str]:
        try:
            names = os.listdir(self.layout.extensions)
        except FileNotFoundError:
            return []
        return sorted({
            n[len(p):] for n in names for p in (NEXT_PREFIX, PREV_PREFIX) if n.startswith(p) and len(n) > len(p)
        })

    def _undo_install(self, record: Record, target: Path) -> DockextError | None:
        """Undo an install that did not commit: its backend, the volumes it created, its files. If the engine does
        not answer (a restart of dockerd under the install: what compose made comes back with it), try again for
        up to :data:`ENGINE_BACK_WAIT` s; a failure while the engine answers is tried once more only. If it still
        fails, the files stay where they are, not listed, and the next command's recovery finishes the undo:
        deleting them would orphan the backend's containers, networks and volumes. Returns the last failure, or
        None once it is undone."""
        deadline = time.monotonic() + ENGINE_BACK_WAIT
        answered = 0  # failures while the engine answered: waiting for it would not help
        while True:
            try:
                self._undo_backend(record, target)
                break
            except DockextError as exc:
                answered += self._engine_answers()
                if answered > 1 or time.monotonic() >= deadline:
                    return exc
                time.sleep(0.5)
        self._delete_files(record, target)
        return None

    def _waiting(self) -> None:
        self.report.step("Waiting for another dockext operation to finish...")

    def _engine_answers(self) -> bool:
        try:
            self.engine.ping()
        except DockextError:
            return False
        return True

    def _undo_backend(self, record: Record, target: Path) -> None:
        """``compose down`` of an install that did not commit, and the removal of the volumes it created (those
        its journal does not name). Raises :class:`DockextError` if the engine does not answer."""
        if record.vm is None:
            return
        try:
            self.compose.down(record.vm.project, target / "vm" / "docker-compose.yaml")
        except ComposeError:
            # compose refuses a file it cannot validate (an extension's compose file with an unknown key fails
            # `up`, then `down` too): by the project's labels, which need no file
            self.compose.down(record.vm.project)
        try:
            before = set(json.loads((target / INSTALL_FILE).read_bytes())["volumes_before"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # not known which volumes are new (an rm's tombstone, or an older dockext's): keep them all
        self.engine.remove_volumes(self.engine.project_volumes(record.vm.project) - before)

    def _remove_guest_services(self, gs_dir: Path, *, helper: bool = True) -> None:
        """Remove a backend's guest-services dir of this host. What the backend made there as another user (a
        root backend's directories, for dockext run as an ordinary user) is first emptied by the helper, in a
        container of the engine, when ``helper`` (the backend is this engine's, and stopped) and the engine sees
        this host's files; what still cannot go is left, and said."""
        shutil.rmtree(gs_dir, ignore_errors=True)
        if not gs_dir.exists() or os.geteuid() == 0:
            return
        if helper and not self.engine.remote:
            try:
                sockperm.clean(self.engine, str(gs_dir), owner=self.owner,
                               host_userns=self.engine.userns_remapped)
            except DockextError as exc:
                self.report.step(f"Could not empty {gs_dir}: {exc.message}")
            shutil.rmtree(gs_dir, ignore_errors=True)
        if gs_dir.exists():
            self.report.step(f"Left {gs_dir}: its backend made files there as another user (root may remove them)")

    def _delete_files(self, record: Record, target: Path, *, helper: bool = True) -> None:
        """The extension's files, grants and guest-services dir (``helper``: as for :meth:`_remove_guest_services`;
        not for a backend left running elsewhere)."""
        permissions.forget(self.layout, record.key)  # the user's grants go with the extension
        devmode.forget(self.layout, record.key)  # and so do its developer settings
        if record.vm:
            self._remove_guest_services(self.layout.guest_services / record.vm.gs_key, helper=helper)
        self._trash(target)  # renamed first: a crash half-way leaves no directory that looks like an extension


def _record_bytes(record: Record) -> bytes:
    return json.dumps(record.to_json(), indent=2, sort_keys=True).encode() + b"\n"


def _read_pending(target: Path) -> Record | None:
    return _read_record(target, PENDING_FILE)


def _newer_schema(*directories: Path) -> bool:
    """Whether a record or pending record in one of ``directories`` was written by a newer dockext."""
    for directory in directories:
        for name in (RECORD_FILE, PENDING_FILE):
            try:
                schema = json.loads((directory / name).read_bytes()).get("schema")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(schema, int) and schema > SCHEMA_VERSION:
                return True
    return False


def _named_gs_keys(extensions: Path) -> set[str] | None:
    """The guest-services dirs named by the records and pending records under ``extensions`` (an installed
    extension's, an update's old and new versions, an interrupted install's or removal's); None if one of them
    cannot be read (it may name any)."""
    named: set[str] = set()
    try:
        entries = os.listdir(extensions)
    except FileNotFoundError:
        return named
    for entry in entries:
        for name in (RECORD_FILE, PENDING_FILE):
            try:
                data = json.loads((extensions / entry / name).read_bytes())
            except (FileNotFoundError, NotADirectoryError):
                continue
            except (OSError, ValueError):
                return None
            vm = data.get("vm") if isinstance(data, dict) else None
            if isinstance(vm, dict) and isinstance(vm.get("gs_key"), str):
                named.add(vm["gs_key"])
            elif vm is not None:
                return None  # not a shape this dockext knows
    return named


def _read_record(target: Path, name: str = RECORD_FILE) -> Record | None:
    try:
        return Record.from_json(json.loads((target / name).read_bytes()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, DockextError):
        return None
