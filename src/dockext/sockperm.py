"""The socket-permission sidecar used when dockext runs as an ordinary user.

Extension backends run as root and create their sockets in the guest-services dir as ``root 0755``; an
ordinary user cannot ``connect()`` to those. Install then adds one more service to the extension's compose
project: the static helper ``helpers/sockperm-linux-<arch>`` (source ``helpers/sockperm.c``, built by
``tools/build-helpers.sh``) in a ``FROM scratch`` image that dockext builds locally. It watches
``/run/guest-services`` and gives each socket to dockext's uid (see docs/design.md).
"""

from __future__ import annotations

import hashlib
import io
import platform
import tarfile
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from . import errors

__all__ = ["GUEST_SERVICES", "IMAGE_REPO", "LABEL", "binary_path", "ensure_image", "service"]

IMAGE_REPO = "dockext/sockperm"
#: Label on the image and on the compose service, so both can be found (and cleaned up) by filter.
LABEL = "dockext.helper"
GUEST_SERVICES = "/run/guest-services"

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


def ensure_image(client: docker.DockerClient) -> str:
    """Build the helper image unless it exists; return its tag (``dockext/sockperm:<sha256[:12]>``).

    The binary matches the engine's architecture, which is where the image runs.
    """
    try:
        binary = binary_path(str(client.version().get("Arch") or platform.machine())).read_bytes()
        tag = f"{IMAGE_REPO}:{hashlib.sha256(binary).hexdigest()[:12]}"
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            client.images.build(fileobj=_context(binary), custom_context=True, tag=tag, rm=True, forcerm=True)
    except requests.exceptions.ConnectionError as exc:
        raise errors.EngineUnavailable(
            f"cannot reach the Docker engine: {exc}", hint="is dockerd running, and DOCKER_HOST right?"
        ) from exc
    except docker.errors.DockerException as exc:
        raise errors.EngineError(f"cannot build the socket-permission helper image: {exc}") from exc
    return tag


def service(image: str, uid: int, gid: int) -> dict[str, Any]:
    """The compose service running the helper on the guest-services dir for ``uid:gid``.

    The compose rewrite adds the guest-services bind mount to every service, this one included.
    """
    return {
        "image": image,
        "command": [GUEST_SERVICES, str(uid), str(gid)],
        "network_mode": "none",
        "restart": "always",
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"],
        "labels": {LABEL: "sockperm"},
    }


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
