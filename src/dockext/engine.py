"""Adapter for the Docker Engine API (through :mod:`.engineapi`). Every engine error is translated here
(:meth:`Engine.errors`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlparse

from . import archive, dockerhost, sshdial
from .dockerhost import DockerHost
from .engineapi import (
    APIError,
    BrokenAnswer,
    EngineAPI,
    NotFound,
    TransportError,
    Unreachable,
    demux,
    name_in_path,
    registry_auth,
)
from .errors import DockextError, EngineError, EngineUnavailable, ImageNotFound
from .logins import Login, login_command, login_for
from .model import ImageRef, is_loopback

if TYPE_CHECKING:  # registry.py brings httpx: imported when a listing asks, not at every command's start
    from .registry import Insecure

__all__ = ["Engine", "ImageFiles", "LoadOutput", "PullEvent", "TagSnapshot"]

PullEvent = dict[str, Any]
#: on dockext's one-off containers (copying files out of an image, emptying a guest-services dir): the dockext home
#: they belong to (Installer.owner), for the recovery after a kill (the name is older than the second kind)
ONE_OFF_LABEL = "dockext.copy"
HELPER_LABEL = "dockext.helper"  # on dockext's own services in an extension's project (sockperm.py)
#: what engines answer a pull that needed a login it did not have, or refused the one it had (Docker: no login
#: for a Basic registry, a token without access, Docker Hub's private-or-missing repository; Podman's words too)
_LOGIN_WANTED = re.compile(r"no basic auth credentials|unauthorized|authentication required|access to the resource "
                           r"is denied|may require 'docker login'|invalid username/password", re.IGNORECASE)


#: ``1`` or ``0``: whether the engine's containers can see this host's file system (see :attr:`Engine.remote`).
REMOTE_ENV = "DOCKEXT_REMOTE_ENGINE"


def is_remote(host: str, override: str | None = None) -> bool:
    """Whether backends of the engine at ``host`` must be reached through a relay (docs/design.md, "Remote
    engines"): any engine not reached through a unix socket, or reached through the socket of another user's engine
    (a rootless engine, root's dockext on a user's: it and its containers run as that user, who cannot see this
    user's private home), unless ``DOCKEXT_REMOTE_ENGINE`` says otherwise (``1`` for a unix socket that leads
    elsewhere, such as one forwarded by ``ssh -L``)."""
    if override is not None and override.strip() != "":
        value = override.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise DockextError(f"{REMOTE_ENV}={override!r} is neither 1 nor 0",
                           hint=f"Unset {REMOTE_ENV} to decide from DOCKER_HOST, or set it to 1 or 0.")
    parsed = urlparse(host)
    if parsed.scheme != "unix":
        return True
    try:
        owner = os.stat(parsed.path).st_uid
    except OSError:
        return False  # not there: nothing to reach either way
    return owner not in (0, os.geteuid())


#: Where other engines of this machine listen, by what they are: ``{runtime}`` is ``$XDG_RUNTIME_DIR``
OTHER_ENGINES = (
    ("A rootless engine of yours", "{runtime}/docker.sock"),  # dockerd-rootless.sh
    ("Your Podman service", "{runtime}/podman/podman.sock"),  # `podman system service` (podman.socket)
    ("The machine's Podman service", "/run/podman/podman.sock"),
)


def other_engines() -> list[tuple[str, str]]:
    """The engines of :data:`OTHER_ENGINES` this user can connect to: (what, socket path). A socket nothing
    listens on (the file a crashed engine left) or this user may not use is not one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    found = []
    for what, pattern in OTHER_ENGINES:
        path = pattern.format(runtime=runtime)
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                probe.connect(path)
        except OSError:
            continue
        found.append((what, path))
    return found


class Engine:
    """One connection to the engine dockext manages (:func:`dockext.dockerhost.resolve`: ``$DOCKER_HOST``, the
    current docker context, or the default unix socket)."""

    def __init__(self, target: DockerHost | str | None = None) -> None:
        if target is None:
            target = dockerhost.resolve()
        elif isinstance(target, str):
            target = DockerHost(target)
        self.target = target
        self.host = target.url
        self._client: EngineAPI | None = None
        self._info_cache: dict[str, Any] | None = None

    # -- connection ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool (a client made on the next use)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> EngineAPI:
        """The Engine API client (:mod:`.engineapi`), made on first use; it asks the engine nothing until a
        request is made. Its errors are turned into dockext's by :meth:`errors`."""
        if self._client is None:
            url = sshdial.dialer_for(self.target.url).host if self.target.scheme == "ssh" else self.target.url
            try:
                self._client = EngineAPI(url, ssl_context=self.target.ssl_context(), timeout=300)
            except ValueError as exc:
                raise DockextError(
                    f"cannot make a client for the engine at {self.target.describe()}: {exc}",
                    hint="Set DOCKER_HOST to unix:///path/to/docker.sock, tcp://HOST:PORT or ssh://USER@HOST, "
                         "or choose another context with `docker context use`.") from None
        return self._client

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        why = _short(exc)
        if self.target.scheme == "ssh":
            why = sshdial.dialer_for(self.target.url).last_error or why
        hint = "Is dockerd running, and may this user use it (member of the 'docker' group)? " \
               "Set DOCKER_HOST (or `docker context use`) to use another engine."
        for what, path in other_engines() if self.target.source == "default" else []:
            hint += f" {what} listens on {path}: use it with DOCKER_HOST=unix://{path}."
        return EngineUnavailable(f"cannot reach the Docker engine at {self.target.describe()}: {why}", hint=hint)

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """The Engine API client's errors as dockext's (:mod:`.errors`): EngineUnavailable when the engine cannot
        be reached (with what to do), EngineError naming ``doing`` when it refuses or answers nonsense."""
        try:
            yield
        except DockextError:
            raise
        except Unreachable as exc:
            raise self._unavailable(exc) from None
        except BrokenAnswer as exc:  # a read timeout, a broken answer
            raise EngineError(f"{doing}: the engine did not answer properly: {_short(exc)}") from None
        except APIError as exc:
            raise EngineError(f"{doing}: {_short(exc)}") from None

    @property
    def remote(self) -> bool:
        """True when the engine's containers cannot see this host's files: backend sockets are then reached
        through a relay container instead of a directory bind-mounted from here."""
        return is_remote(self.host, os.environ.get(REMOTE_ENV))

    def ping(self) -> None:
        with self.errors("ping the engine"):
            self.client.ping()

    @property
    def socket_path(self) -> str:
        """The engine's unix socket on the engine's host: what ``/var/run/docker.sock.raw`` maps to."""
        parsed = urlparse(self.host)
        if parsed.scheme == "unix" and parsed.path:
            return parsed.path
        return "/var/run/docker.sock"

    # -- images --------------------------------------------------------------------------------------
    def find_image(self, ref: str) -> dict[str, Any] | None:
        with self.errors(f"inspect image {ref}"):
            try:
                return self.client.inspect_image(ref)
            except NotFound:
                return None

    def pull(self, ref: ImageRef, on_event: Callable[[PullEvent], None] | None = None) -> dict[str, Any]:
        """Pull ``ref`` with the login the Docker CLI saved for its registry (:mod:`.logins`; looked up here, once,
        so that a credential helper that fails says so in dockext's words), as ``docker pull`` would."""
        repo = ref.name
        tag = ref.digest or ref.tag or "latest"
        saved = login_for(ref.registry)
        auth: dict[str, str] = {}  # anonymous: an empty X-Registry-Auth
        if saved is not None:
            auth = ({"IdentityToken": saved.secret} if saved.identity_token
                    else {"username": saved.username, "password": saved.secret})
        with self.errors(f"pull {ref.pull_ref}"):
            try:
                with self.client.open("POST", "/images/create", {"fromImage": repo, "tag": tag},
                                      headers={"X-Registry-Auth": registry_auth(auth)}) as answer:
                    for event in answer.messages():
                        if "error" in event:
                            raise ImageNotFound(f"cannot pull {ref.pull_ref}: {event['error']}",
                                                hint=self._pull_hint(ref, str(event["error"]), saved))
                        if on_event:
                            on_event(event)
            except APIError as exc:
                why = _short(exc)
                raise ImageNotFound(f"cannot pull {ref.pull_ref}: {why}",
                                    hint=self._pull_hint(ref, why, saved)) from None
        found = self.find_image(ref.pull_ref)
        if found is None:
            raise ImageNotFound(f"image {ref.pull_ref} is not available after pulling it")
        return found

    def _pull_hint(self, ref: ImageRef, why: str = "", saved: Login | None = None) -> str:
        """What to do about a failed pull; a registry on loopback seen from an engine on another machine gets
        its own words (that engine pulls from its own loopback: the registry here is out of its reach), and so
        does a plain-HTTP registry the engine would reach over HTTPS (Docker allows HTTP on loopback by itself,
        Podman on no address unless told), and a registry that wants a login (``saved``: the one sent)."""
        if is_loopback(ref.registry) and self.remote and not is_loopback(urlparse(self.target.url).hostname):
            return (
                f"{ref.registry} is a loopback address, and the engine at {self.target.describe()} pulls from its "
                "own machine, not this one. Push the image to a registry the engine can reach, or install it "
                f"offline: `docker save {ref.pull_ref} -o ext.tar` here, then `dockext install ./ext.tar`."
            )
        if "server gave HTTP response to HTTPS client" in why:
            with contextlib.suppress(DockextError):
                if self.podman:
                    return (f"The registry {ref.registry} speaks plain HTTP, which Podman uses only for registries "
                            f"marked insecure: add [[registry]] location = \"{ref.registry}\" insecure = true to "
                            "/etc/containers/registries.conf (or ~/.config/containers/registries.conf for a "
                            "rootless Podman), then restart its service.")
            return (f"The registry {ref.registry} speaks plain HTTP: list it in \"insecure-registries\" of the "
                    "engine's daemon.json (/etc/docker/daemon.json) and restart the engine.")
        if _LOGIN_WANTED.search(why):
            name, command = ref.registry or "docker.io", login_command(ref.registry)
            if saved is not None:
                return (f"{name} refused {saved.who} (from {saved.where}): log in again, with an account that may "
                        f"pull {ref.name}: {command}")
            return (f"{name} needs a login: {command} (dockext gives the engine the login the Docker CLI saved). A "
                    "repository that does not exist can get this answer too: check the name.")
        return "Check the image name and tag, and that you are logged in to its registry."

    @contextlib.contextmanager
    def image_files(self, image_id: str, owner: str) -> Iterator[ImageFiles]:
        """A never-started container of the image, to copy files out of; removed on exit.

        Images built ``FROM scratch`` have no shell and often no CMD: the container gets a dummy command,
        which is never run.
        """
        with self.errors("create a container to read the image"):
            ctr = self.client.post("/containers/create", json_body={
                "Image": image_id, "Cmd": ["/dockext-copy-only"], "Labels": {ONE_OFF_LABEL: owner},
                "NetworkDisabled": True})
        try:
            yield ImageFiles(self, ctr["Id"])
        finally:
            with contextlib.suppress(APIError, TransportError):
                self.client.remove_container(ctr["Id"])

    def gc_one_off_containers(self, owner: str, wait: float = 5.0) -> None:
        """Remove the one-off containers (:data:`ONE_OFF_LABEL`) left by a dockext process of ``owner`` that was
        killed, and wait (at most ``wait`` s) until they are gone: one the killed process was removing is still
        listed while the engine finishes."""
        deadline = time.monotonic() + wait
        while True:
            with self.errors("list containers"):
                left = self.client.containers(all=True, filters={"label": f"{ONE_OFF_LABEL}={owner}"})
            if not left or time.monotonic() > deadline:
                return
            for c in left:
                with self.errors("remove a container"), contextlib.suppress(APIError):  # 409: being removed
                    self.client.remove_container(c["Id"])
            time.sleep(0.1)

    # -- projects ------------------------------------------------------------------------------------
    def project_containers(self, project: str) -> list[dict[str, Any]]:
        with self.errors("list containers"):
            return self.client.containers(all=True, filters={"label": f"com.docker.compose.project={project}"})

    def backend_containers(self) -> list[dict[str, Any]]:
        """Every extension backend's containers (``docker ps -a`` objects), without dockext's own helpers in
        their projects (the socket-permission sidecar, a remote engine's relay)."""
        return [c for c in self._extension_containers() if HELPER_LABEL not in (c.get("Labels") or {})]

    def backend_mount_sources(self) -> set[str]:
        """Where on the engine's machine the mounts of every extension backend's containers (running or not, its
        helpers included) come from (bind mounts: a host path; volumes: the volume's directory)."""
        return {str(m.get("Source") or "") for c in self._extension_containers() for m in c.get("Mounts") or []} - {""}

    def _extension_containers(self) -> list[dict[str, Any]]:
        with self.errors("list containers"):
            return self.client.containers(all=True, filters={"label": "com.docker.desktop.extension=true"})

    def project_volumes(self, project: str) -> set[str]:
        with self.errors("list volumes"):
            found = self.client.get("/volumes", {"filters": {"label": f"com.docker.compose.project={project}"}})
        return {v["Name"] for v in (found or {}).get("Volumes") or []}

    def remove_volumes(self, names: set[str]) -> None:
        """Remove these volumes; one that is gone or in use is left. Raises if the engine does not answer."""
        for name in names:
            with self.errors(f"remove volume {name}"), contextlib.suppress(APIError):
                self.client.delete(f"/volumes/{name}", {"force": True})

    def exec_run(self, container: str, cmd: list[str]) -> tuple[int, str]:
        """Run ``cmd`` in a running container and wait: its exit code and its stderr (stdout is not kept)."""
        with self.errors(f"run {cmd[0]} in {container}"):
            try:
                exec_id = self.client.post(f"/containers/{container}/exec", json_body={
                    "AttachStdin": False, "AttachStdout": False, "AttachStderr": True, "Tty": False, "Cmd": cmd,
                })["Id"]
                with self.client.open("POST", f"/exec/{exec_id}/start", json_body={"Detach": False, "Tty": False}
                                      ) as answer:
                    err = demux(answer.read())
                code = self.client.get(f"/exec/{exec_id}/json").get("ExitCode")
            except APIError as exc:  # no such container, or not running
                return -1, _short(exc)
        text = err.decode(errors="replace")
        return (code if isinstance(code, int) else -1), text

    def container_logs(self, container_id: str, tail: int = 20) -> str:
        with contextlib.suppress(APIError, TransportError, DockextError):
            return self.client.logs(container_id, tail=tail).decode(errors="replace")
        return ""

    # -- offline install: `docker save` tarballs -----------------------------------------------------
    def _info(self) -> dict[str, Any]:
        """``GET /info``, asked once."""
        if self._info_cache is None:
            with self.errors("ask the engine about itself"):
                self._info_cache = dict(self.client.get("/info"))
        return self._info_cache

    def insecure_registries(self) -> Insecure | None:
        """The registries the engine reaches without verified TLS (daemon.json's ``insecure-registries``), asked
        now (not the cached ``/info``: the list changes with a restart of the engine, not of dockext); None when
        the engine does not answer (the Marketplace then reads loopback registries alone without TLS)."""
        from .registry import Insecure

        try:
            with self.errors("ask the engine about its registries"):
                return Insecure.of(self.client.get("/info").get("RegistryConfig"))
        except DockextError:
            return None

    @property
    def podman(self) -> bool:
        """A Podman service (``podman system service``), which answers the Docker Engine API: its ``GET /info``
        alone carries ``BuildahVersion``."""
        return "BuildahVersion" in self._info()

    @property
    def host_gateway(self) -> bool:
        """Whether ``extra_hosts`` may name ``host-gateway`` (the engine's host): Docker Engine 20.10 and later.
        Podman is left out: it maps ``host.containers.internal`` (and in recent versions ``host.docker.internal``)
        itself, and older versions refuse ``host-gateway`` ("invalid IP address in add-host", podman#14390)."""
        if self.podman:
            return False
        version = self._docker_version()
        return version is None or version[:2] >= (20, 10)  # None: a build that names itself otherwise, a current one

    def internal_dns_leaks(self) -> str | None:
        """This engine's version when it forwards the DNS queries of containers on internal networks to the host's
        resolvers (CVE-2024-29018: fixed in Docker Engine 23.0.11, 25.0.5 and 26.0), so a backend whose
        ``network`` grant is denied can still send data out in the names it looks up; None when it does not."""
        version = None if self.podman else self._docker_version()
        if version is None or version[2] is None:
            return None
        v = (version[0], version[1], version[2])
        leaks = v < (23, 0, 11) or v[0] == 24 or (25, 0, 0) <= v < (25, 0, 5)
        return str(self._info().get("ServerVersion")) if leaks else None

    def _docker_version(self) -> tuple[int, int, int | None] | None:
        """``GET /info``'s ServerVersion as (major, minor, patch or None): ``20.10.24+dfsg1`` is (20, 10, 24)."""
        found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(self._info().get("ServerVersion") or ""))
        if not found:
            return None
        major, minor, patch = found.groups()
        return int(major), int(minor), int(patch) if patch is not None else None

    def identity(self) -> str:
        """The engine's own ID (``GET /info`` ``ID``): one engine has one, through whatever address reaches it
        (its socket, a TCP port, ssh), so an extension's backend can be told to be on another engine.

        Podman answers a new random ID at every call, so there the machine's name and the storage root stand for
        it (a rootful and a rootless Podman of one machine keep their containers in different roots)."""
        info = self._info()
        if self.podman:
            return f"podman:{info.get('Name') or ''}:{info.get('DockerRootDir') or ''}"
        return str(info.get("ID") or "")

    def kernel(self) -> str:
        """The kernel the engine runs on (``GET /info`` ``KernelVersion``): another than this machine's is a VM's
        (Docker Desktop, Colima, Lima) or another machine's behind a forwarded socket."""
        return str(self._info().get("KernelVersion") or "")

    def _security_option(self, name: str) -> bool:
        options = self._info().get("SecurityOptions") or []
        return any(isinstance(o, str) and f"name={name}" in o.split(",") for o in options)

    @property
    def rootless(self) -> bool:
        """A rootless engine (``dockerd-rootless.sh``): its containers' root is the user who runs it, so a file a
        backend creates as root is that user's on this host, and container uid N is one of its subordinate ids.
        Rootless Podman says so in ``Rootless`` (``SecurityOptions`` names only seccomp there)."""
        return self._security_option("rootless") or self._info().get("Rootless") is True

    @property
    def userns_remapped(self) -> bool:
        """An engine run with ``--userns-remap``: container uid N is a subordinate id (``dockremap``'s, 165536 + N
        by default), so no uid inside a container is an ordinary user's of this host."""
        return self._security_option("userns")

    @property
    def containerd_images(self) -> bool:
        """An engine that keeps its images in containerd (the containerd image store: an option since Docker 24,
        the default of new installs since 29; ``GET /info`` says ``driver-type: io.containerd.snapshotter.v1``).
        There an image's ID is its manifest's digest, not its config's (docker/cli#5526)."""
        status = self._info().get("DriverStatus") or []
        return any(isinstance(p, list) and p[:2] == ["driver-type", "io.containerd.snapshotter.v1"] for p in status)

    def image_config(self, ref: str) -> str | None:
        """The digest of ``ref``'s config (what a ``docker save`` file or an OCI layout names it by), None if the
        engine has no such image: its ID on the classic image store, else read from the engine's export of it."""
        found = self.find_image(ref)
        if found is None:
            return None
        return self.config_digest(ref) if self.containerd_images else str(found.get("Id") or "") or None

    def platform(self) -> str:
        """The engine's platform as an image index names it: ``linux/amd64``."""
        with self.errors("ask the engine's version"):
            version = self.client.get("/version")
        return f"{version.get('Os', 'linux')}/{version.get('Arch', 'amd64')}"

    def load_image(
        self,
        path: Path,
        on_event: Callable[[PullEvent], None] | None = None,
        made: tuple[BinaryIO, int] | None = None,
    ) -> LoadOutput:
        """``POST /images/load`` of the file at ``path`` (a ``docker save`` tar, maybe compressed), or of
        ``made``: an archive made as it is read (a stream and its exact size; ``path`` then only names it).

        The file is streamed from disk in small blocks, never read whole, and never extracted here: the
        engine unpacks it. ``on_event`` gets pull-like progress events: ``{"id": <file name>, "status":
        "Sending", "progressDetail": {"current", "total"}}`` while the file is sent, then the engine's own
        (``Loading layer``). An error the engine reports (a truncated or corrupt tar, no image in it) is
        returned in :attr:`LoadOutput.error` with what was loaded before it; only an unreachable engine raises,
        and a :class:`DockextError` the made stream raises ends the upload and is raised as it is.
        """
        output = LoadOutput()
        with contextlib.ExitStack() as stack:
            if made is None:
                f: BinaryIO = stack.enter_context(open(path, "rb"))
                size = os.fstat(f.fileno()).st_size
            else:
                f, size = made
            stack.enter_context(self.errors(f"load {path}"))
            body = _UploadBody(f, size, path.name, on_event)
            try:
                with self.client.open("POST", "/images/load", {"quiet": False}, body=body, headers={
                        "Content-Type": "application/x-tar", "Content-Length": str(size)}) as answer:
                    for event in answer.messages():
                        if "error" in event or "errorDetail" in event:
                            detail = event.get("errorDetail") or {}
                            output.error = str(detail.get("message") or event.get("error") or "unknown error")
                            break
                        if isinstance(event.get("stream"), str):
                            output.messages.extend(line for line in event["stream"].splitlines() if line.strip())
                        elif on_event and event.get("progressDetail"):
                            on_event(event)
            except APIError as exc:
                output.error = _short(exc)
            except _FileShrank:
                body.changed = True
            if body.changed or (made is None and output.error and os.fstat(f.fileno()).st_size != body.size):
                raise DockextError(
                    f"{path} changed while it was being loaded", hint="Try again once nothing writes to it."
                )
        return output

    def config_digest(self, ref: str) -> str | None:
        """The digest of ``ref``'s config, read from the engine's export of the image (``GET /images/{ref}/get``,
        what ``docker save`` writes), or None if the export does not name it. On the classic image store that is
        the image's ID; on the containerd image store (Docker 24+, the default of new installs since 29) the ID
        is its manifest's digest instead (docker/cli#5526), and only the export still says which config it is.
        The export is read to its end, never kept: its ``manifest.json`` comes after the layers."""
        found: str | None = None
        with self.errors(f"export image {ref}"), self.client.open("GET", f"/images/{name_in_path(ref)}/get"
                                                                   ) as answer:
            chunks = answer.chunks()
            try:
                # the engine's own archive of an image it holds: no cap (archive.py's are for extension files)
                with tarfile.open(fileobj=archive.ChunkReader(chunks, None, f"export of {ref}"), mode="r|") as tar:
                    for member in tar:
                        if member.name == "manifest.json" and member.isfile() and member.size <= MAX_MANIFEST:
                            f = tar.extractfile(member)
                            found = _config_of(json.load(f)) if f is not None else None
            except (tarfile.TarError, ValueError, OSError) as exc:
                raise EngineError(f"export image {ref}: the engine sent an archive that cannot be read ({exc})"
                                  ) from None
        return found

    def tag_snapshot(self) -> TagSnapshot:
        """Which tags and image IDs the engine has now (to undo a load that is not used)."""
        with self.errors("list images"):
            images = self.client.get("/images/json", {"all": True})
        snap = TagSnapshot()
        for image in images:
            image_id = str(image.get("Id", ""))
            snap.ids.add(image_id)
            for tag in image.get("RepoTags") or []:
                if tag != "<none>:<none>":
                    snap.tags[tag] = image_id
        return snap

    def undo_load(self, before: TagSnapshot, refs: list[str], ids: list[str], keep: set[str]) -> None:
        """Put the tags ``refs`` (and the untagged images ``ids``) a load gave back as they were ``before``.

        A tag the load moved goes back to its old image; a tag it created is removed, and with it the
        image when the load brought it (an image that was already there stays), unless the tag is in ``keep``
        (in use by an installed extension). Best effort: whatever the engine refuses is left as it is.
        """
        for ref in refs:
            with contextlib.suppress(APIError, TransportError):
                now = self.client.inspect_image(ref)
                now_id, old_id = str(now["Id"]), before.tags.get(ref)
                if old_id == now_id:
                    continue
                if old_id is not None:
                    repository, _, tag = ref.rpartition(":")
                    self.client.post(f"/images/{old_id}/tag", {"repo": repository, "tag": tag, "force": True})
                    still = self.client.inspect_image(now_id)
                    if now_id not in before.ids and not still.get("RepoTags"):
                        self.client.remove_image(now_id)
                elif ref not in keep and (now_id not in before.ids or len(now.get("RepoTags") or []) > 1):
                    self.client.remove_image(ref)
        for image_id in ids:
            if image_id not in before.ids:
                with contextlib.suppress(APIError, TransportError):
                    self.client.remove_image(image_id)


class ImageFiles:
    """Files of one image, read through a created (never started) container."""

    def __init__(self, engine: Engine, container_id: str) -> None:
        self.engine = engine
        self.container_id = container_id

    @contextlib.contextmanager
    def _archive(self, path: str, what: str) -> Iterator[Iterator[bytes] | None]:
        """``GET /containers/{id}/archive`` of ``path`` as chunks (None if there is no such path), its answer
        closed on exit. An answer left open when its reader stops early (a file over a limit, an unsafe member)
        makes the engine wait to write the rest, and removing the container waited with it, for the client's
        300 s (found in a security review, with a 3 GB file in a UI, when the docker SDK read it): the
        connection is closed instead."""
        with contextlib.ExitStack() as stack:
            with self.engine.errors(f"read {what} from the image"):
                answer = stack.enter_context(self.engine.client.open(
                    "GET", f"/containers/{self.container_id}/archive", {"path": path}, missing_ok=True))
            yield None if answer.status == 404 else answer.chunks()

    def read(self, path: str, what: str, limit: int = 4 << 20) -> bytes | None:
        """Content of one regular file (through the same checked extraction), or None if it does not exist."""
        with tempfile.TemporaryDirectory(prefix="dockext-read-") as tmp:
            dest = Path(tmp) / "file"
            if not self.copy_file(path, dest, what, executable_ok=False, limits=archive.Limits(max_file=limit)):
                return None
            return dest.read_bytes()

    def copy_tree(self, path: str, dest: Path, what: str) -> bool:
        with self._archive(path, what) as chunks, self.engine.errors(f"read {what} from the image"):
            if chunks is None:
                return False
            archive.extract_tree(chunks, dest, member=Path(path).name or "/", what=what)
        return True

    def copy_file(
        self, path: str, dest: Path, what: str, *, executable_ok: bool = True, limits: archive.Limits | None = None
    ) -> bool:
        with self._archive(path, what) as chunks, self.engine.errors(f"read {what} from the image"):
            if chunks is None:
                return False
            archive.extract_file(chunks, dest, what=what, executable_ok=executable_ok,
                                 limits=limits or archive.Limits())
        return True


def _short(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else type(exc).__name__


@dataclass
class LoadOutput:
    """What ``POST /images/load`` answered: its message lines (``Loaded image: repo:tag``, ``Loaded image ID:
    sha256:...``, ``The image ... already exists, renaming the old one ...``) and the error it ended with."""

    messages: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class TagSnapshot:
    tags: dict[str, str] = field(default_factory=dict)  # "repo:tag" (as the engine lists it) -> image ID
    ids: set[str] = field(default_factory=set)


MAX_MANIFEST = 1 << 20  # bytes of an export's manifest.json (a few hundred for one image)
#: a config's name in an export: ``<hex>.json`` (classic store) or ``blobs/sha256/<hex>`` (OCI layout, Docker 25+)
_CONFIG_NAME = re.compile(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?")


def _config_of(manifest: object) -> str | None:
    """``sha256:<hex>`` of the one image an export's ``manifest.json`` lists, else None."""
    if not (isinstance(manifest, list) and len(manifest) == 1 and isinstance(manifest[0], dict)):
        return None
    config = manifest[0].get("Config")
    match = _CONFIG_NAME.fullmatch(config) if isinstance(config, str) else None
    return f"sha256:{match.group(1)}" if match else None


class _FileShrank(Exception):
    pass


class _UploadBody:
    """A file as a request body: ``read`` in blocks (no more than ``size``, its size when opened), with progress.
    ``http.client`` sends it as a file: block after block, until ``read`` gives nothing."""

    BLOCK = 1 << 20
    EVERY = 4 << 20  # bytes between two progress events

    def __init__(self, f: BinaryIO, size: int, name: str, on_event: Callable[[PullEvent], None] | None) -> None:
        self.f = f
        self.name = name
        self.on_event = on_event
        self.size = size
        self.sent = 0
        self.reported = 0
        self.changed = False

    def read(self, n: int = -1) -> bytes:
        # never more than a block, even when asked for "everything": the file is never held whole in memory
        left = self.size - self.sent
        want = min(self.BLOCK, left) if n is None or n < 0 else min(n, self.BLOCK, left)
        data = self.f.read(want) if want > 0 else b""
        if want > 0 and len(data) < want:
            # The file shrank: less than the announced length would leave the engine waiting for the rest.
            raise _FileShrank
        self.sent += len(data)
        # small files get no progress at all; big ones an event every few MB and one at the end
        if self.on_event and (self.sent - self.reported >= self.EVERY or (not data and 0 < self.reported < self.sent)):
            self.reported = self.sent
            self.on_event(
                {"id": self.name, "status": "Sending", "progressDetail": {"current": self.sent, "total": self.size}}
            )
        return data
