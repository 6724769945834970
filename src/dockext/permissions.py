"""What an extension may do on the host, what it asks for, and the user's grants (``dockext permissions``).

Docker Desktop gives every extension everything. dockext keeps that as the default, so that published
extensions work unchanged, but makes it visible and revocable per extension, and enforces it in the server,
where the page cannot reach around it:

* ``docker``: its UI may run ``docker`` commands and read the engine's lists (``ddClient.docker.cli.exec``,
  ``listContainers``, ``listImages`` and the v0 aliases). With it, an extension controls the engine, which on
  most machines means the host. Denied: those calls reject, saying so.
* ``host``: its UI may run the host binaries it ships (``ddClient.extension.host.cli.exec``), as the user
  running dockext. Denied: those calls reject.
* ``web``: its UI's cross-origin web requests (``fetch``, ``XMLHttpRequest`` to other sites, or to ports on
  this machine) are made by the host, as Docker Desktop, which applies no CORS to extension views, lets them
  succeed (:mod:`dockext.server.webfetch`). They reach what this machine reaches. Denied: the browser makes
  them, and its CORS rules apply.
* ``engine``: its *backend* may mount the Docker engine's socket. Denied: the mount is taken out of its compose
  file and the backend runs without it.
* ``system``: its backend may have host access: privileged mode, the host's network, PID, IPC, UTS, user or
  cgroup namespace, host paths, devices, added capabilities, security options, ports published on the
  machine's network. Denied: all of that is taken out of its compose file (named volumes and its socket
  directory stay), and its published ports listen on 127.0.0.1 only.
* ``network``: its backend may reach the network (other machines, the internet), as every container may by
  default. Denied: its project's networks are made internal, so its services reach each other and nothing
  else (:func:`dockext.backendpolicy.restrict`); ``vm.service`` still works (a socket, not the network).

Its own backend (``vm.service``, ``vm.cli.exec``) and the user-mediated calls (file dialog, toasts,
``openExternal``) are always its own. What the backend *asks* for is read from its compose file at install:
:func:`requested` lists it, ``dockext install`` prints it and ``dockext permissions`` shows it, beside what was
withheld (``VmInfo.withheld`` in its record: the backend grants in force when it was last started). The UI
grants are enforced by the server on every call; the backend grants when the backend is (re)created, so
changing one restarts the backend (``Installer.reapply``, an update to the installed version).

Grants live in ``<home>/permissions.json`` (atomic, versioned, 0600) by extension key; an extension without
an entry has the defaults (:data:`DEFAULT`). They stay through updates, and go with ``dockext rm``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from . import backendpolicy
from .errors import DockextError, PermissionDenied
from .paths import Layout
from .store import Store, atomic_write, read_settings, settings_part

__all__ = [
    "BACKEND_NAMES", "DEFAULT", "FILE", "NAMES", "REQUESTED_FILE", "SCHEMA", "UI_NAMES", "Grants", "Requested",
    "check", "forget", "grants_for", "load", "outdated", "read_requested", "requested", "set_grants",
    "set_grants_locked", "withheld",
]

SCHEMA: Final = 1
FILE: Final = "permissions.json"
REQUESTED_FILE: Final = "requested.json"  # in an extension's directory: what its backend asked for at install
UI_NAMES: Final = ("docker", "host", "web")  # enforced by the server, call by call
#: enforced in the backend's compose file, when it is (re)created
BACKEND_NAMES: Final = ("engine", "system", "network")
NAMES: Final = UI_NAMES + BACKEND_NAMES
EXPLAIN: Final = {
    "docker": "run docker commands and read the engine's lists (ddClient.docker)",
    "host": "run the host binaries it ships (ddClient.extension.host.cli.exec)",
    "web": "make web requests from this machine that the browser's CORS rules would refuse",
    "engine": "mount the Docker engine's socket in its backend",
    "system": "give its backend host access (privileged mode, the host's namespaces, host paths, devices, "
              "capabilities, ports on the network)",
    "network": "let its backend reach the network (other machines and the internet)",
}


@dataclass(frozen=True)
class Grants:
    docker: bool = True
    host: bool = True
    web: bool = True
    engine: bool = True
    system: bool = True
    network: bool = True

    def allows(self, name: str) -> bool:
        return bool(getattr(self, name))

    def to_json(self) -> dict[str, bool]:
        return {name: self.allows(name) for name in NAMES}


DEFAULT: Final = Grants()


@dataclass(frozen=True)
class Requested:
    """What an extension's backend asks of the host, from its compose file (empty for a UI-only one)."""

    engine_socket: bool = False  # mounts the engine's socket: full control of the engine
    privileged: tuple[str, ...] = ()  # services run privileged
    host_network: tuple[str, ...] = ()  # services on the host's network
    host_pid: tuple[str, ...] = ()  # services in the host's PID namespace
    host_paths: tuple[str, ...] = ()  # host directories or files bind-mounted (beyond the engine socket)
    devices: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()  # cap_add
    host_binaries: tuple[str, ...] = field(default=())
    other: tuple[str, ...] = ()  # more host access: "ipc: host", "security_opt: seccomp=unconfined", ...
    network_ports: tuple[str, ...] = ()  # "<service> <ports entry>" published beyond the loopback interface
    network: bool = False  # a service has a network of its own, which leads out (Compose's default)

    def asks(self, name: str) -> bool:
        """Whether the backend asks for what the backend grant ``name`` covers."""
        if name == "engine":
            return self.engine_socket
        if name == "network":
            return self.network
        if name == "system":
            return any((self.privileged, self.host_network, self.host_pid, self.host_paths, self.devices,
                        self.capabilities, self.other, self.network_ports))
        return False

    def lines(self) -> list[str]:
        """For a person: one line per thing asked, worst first; empty if nothing beyond its own containers."""
        out = [f"privileged containers (root on the host): {', '.join(self.privileged)}"] if self.privileged else []
        if self.engine_socket:
            out.append("the Docker engine's socket (full control of the engine)")
        for what, names in (
            ("the host's processes (pid: host)", self.host_pid),
            ("the host's network (network_mode: host)", self.host_network),
            ("host paths", self.host_paths),
            ("devices", self.devices),
            ("capabilities", self.capabilities),
            ("ports open to the network", self.network_ports),
            ("other host access", self.other),
            ("host binaries run as you", self.host_binaries),
        ):
            if names:
                out.append(f"{what}: {', '.join(names)}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "engineSocket": self.engine_socket, "privileged": list(self.privileged),
            "hostNetwork": list(self.host_network), "hostPid": list(self.host_pid),
            "hostPaths": list(self.host_paths), "devices": list(self.devices),
            "capabilities": list(self.capabilities), "hostBinaries": list(self.host_binaries),
            "other": list(self.other), "networkPorts": list(self.network_ports), "network": self.network,
        }


def requested(compose_doc: Mapping[str, Any] | None, host_binaries: tuple[str, ...] = (),
              engine_socket: str = "/var/run/docker.sock") -> Requested:
    """What the backend described by ``compose_doc`` (as in the image, before dockext's rewrites) asks for, by
    the same rules :func:`dockext.backendpolicy.restrict` takes things out with."""
    found: dict[str, set[str]] = {
        k: set() for k in ("privileged", "net", "pid", "paths", "devices", "caps", "other", "ports")}
    asks_engine = False
    services = (compose_doc or {}).get("services") or {}
    for name, svc in services.items() if isinstance(services, dict) else ():
        if not isinstance(svc, dict):
            continue
        if backendpolicy.is_privileged(svc.get("privileged")):
            found["privileged"].add(str(name))
        if svc.get("network_mode") == "host":
            found["net"].add(str(name))
        if svc.get("pid") == "host":
            found["pid"].add(str(name))
        for key in backendpolicy.HOST_MODES:
            if key not in ("network_mode", "pid") and svc.get(key) == "host":
                found["other"].add(f"{key}: host")
        security = svc.get("security_opt")
        for opt in security if isinstance(security, list) else []:
            found["other"].add(f"security_opt: {opt}")
        for key in ("device_cgroup_rules", "gpus", "sysctls", "runtime", "cgroup_parent"):
            if svc.get(key):
                found["other"].add(key)
        for cap in svc.get("cap_add") or []:
            found["caps"].add(str(cap))
        if svc.get("network_mode") != "host":  # on the host's network, the port is the service's own (above)
            found["ports"].update(f"{name} {entry}" for entry in backendpolicy.network_ports(svc.get("ports")))
        for device in svc.get("devices") or []:
            found["devices"].add(str(device).split(":", 1)[0] if isinstance(device, str) else str(device))
        for volume in svc.get("volumes") or []:
            needs = backendpolicy.bind_grants(volume, engine_socket)
            if "engine" in needs:
                asks_engine = True
            if "system" in needs:
                found["paths"].add(backendpolicy.bind_source(volume) or ".")
            elif not needs and isinstance(volume, str) and "$" in volume.split(":", 1)[0]:
                found["paths"].add(volume.split(":", 1)[0])  # a variable: a host path once Compose fills it in
    return Requested(
        engine_socket=asks_engine, privileged=_sorted(found["privileged"]), host_network=_sorted(found["net"]),
        host_pid=_sorted(found["pid"]), host_paths=_sorted(found["paths"]), devices=_sorted(found["devices"]),
        capabilities=_sorted(found["caps"]), host_binaries=tuple(host_binaries), other=_sorted(found["other"]),
        network_ports=_sorted(found["ports"]), network=backendpolicy.reaches_the_network(compose_doc),
    )


def _sorted(items: set[str]) -> tuple[str, ...]:
    return tuple(sorted(items))


def read_requested(ext_dir: Path) -> Requested | None:
    """What an installed extension's backend asked for (None if it was installed before dockext recorded it)."""
    try:
        data = json.loads((ext_dir / REQUESTED_FILE).read_bytes())
        return Requested(
            engine_socket=data["engineSocket"] is True,
            network=data.get("network", True) is True,  # not recorded before: as every container, it may
            **{attr: tuple(str(x) for x in data.get(key, ())) for attr, key in _REQUESTED_KEYS.items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


_REQUESTED_KEYS: Final = {
    "privileged": "privileged", "host_network": "hostNetwork", "host_pid": "hostPid", "host_paths": "hostPaths",
    "devices": "devices", "capabilities": "capabilities", "host_binaries": "hostBinaries", "other": "other",
    "network_ports": "networkPorts",
}


# -- grants ---------------------------------------------------------------------------------------------

def load(layout: Layout) -> dict[str, Grants]:
    what, delete_hint = "the permissions", "deleting it gives every extension the defaults"
    data = read_settings(layout.root / FILE, SCHEMA, what, delete_hint)
    if data is None:
        return {}
    out: dict[str, Grants] = {}
    for key, value in settings_part(data, "extensions", dict, layout.root / FILE, what, delete_hint).items():
        if isinstance(value, dict):
            # only a JSON true allows (a hand-edited "false" string must not): a missing name has the default
            out[str(key)] = Grants(**{n: value.get(n, getattr(DEFAULT, n)) is True for n in NAMES})
    return out


def grants_for(layout: Layout, key: str) -> Grants:
    return load(layout).get(key, DEFAULT)


def set_grants(layout: Layout, key: str, **changes: bool) -> Grants:
    with Store(layout).lock():
        return set_grants_locked(layout, key, **changes)


def set_grants_locked(layout: Layout, key: str, **changes: bool) -> Grants:
    """:func:`set_grants` for a caller that holds the store's lock (an install, a reapply)."""
    unknown = set(changes) - set(NAMES)
    if unknown:
        raise DockextError(f"unknown permission {', '.join(sorted(unknown))}",
                           hint=f"The permissions are: {', '.join(NAMES)}.")
    table = load(layout)
    new = replace(table.get(key, DEFAULT), **changes)
    if new == DEFAULT:
        table.pop(key, None)
    else:
        table[key] = new
    _save(layout, table)
    return new


def forget(layout: Layout, key: str) -> None:
    """Drop an extension's grants (it was removed). The caller holds the store's lock."""
    table = load(layout)
    if table.pop(key, None) is not None:
        _save(layout, table)


def _save(layout: Layout, table: dict[str, Grants]) -> None:
    body = {"schema": SCHEMA, "extensions": {k: v.to_json() for k, v in sorted(table.items())}}
    atomic_write(layout.root / FILE, json.dumps(body, indent=2).encode() + b"\n", mode=0o600)


def withheld(grants: Grants, asked: Requested) -> tuple[str, ...]:
    """The backend grants ``grants`` deny that ``asked`` would use: what its compose file loses."""
    return tuple(name for name in BACKEND_NAMES if not grants.allows(name) and asked.asks(name))


def outdated(policy: int, grants: Grants) -> bool:
    """Whether a backend restricted by the rules of version ``policy`` (its record's ``VmInfo.policy``) runs
    with less withheld than ``grants`` withhold today: a backend grant is denied and the rules have grown since
    (``backendpolicy.POLICY``)."""
    return policy < backendpolicy.POLICY and not all(map(grants.allows, BACKEND_NAMES))


def check(grants: Grants, name: str, title: str, key: str) -> None:
    """Raise PermissionDenied unless ``grants`` allow ``name``."""
    if not grants.allows(name):
        raise PermissionDenied(
            f"{title} may not {EXPLAIN[name]}: that permission is denied",
            hint=f"Allow it with: dockext permissions set {key} {name}=allow",
        )
