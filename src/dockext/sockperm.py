"""The socket-permission sidecar used when dockext runs as an ordinary user.

Extension backends run as root and create their sockets in the guest-services dir as ``root 0755``; an
ordinary user cannot ``connect()`` to those. Install then adds one more service to the extension's compose
project: the static helper ``helpers/sockperm-linux-<arch>`` (source ``helpers/sockperm.c``, built by
``tools/build-helpers.sh``) in a ``FROM scratch`` image that dockext builds locally. It watches
``/run/guest-services`` and gives each socket to dockext's uid, or on a rootless engine to the containers' root,
which is dockext's user on the host (see docs/design.md).

The same binary is the **relay** of a remote engine (docs/design.md, "Remote engines"): ``sockperm idle`` is
the PID 1 of a ``dockext-relay`` service sharing the project's guest-services volume, and dockext reaches a
backend socket by an exec of ``sockperm connect PATH`` in it, whose stdin and stdout carry the bytes
(``sockperm probe PATH`` tells whether the socket accepts connections).

And ``sockperm clean DIR`` empties a guest-services dir of this host in a one-off container (:func:`clean`):
what a backend left there as another user, which dockext run as an ordinary user cannot remove.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import platform
import re
import tarfile
from pathlib import Path
from typing import Any

from . import errors
from .engine import HELPER_LABEL, ONE_OFF_LABEL, Engine
from .engineapi import APIError, NotFound, TransportError

__all__ = [
    "GUEST_SERVICES", "IMAGE_REPO", "LABEL", "RELAY_SERVICE", "binary_path", "clean", "connect_command", "ensure_image",
    "probe_command", "relay_service", "service",
]

IMAGE_REPO = "dockext/sockperm"
#: Label on the image and on the compose service, so both can be found (and cleaned up) by filter.
LABEL = HELPER_LABEL
GUEST_SERVICES = "/run/guest-services"
RELAY_SERVICE = "dockext-relay"
#: exit code of ``connect``/``probe`` when the socket refuses; stderr then says ``sockperm: connect ENAME PATH: ...``
REFUSED = 3

_HELPERS = Path(__file__).parent / "helpers"
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_DOCKERFILE = b"""\
FROM scratch
COPY sockperm /sockperm
ENTRYPOINT ["/sockperm"]
LABEL dockext.helper=sockperm
"""


def binary_path(machine: str | None = None) -> Path:
    """The helper binary for ``machine`` (``platform.machine()`` by default, or an engine's ``Arch``)."""
    machine = platform.machine() if machine is None else machine
    arch = _ARCHES.get(machine.lower())
    if arch is None:
        raise errors.DockextError(
            f"no socket-permission helper for the {machine!r} architecture (only amd64 and arm64)",
            hint="run dockext as root, or on an amd64 or arm64 engine",
        )
    path = _HELPERS / f"sockperm-linux-{arch}"
    if not path.is_file():
        raise errors.DockextError(
            f"the socket-permission helper {path} is missing from this dockext installation",
            hint="rebuild it with tools/build-helpers.sh, or reinstall dockext",
        )
    return path


def ensure_image(engine: Engine) -> str:
    """Build the helper image unless it exists; return its tag (``dockext/sockperm:<sha256[:12]>``).

    The binary matches the engine's architecture, which is where the image runs.
    """
    api = engine.client
    with engine.errors("build the socket-permission helper image"):
        binary = binary_path(str(api.get("/version").get("Arch") or platform.machine())).read_bytes()
        tag = f"{IMAGE_REPO}:{hashlib.sha256(binary).hexdigest()[:12]}"
        try:
            api.inspect_image(tag)
        except NotFound:
            context = _context(binary).getvalue()
            with api.open("POST", "/build", {"t": tag, "rm": True, "forcerm": True}, body=context,
                          headers={"Content-Type": "application/x-tar"}) as answer:
                for event in answer.messages():
                    if "error" in event or "errorDetail" in event:
                        detail = event.get("errorDetail") or {}
                        raise errors.EngineError("cannot build the socket-permission helper image: "
                                                 f"{detail.get('message') or event.get('error')}") from None
    return tag


def service(image: str, uid: int, gid: int, *, host_userns: bool = False) -> dict[str, Any]:
    """The compose service running the helper on the guest-services dir for ``uid:gid``.

    The compose rewrite adds the guest-services bind mount to every service, this one included. With
    ``host_userns`` (an engine with ``--userns-remap``, where no container uid is an ordinary user of this host)
    it runs in the host's user namespace, as it would on an engine without remapping: ``uid:gid`` are then this
    host's ids, and its capabilities are those it has everywhere (CHOWN, FOWNER, DAC_OVERRIDE on its one bind
    mount, no network).
    """
    svc: dict[str, Any] = {
        "image": image,
        "command": [GUEST_SERVICES, str(uid), str(gid)],
        "network_mode": "none",
        "restart": "always",
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"],
        "labels": {LABEL: "sockperm"},
    }
    if host_userns:
        svc["userns_mode"] = "host"
    return svc


def clean(engine: Engine, directory: str, *, owner: str, host_userns: bool = False) -> None:
    """Empty ``directory`` (a guest-services dir of this host; it stays) with ``sockperm clean`` in a one-off
    container: no network, read-only, only DAC_OVERRIDE and FOWNER, the directory its one mount. It removes what
    a backend made there as a user dockext is not (root's directories, and the files in them), never following a
    link. ``owner``: the dockext home's (:data:`ONE_OFF_LABEL`), so that the container of a dockext killed while it
    waits is removed by the next recovery. ``host_userns`` as for :func:`service`. Raises EngineError with the
    helper's words if anything stayed.

    The directory is mounted without what is mounted under it (a non-recursive bind). Docker refuses a directory
    that does not exist on its machine (Podman makes it): never ask an engine that does not see this host's files
    (:attr:`Engine.remote`).
    """
    image = ensure_image(engine)
    api = engine.client
    host_config: dict[str, Any] = {
        "NetworkMode": "none", "ReadonlyRootfs": True, "CapDrop": ["ALL"], "CapAdd": ["DAC_OVERRIDE", "FOWNER"],
        "SecurityOpt": ["no-new-privileges:true"],
        "Mounts": [{"Target": GUEST_SERVICES, "Source": directory, "Type": "bind", "ReadOnly": False,
                    "BindOptions": {"NonRecursive": True}}],
    }
    if host_userns:
        host_config["UsernsMode"] = "host"
    with engine.errors(f"cannot empty {directory} with the helper"):
        container = api.post("/containers/create", json_body={
            "Image": image, "Cmd": ["clean", GUEST_SERVICES], "Labels": {LABEL: "clean", ONE_OFF_LABEL: owner},
            "HostConfig": host_config})["Id"]
        try:
            api.post(f"/containers/{container}/start")
            code = api.post(f"/containers/{container}/wait", timeout=60)["StatusCode"]
            said = ""
            if code != 0:
                with contextlib.suppress(APIError, TransportError):
                    said = api.logs(container).decode(errors="replace").strip()
        finally:
            with contextlib.suppress(APIError, TransportError):
                api.remove_container(container)
    if code != 0:
        # the names in the helper's words are the backend's: no control character of theirs reaches a terminal
        said = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", said)
        raise errors.EngineError(f"cannot empty {directory}: {said or f'the helper exited {code}'}")


def relay_service(image: str, container_name: str) -> dict[str, Any]:
    """The compose service a remote engine's backend sockets are reached through (``sockperm idle``).

    It needs no network and no capability but DAC_OVERRIDE (to connect to a socket a non-root backend
    created 0755) and FOWNER (to remove a stale one of another user from the sticky 1777 directory); the
    compose rewrite gives it the guest-services volume like every other service."""
    return {
        "image": image,
        "command": ["idle", GUEST_SERVICES],  # and it removes the sockets a killed backend left there
        "container_name": container_name,
        "network_mode": "none",
        "restart": "always",
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": ["DAC_OVERRIDE", "FOWNER"],
        "security_opt": ["no-new-privileges:true"],
        "labels": {LABEL: "relay"},
    }


def connect_command(socket_name: str) -> list[str]:
    """The exec that joins its stdin and stdout to a backend socket, in the relay container."""
    return ["/sockperm", "connect", f"{GUEST_SERVICES}/{socket_name}"]


def probe_command(socket_name: str) -> list[str]:
    """The exec that exits 0 when the backend socket accepts a connection (else :data:`REFUSED`)."""
    return ["/sockperm", "probe", f"{GUEST_SERVICES}/{socket_name}"]


def refusal(stderr: str) -> tuple[str, str] | None:
    """``(errno name, path)`` from a ``connect``/``probe`` failure line, or None if it is not one."""
    for line in stderr.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "sockperm:" and parts[1] in ("connect", "probe") and parts[2][:1] == "E":
            return parts[2], parts[3].split(":", 1)[0]
    return None


def _context(binary: bytes) -> io.BytesIO:
    """An in-memory, reproducible build context: the Dockerfile and the binary (mode 0755)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in (("Dockerfile", _DOCKERFILE, 0o644), ("sockperm", binary, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf
