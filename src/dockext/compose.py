"""Compose files for extension backends: generation for ``vm.image`` and the rewrites of reference §3.2.

Pure functions over the parsed YAML document: no I/O, so every rule is unit-tested without an engine.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from . import goyaml
from .errors import MetadataError

__all__ = [
    "GS_VOLUME",
    "GUEST_SERVICES",
    "HOST_ALIAS",
    "PLACEHOLDER",
    "RAW_SOCKET_SOURCES",
    "Rewritten",
    "extension_labels",
    "generated",
    "guest_services_bind",
    "guest_services_volume",
    "load_yaml",
    "parse",
    "rewrite",
]

PLACEHOLDER = "${DESKTOP_PLUGIN_IMAGE}"
#: Service keys that read files where Compose runs (a build context, env and label files): dropped
LOCAL_FILE_KEYS = ("build", "env_file", "label_file")
#: The name Docker Desktop gives the host in every container; a plain engine resolves it only when asked to
#: (``extra_hosts: host.docker.internal:host-gateway``, Docker 20.10 and later).
HOST_ALIAS = "host.docker.internal"
GUEST_SERVICES = "/run/guest-services"
#: Paths a compose file uses for the engine socket inside Docker Desktop's VM; all map to our engine's socket.
RAW_SOCKET_SOURCES = ("/var/run/docker.sock.raw", "/run/docker.sock.raw", "/var/run/docker.sock", "/run/docker.sock")
#: The project volume holding ``/run/guest-services`` when the engine is remote: a tmpfs, so that sockets a
#: backend left behind vanish when the project's containers stop (as a fresh directory does locally).
GS_VOLUME = "dockext-guest-services"
GS_VOLUME_SPEC: dict[str, Any] = {
    "driver": "local",
    "driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "mode=1777,size=64m"},
    "labels": {"dockext.guest-services": "true"},
}
#: The same tmpfs's options on Podman, which before 4.8 reads ``size`` among a local volume's options as an XFS
#: project quota, even for a tmpfs, and fails on other file systems: tmpfs's own ``nr_blocks`` (pages) reaches
#: the mount; 64 MiB with 4 KiB pages, a larger cap with larger ones.
PODMAN_GS_VOLUME_OPTIONS = "mode=1777,nr_blocks=16384"


def guest_services_bind(directory: str) -> dict[str, Any]:
    """``/run/guest-services`` as a directory of this host (the engine is local)."""
    return {"type": "bind", "source": directory, "target": GUEST_SERVICES}


def guest_services_volume() -> dict[str, Any]:
    """``/run/guest-services`` as the project's :data:`GS_VOLUME` (the engine is remote)."""
    return {"type": "volume", "source": GS_VOLUME, "target": GUEST_SERVICES}


def generated() -> dict[str, Any]:
    """The compose file for a ``vm.image`` backend: one service running the image.

    ``init: true`` is a dockext choice: backends whose PID 1 ignores SIGTERM (a shell, ``sleep``, Python
    without a handler) would otherwise cost their 10 s stop timeout on every ``rm``.
    """
    return {"services": {"service": {"image": PLACEHOLDER, "init": True}}}


def load_yaml(text: bytes | str) -> Any:
    """A YAML document as Compose reads it (:mod:`.goyaml`); yaml.YAMLError if it is not YAML."""
    return goyaml.load(text)


def parse(text: bytes, field: str = "vm.composefile") -> dict[str, Any]:
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise MetadataError(field, f"the compose file is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise MetadataError(field, "the compose file is not a YAML mapping")
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        raise MetadataError(field, "the compose file defines no services")
    for name, svc in services.items():
        if not isinstance(svc, dict):
            raise MetadataError(field, f"service {name!r} is not a mapping")
    return doc


@dataclass(frozen=True)
class Rewritten:
    document: dict[str, Any]
    first_service: str

    def dump(self) -> bytes:
        header = "# Written by dockext from the extension's compose file; do not edit.\n"
        return (header + goyaml.dump(self.document)).encode()


def extension_labels(key: str, title: str) -> dict[str, str]:
    """Labels every backend container carries (Docker Desktop's, its 2021 name, and dockext's own)."""
    return {
        "com.docker.desktop.extension": "true",
        "com.docker.desktop.extension.name": title,
        "com.docker.desktop.plugin": "true",
        "dockext.extension": key,
    }


def rewrite(
    doc: Mapping[str, Any],
    *,
    key: str,
    project: str,
    image: str,
    title: str,
    engine_socket: str,
    guest_services: Mapping[str, Any],
    extra_services: Mapping[str, dict[str, Any]] | None = None,
    podman: bool = False,
    host_alias: bool = False,
) -> Rewritten:
    """Apply Docker Desktop's "additional compose attributes" to an extension compose file.

    * project ``name``; ``${DESKTOP_PLUGIN_IMAGE}`` replaced by the extension image;
    * on every service: :data:`LOCAL_FILE_KEYS` dropped, the extension labels, ``restart: always`` unless the
      author chose a policy, the
      engine-socket paths of the VM mapped to this engine's socket, and the ``guest_services`` mount
      (:func:`guest_services_bind` or :func:`guest_services_volume`) at ``/run/guest-services``, replacing
      any mount the file made there itself; with the volume, :data:`GS_VOLUME` is declared too (with
      :data:`PODMAN_GS_VOLUME_OPTIONS` when the engine is ``podman``);
    * the first service (in the author's order) is named ``<project>-service`` unless it has a name;
    * with ``host_alias`` (an engine that knows ``host-gateway``), :data:`HOST_ALIAS` resolves to the engine's
      host in every service with a network of its own, as in Docker Desktop, unless the file maps it itself.
    """
    out = copy.deepcopy(dict(doc))
    out["name"] = project
    services: dict[str, Any] = out["services"]
    first = next(iter(services))
    labels = extension_labels(key, title)
    gs = dict(guest_services)
    for name, svc in list(services.items()):
        services[name] = _rewrite_service(svc, image, labels, engine_socket, gs, host_alias)
    services[first].setdefault("container_name", f"{project}-service")
    for name, svc in (extra_services or {}).items():
        if name in services:
            raise MetadataError("vm.composefile", f"service name {name!r} is reserved by dockext")
        services[name] = _rewrite_service(copy.deepcopy(svc), image, labels, engine_socket, gs, host_alias)
    if gs.get("type") == "volume":
        volumes = out.get("volumes")
        volumes = dict(volumes) if isinstance(volumes, dict) else {}
        if GS_VOLUME in volumes:
            raise MetadataError("vm.composefile", f"volume name {GS_VOLUME!r} is reserved by dockext")
        volumes[GS_VOLUME] = copy.deepcopy(GS_VOLUME_SPEC)
        if podman:
            volumes[GS_VOLUME]["driver_opts"]["o"] = PODMAN_GS_VOLUME_OPTIONS
        out["volumes"] = volumes
    return Rewritten(out, first)


def _rewrite_service(
    svc: dict[str, Any], image: str, labels: Mapping[str, str], engine_socket: str, guest_services: dict[str, Any],
    host_alias: bool = False,
) -> dict[str, Any]:
    if isinstance(svc.get("image"), str):
        svc["image"] = svc["image"].replace(PLACEHOLDER, image).replace("$DESKTOP_PLUGIN_IMAGE", image)
    # Only the compose file is read out of the image: the files these name are not beside it, and the paths would
    # be the machine's Compose runs on (dockext's own, on a remote engine: found in a review)
    for key in LOCAL_FILE_KEYS:
        svc.pop(key, None)
    svc["labels"] = {**_labels_dict(svc.get("labels")), **labels}
    deploy = svc.get("deploy")
    if "restart" not in svc and not (isinstance(deploy, dict) and "restart_policy" in deploy):
        svc["restart"] = "always"
    volumes = [_map_engine_socket(v, engine_socket) for v in svc.get("volumes") or []]
    volumes = [v for v in volumes if _mount_target(v) != GUEST_SERVICES]
    volumes.append(dict(guest_services))
    svc["volumes"] = volumes
    if host_alias:
        _add_host_alias(svc)
    return svc


def _add_host_alias(svc: dict[str, Any]) -> None:
    """``host.docker.internal:host-gateway`` in ``extra_hosts``, unless the service maps that name itself or has no
    network of its own (``none``, the host's, another container's or service's: the engine refuses host entries
    for a shared network namespace, and the host's network has the host as ``localhost``)."""
    mode = svc.get("network_mode")
    if isinstance(mode, str) and (mode in ("none", "host") or mode.startswith(("container:", "service:"))):
        return
    hosts = svc.get("extra_hosts")
    if isinstance(hosts, dict):
        if not any(str(name).strip() == HOST_ALIAS for name in hosts):
            svc["extra_hosts"] = {**hosts, HOST_ALIAS: "host-gateway"}
    elif isinstance(hosts, list):
        # "name:ip", "name=ip" (newer Compose) or "name ip"
        if not any(isinstance(h, str) and h.replace("=", ":").replace(" ", ":").split(":", 1)[0].strip() == HOST_ALIAS
                   for h in hosts):
            svc["extra_hosts"] = [*hosts, f"{HOST_ALIAS}:host-gateway"]
    elif hosts is None:
        svc["extra_hosts"] = [f"{HOST_ALIAS}:host-gateway"]


def _labels_dict(labels: Any) -> dict[str, str]:
    if isinstance(labels, dict):
        return {str(k): "" if v is None else str(v) for k, v in labels.items()}
    if isinstance(labels, list):
        out: dict[str, str] = {}
        for item in labels:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return {}


def _mount_target(volume: Any) -> str | None:
    if isinstance(volume, dict):
        target = volume.get("target")
        return str(target).rstrip("/") if target else None
    parts = str(volume).split(":")
    return parts[1].rstrip("/") if len(parts) >= 2 else parts[0].rstrip("/")


def _map_engine_socket(volume: Any, engine_socket: str) -> Any:
    if isinstance(volume, dict):
        if volume.get("source") in RAW_SOCKET_SOURCES:
            return {**volume, "source": engine_socket, "type": volume.get("type", "bind")}
        return volume
    text = str(volume)
    source, sep, rest = text.partition(":")
    if sep and source in RAW_SOCKET_SOURCES:
        return f"{engine_socket}:{rest}"
    return volume

