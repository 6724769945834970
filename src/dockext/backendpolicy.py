"""What an extension's compose file may do: the isolation every backend gets, and what the backend grants take out.

Pure functions over the parsed compose document (before :func:`dockext.compose.rewrite`), so every rule is
unit-tested without an engine.

**Isolation, always.** A backend is its own Compose project; nothing in its file may reach into another
extension's. Refused, whatever the grants: ``include`` and ``extends`` from another file (services dockext's
rewrite would never see: no labels, no socket directory, and no restrictions); ``volumes_from`` a container,
and ``network_mode``/``pid``/``ipc``/``uts``/``cgroup`` of ``container:...`` (someone else's container); a
volume or network named after another extension's project (``<x>-desktop-extension_...``; an ``external`` one
without a ``name`` is its key), which is where its data and, on a remote engine, its backend socket live.
``extends``, ``volumes_from`` and ``service:`` modes must name the file's own services (not dockext's
:data:`RESERVED_SERVICES`); names and modes may not come from variables; a ``network_mode`` naming a network is
refused; so are :data:`HOST_SIDE_KEYS` (Compose would act on the machine it runs on). Docker Desktop's own files
never need these.

**Restricted, when a backend grant is denied** (``dockext permissions``): :func:`restrict` takes out what the
grant covers, and refuses what it cannot vet. A file is only restricted if its meaning does not depend on the
machine: in a service's security-relevant keys, ``$`` interpolation is refused (``${HOME}:/h`` would bind a
host path after the check); ``build``, ``env_file``, ``secrets``/``configs`` read from files, volumes with
driver options (a bind in disguise) and networks named ``host`` are refused; keys dockext does not know are
refused rather than guessed harmless. Bind sources are normalised (``/run/guest-services/../../etc`` is
``/etc``); a bind of the engine's socket, or of a directory above it, is the ``engine`` grant's; any other
host path is ``system``'s. Published ``ports`` are ``system``'s too when they listen beyond the loopback
interface (Compose's default is every interface: the machine's network): denied, each is bound to ``127.0.0.1``
instead, so the backend still serves the machine itself (``localhost:PORT``, as in Docker Desktop) but not
the network.

Under any denied grant, what leads outside the project is refused too: networks with driver options or
``ipam`` (a bridge of the host, the LAN's addresses), volumes and networks that are ``external`` or ``name``d
outside the project (Compose would use another's, or take it over), logging drivers other than ``json-file``
and ``local`` (dockerd ships the output from the host); ``privileged`` is taken out of ``post_start`` and
``pre_stop`` hooks when ``system`` is denied. :data:`POLICY` numbers these rules.

**Cut off, when the ``network`` grant is denied**: every network of the project is made ``internal`` (the
engine drops what its containers send beyond their own subnet: its services reach each other and nothing
else), and services leave the host's or the default bridge's network for it. What could still lead out is refused: an
``external`` network (someone else's, with a gateway), a network driver other than ``bridge`` (``macvlan``
puts a container on the LAN), a network spec from a variable. Its socket directory is a mount, not the
network, so ``vm.service`` and ``vm.cli.exec`` keep working.

**Compose's own reading, checked too.** These rules read the YAML as dockext parses it; Compose reads it with
Go's YAML library, fills in variables and merges ``extends``. Before a backend is started, the file dockext
wrote is read back through ``docker compose config`` and :func:`check_resolved` applies the same rules to that
reading: isolated, and nothing in it for :func:`restrict` to take out. Where the two readings differ, the
install is refused. Container names are global to the engine, so one of another project's is refused too.
"""

from __future__ import annotations

import copy
import ipaddress
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from .compose import GS_VOLUME, GUEST_SERVICES, RAW_SOCKET_SOURCES
from .errors import MetadataError

__all__ = [
    "HOST_MODES", "POLICY", "bind_grants", "bind_source", "check_isolation", "check_resolved", "is_privileged",
    "network_ports", "reaches_the_network", "restrict",
]

FIELD = "vm.composefile"
#: the version of these rules, kept in each backend's record: 1 added published ports (system), the network
#: grant, hooks, logging drivers, network options and names; a backend made by an older version is recreated
#: when its grants are set again
POLICY = 1
#: service keys whose value ``host`` shares a namespace of the host
HOST_MODES = ("network_mode", "pid", "ipc", "uts", "userns_mode", "cgroup")
#: service keys the ``system`` grant covers: taken out when it is denied
SYSTEM_KEYS = ("privileged", "devices", "cap_add", "security_opt", "device_cgroup_rules", "gpus", "sysctls",
               "cgroup_parent", "runtime", "isolation", "storage_opt", "userns_mode", "external_links")
#: service keys a restricted backend may keep as they are (their values are only its own business)
SAFE_KEYS = frozenset({
    "image", "command", "entrypoint", "environment", "labels", "restart", "init", "user", "working_dir",
    "container_name", "hostname", "domainname", "healthcheck", "depends_on", "stop_signal", "stop_grace_period",
    "tty", "stdin_open", "read_only", "tmpfs", "shm_size", "mem_limit", "mem_reservation", "memswap_limit",
    "mem_swappiness", "cpus", "cpu_shares", "cpu_quota", "cpu_period", "cpuset", "pids_limit", "ulimits",
    "logging", "expose", "ports", "extra_hosts", "dns", "dns_search", "dns_opt", "networks", "platform",
    "pull_policy", "profiles", "annotations", "oom_score_adj", "attach", "mac_address", "group_add",
    "scale", "links", "stop_timeout", "post_start", "pre_stop", "develop",
})
#: service keys a restricted backend may keep once checked (below)
CHECKED_KEYS = frozenset({"volumes", "deploy", "volumes_from", "secrets", "configs", "extends", *HOST_MODES})
#: ``$`` may only appear in these keys of a restricted service: elsewhere it could turn into host access
INTERPOLATION_OK = frozenset({
    "image", "command", "entrypoint", "environment", "labels", "user", "working_dir", "hostname", "domainname",
    "healthcheck", "stop_signal", "stop_grace_period", "extra_hosts", "dns", "dns_search", "logging", "ports",
    "expose", "mem_limit", "mem_reservation", "cpus", "shm_size", "platform", "annotations",
})
#: service keys that make Compose act on the machine it runs on, not in a container: refused whatever the grants
#: (on a remote engine that machine is dockext's own, which no grant gives; found in a review)
HOST_SIDE_KEYS = {
    "provider": "runs a program of the machine Compose runs on",
    "use_api_socket": "gives the container the engine's socket (mount /var/run/docker.sock.raw instead, which "
                      "the engine permission governs)",
}
#: the services dockext adds to a backend's project (the socket-permission helper, a remote engine's relay)
RESERVED_SERVICES = ("dockext-sockperm", "dockext-relay")
_PROJECT_NAME = re.compile(r"-desktop-extension(?:_|$)")
#: the same in a container's name, whose parts Compose joins with ``-`` (``<project>-<service>-1``)
_PROJECT_CONTAINER = re.compile(r"-desktop-extension(?:[-_]|$)")
#: a bind source Compose reads as a Windows path (a drive, or \\\\ for a UNC path or a named pipe), then the target
_WINDOWS_SOURCE = re.compile(r"^([A-Za-z]:[\\/][^:]*|\\\\[^:]*):(.+)$")
_VARIABLE = re.compile(r"\$(?!\$)")


def check_isolation(doc: Mapping[str, Any], project: str) -> None:
    """MetadataError for anything in the file that reaches outside its own project (module docstring)."""
    if "include" in doc:
        raise MetadataError(FIELD, "uses `include`: services from other files are not allowed (dockext could not "
                                   "apply its rules to them); put them in the extension's compose file")
    own = {name for name, _ in _services(doc)}
    for name, svc in _services(doc):
        if name in RESERVED_SERVICES:
            raise MetadataError(FIELD, f"service name {name!r} is reserved by dockext")
        for key in HOST_SIDE_KEYS:
            if key in svc:
                raise MetadataError(FIELD, f"service {name!r} uses `{key}`, which {HOST_SIDE_KEYS[key]}: a backend "
                                           "is containers, and gets nothing of the machine dockext runs on")
        extends = svc.get("extends")
        if isinstance(extends, dict) and extends.get("file") is not None:
            raise MetadataError(FIELD, f"service {name!r} extends a service of another file; only the services of "
                                       "this file may be extended")
        target = extends.get("service") if isinstance(extends, dict) else extends
        if extends is not None and (not isinstance(target, str) or target not in own or _has_variable(target)):
            raise MetadataError(FIELD, f"service {name!r} extends {target!r}, which is not a service of this file")
        for entry in svc.get("volumes_from") or []:
            if not isinstance(entry, str) or entry.startswith("container:"):
                raise MetadataError(FIELD, f"service {name!r} takes the volumes of a container outside its "
                                           f"project ({entry!r}); only `service:` names of this file may be used")
            if entry.removeprefix("service:").split(":")[0] not in own:
                raise MetadataError(FIELD, f"service {name!r} takes the volumes of {entry!r}, which is not a "
                                           "service of this file")
        for key in HOST_MODES:
            value = svc.get(key)
            if isinstance(value, str) and _has_variable(value):
                raise MetadataError(FIELD, f"service {name!r} sets {key} from a variable ({value!r}), which dockext "
                                           "cannot vet")
            if isinstance(value, str) and value.startswith("container:"):
                raise MetadataError(FIELD, f"service {name!r} joins the {key} of a container outside its project "
                                           f"({value!r}); use `service:<name>` for a service of this file")
            if isinstance(value, str) and value.startswith("service:") and value[len("service:"):] not in own:
                raise MetadataError(FIELD, f"service {name!r} joins the {key} of {value!r}, which is not a service "
                                           "of this file")
        _check_container_name(name, svc, project)
        mode = svc.get("network_mode")
        if mode is not None and not (isinstance(mode, str) and (
                mode in ("none", "host", "bridge", "default") or mode.startswith(("service:", "container:")))):
            raise MetadataError(FIELD, f"service {name!r} has network_mode {mode!r}: the engine would join the "
                                       "network of that name, which may be another extension's; use `networks`")
        for key in ("depends_on", "links"):
            named = svc.get(key)
            refs = list(named) if isinstance(named, (dict, list)) else []
            if any(isinstance(r, str) and r.split(":")[0] in RESERVED_SERVICES for r in refs):
                raise MetadataError(FIELD, f"service {name!r} names a service dockext adds in `{key}`")
    for kind in ("volumes", "networks"):
        for key, spec in (doc.get(kind) or {}).items() if isinstance(doc.get(kind), dict) else ():
            named = spec.get("name") if isinstance(spec, dict) else None
            if named is not None and _has_variable(named):
                raise MetadataError(FIELD, f"{kind[:-1]} {key!r} takes its name from a variable ({named!r}), which "
                                           "dockext cannot vet")
            external = isinstance(spec, dict) and spec.get("external") not in (None, False)
            # an external one without a name is the one its key names (Compose's reading)
            given = str(named) if named is not None else str(key) if external else None
            if given is not None and _PROJECT_NAME.search(given) and not _owned(given, project):
                raise MetadataError(FIELD, f"{kind[:-1]} {key!r} is {given!r}, which belongs to another extension")


def check_resolved(resolved: Mapping[str, Any], *, engine: bool, system: bool, network: bool, engine_socket: str,
                   project: str) -> None:
    """The backend as Compose reads it (``docker compose config`` of the file dockext wrote: YAML as Go reads
    it, variables filled in, ``extends`` merged, every key normalized) must be what the rules made of the
    author's file: isolated (:func:`check_isolation`), and, with a grant denied, left as it is by
    :func:`restrict` (nothing in it that a denied grant covers). A difference means that dockext and Compose
    read the file differently, which the rules cannot see from the raw YAML alone (a reviewer's advice: vet
    Compose's own reading too); the install is refused rather than trusting either reading. The services and
    the volume dockext adds are left out: they are dockext's, not the author's."""
    doc = dict(resolved)
    services = resolved.get("services")
    doc["services"] = {k: v for k, v in services.items() if k not in RESERVED_SERVICES} if isinstance(
        services, dict) else {}
    volumes = resolved.get("volumes")
    if isinstance(volumes, dict):
        doc["volumes"] = {k: v for k, v in volumes.items() if k != GS_VOLUME}
    try:
        check_isolation(doc, project)
        if engine and system and network:
            return
        again = restrict(doc, engine=engine, system=system, network=network, engine_socket=engine_socket,
                         project=project)
    except MetadataError as exc:
        raise MetadataError(FIELD, f"as Docker Compose reads it: {exc.problem}") from None
    where = _difference(doc, again)
    if where is not None:
        raise MetadataError(FIELD, f"Docker Compose reads it otherwise than dockext did: its {where} asks for "
                                   "what your permissions deny, which dockext's reading of the file did not show")


def _difference(a: object, b: object, path: str = "") -> str | None:
    """Where two JSON-like values first differ (``services.api.volumes[0]``), None if they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            found = _difference(a[key], b[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        return None if len(a) == len(b) else f"{path}[{min(len(a), len(b))}]".lstrip(".")
    return None if a == b else path.lstrip(".") or "file"


def _check_container_name(name: str, svc: Mapping[str, Any], project: str) -> None:
    """A container name is global to the engine: one that another extension's backend uses (or will use) would
    make that extension's install fail (found in a review). Compose names a service's container
    ``<project>-<service>-1`` unless ``container_name`` says otherwise; either must not be another project's."""
    given = svc.get("container_name")
    if given is None:
        if _PROJECT_CONTAINER.search(f"-{name}-1"):
            raise MetadataError(FIELD, f"service name {name!r} would name its container like another extension's "
                                       "backend; rename the service")
        return
    if not isinstance(given, str) or _has_variable(given):
        raise MetadataError(FIELD, f"service {name!r} takes its container_name from a variable ({given!r}), which "
                                   "dockext cannot vet")
    if _PROJECT_CONTAINER.search(given) and not _owned(given, project, "-", _PROJECT_CONTAINER):
        raise MetadataError(FIELD, f"service {name!r} has container_name {given!r}, the name of another extension's "
                                   f"container; use a name of your own (or leave it out: {project}-{name}-1)")


def _owned(name: str, project: str, sep: str = "_", other: re.Pattern[str] = _PROJECT_NAME) -> bool:
    """Whether a volume or network name (``<project>_...``), or with ``sep="-"`` and :data:`_PROJECT_CONTAINER` a
    container name (``<project>-...``), is ``project``'s, and not another project's whose name starts the same
    way (extension keys may hold ``_`` and ``-desktop-extension``: ``a-desktop-extension_x-desktop-extension_data``
    is the volume of the extension ``a-desktop-extension/x``)."""
    return name.startswith(project + sep) and not other.search(name[len(project):])


def bind_grants(volume: object, engine_socket: str) -> frozenset[str]:
    """Which backend grants a service's ``volumes`` entry needs: ``engine`` for the engine's socket or a
    directory above it, ``system`` for any host path; nothing for a named volume or dockext's own mount (the
    target ``/run/guest-services``, which the rewrite replaces)."""
    source, target = _bind(volume)
    if source is None or (target is not None and _norm(target) == GUEST_SERVICES):
        return frozenset()
    path = _norm(source)
    sockets = {_norm(s) for s in (*RAW_SOCKET_SOURCES, engine_socket)}
    if any(path == s or s.startswith(path.rstrip("/") + "/") for s in sockets):
        return frozenset({"engine", "system"} if path not in sockets else {"engine"})
    return frozenset({"system"})


def bind_source(volume: object) -> str | None:
    """The host path a ``volumes`` entry binds, as written; None for a named volume or anything else."""
    return _bind(volume)[0]


def is_privileged(value: object) -> bool:
    """``privileged`` as Compose reads it (a string ``"true"`` too)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "y", "on", "1")
    return bool(value) and value is not None


def restrict(doc: Mapping[str, Any], *, engine: bool, system: bool, engine_socket: str,
             network: bool = True, project: str | None = None) -> dict[str, Any]:
    """The compose document without what the denied grants cover; MetadataError for what cannot be vetted.
    ``project``: the extension's Compose project, the only prefix a volume or network ``name:`` may have."""
    out = copy.deepcopy(dict(doc))
    if engine and system and network:
        return out
    _check_top_level(out, project)
    for name, svc in _services(out):
        _check_service(name, svc)
        kept = []
        for volume in svc.get("volumes") or []:
            needs = bind_grants(volume, engine_socket)
            if ("engine" in needs and not engine) or ("system" in needs and not system):
                continue
            kept.append(volume)
        if "volumes" in svc:
            svc["volumes"] = kept
        if not system:
            for key in SYSTEM_KEYS:
                svc.pop(key, None)
            for key in HOST_MODES:
                if svc.get(key) == "host":
                    del svc[key]
            reservations = ((svc.get("deploy") or {}).get("resources") or {}) if isinstance(svc.get("deploy"), dict) \
                else {}
            if isinstance(reservations, dict):
                reservations.pop("reservations", None)  # devices (GPUs) are reserved there
            if "ports" in svc:
                svc["ports"] = [_on_loopback(name, entry) for entry in _port_list(name, svc["ports"])]
            for hook in ("post_start", "pre_stop"):  # run by the engine as execs: privileged ones too
                for entry in svc.get(hook) or []:
                    if isinstance(entry, dict):
                        entry.pop("privileged", None)
        if not network and not _shares_a_namespace(svc.get("network_mode")):
            svc.pop("network_mode", None)  # the host's or the default bridge's network: onto its own, cut off
    if not network:
        _cut_off(out)
    return out


def reaches_the_network(doc: Mapping[str, Any] | None) -> bool:
    """Whether a service of the file has a network of its own (Compose's default): one that leads out, unless
    the ``network`` grant is denied. ``network_mode: none`` and ``service:...`` (another service's) do not."""
    return any(not _shares_a_namespace(svc.get("network_mode")) for _name, svc in _services(doc or {}))


def _shares_a_namespace(mode: object) -> bool:
    """``network_mode`` values that give a service no network of its own: none, or another service's."""
    return mode == "none" or (isinstance(mode, str) and mode.startswith("service:"))


def _cut_off(doc: dict[str, Any]) -> None:
    """Every network of the project internal (no gateway), the default one included."""
    networks = doc.get("networks")
    if networks is None:
        networks = doc["networks"] = {}
    if not isinstance(networks, dict):
        raise MetadataError(FIELD, "has `networks` that are not a mapping")
    for key, spec in list(networks.items()):
        spec = {} if spec is None else spec
        if not isinstance(spec, dict) or _has_variable(spec):
            raise MetadataError(FIELD, f"network {key!r} cannot be vetted for a backend without the network "
                                       "permission")
        if spec.get("external"):
            raise MetadataError(FIELD, f"network {key!r} is an existing network, which a backend without the "
                                       "network permission may not join (it could lead out)")
        if spec.get("driver") not in (None, "bridge"):
            raise MetadataError(FIELD, f"network {key!r} uses the {spec.get('driver')!r} driver; a backend without "
                                       "the network permission may only have bridge networks (made internal)")
        networks[key] = {**spec, "internal": True}
    networks.setdefault("default", {"internal": True})


def network_ports(ports: object) -> list[str]:
    """The entries of a service's ``ports`` that listen beyond the loopback interface, as written (an entry
    whose address comes from a variable counts: it may)."""
    entries = ports if isinstance(ports, list) else [ports] if ports is not None else []
    return [_describe(entry) for entry in entries if not _is_loopback(_host_ip(entry))]


_LOOPBACK = "127.0.0.1"


def _port_list(name: str, ports: object) -> list[Any]:
    if not isinstance(ports, list):
        raise MetadataError(FIELD, f"service {name!r} has `ports` that are not a list")
    return ports


def _host_ip(entry: object) -> str | None:
    """The address a ``ports`` entry listens on: None for every interface (Compose's default), ``"$"`` when a
    variable decides."""
    if isinstance(entry, dict):
        value = entry.get("host_ip")
        if value is None:
            return None
        return "$" if _has_variable(value) else str(value)
    if not isinstance(entry, str):
        return None  # a bare container port (an int): published on every interface
    if _has_variable(entry):
        return "$"
    parts = entry.partition("/")[0].split(":")
    return ":".join(parts[:-2]).strip("[]") or None if len(parts) > 2 else None


def _is_loopback(ip: str | None) -> bool:
    """A ``host_ip`` of loopback: an address only, as the engine takes it (``localhost`` is no host_ip)."""
    try:
        return ip is not None and ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _on_loopback(name: str, entry: object) -> object:
    """A ``ports`` entry listening only on 127.0.0.1 (loopback entries are kept as they are)."""
    ip = _host_ip(entry)
    if _is_loopback(ip):
        return entry
    if ip == "$":
        raise MetadataError(FIELD, f"service {name!r} publishes a port from a variable (`$`), which dockext cannot "
                                   "vet for a backend with restricted permissions")
    if isinstance(entry, dict):
        return {**entry, "host_ip": _LOOPBACK}
    if isinstance(entry, int) and not isinstance(entry, bool):
        return f"{_LOOPBACK}::{entry}"
    if not isinstance(entry, str):
        raise MetadataError(FIELD, f"service {name!r} has a `ports` entry dockext cannot read: {entry!r}")
    body, slash, protocol = entry.partition("/")
    parts = body.split(":")
    container = parts[-1] + slash + protocol
    published = parts[-2] if len(parts) >= 2 else ""
    return f"{_LOOPBACK}:{published}:{container}"


def _describe(entry: object) -> str:
    if isinstance(entry, dict):
        published = entry.get("published")
        target = f"{entry.get('target')}/{entry['protocol']}" if entry.get("protocol") else str(entry.get("target"))
        return f"{published}:{target}" if published not in (None, "") else target
    return str(entry)


def _check_top_level(doc: dict[str, Any], project: str | None) -> None:
    for kind in ("secrets", "configs"):
        for key, spec in (doc.get(kind) or {}).items() if isinstance(doc.get(kind), dict) else ():
            if isinstance(spec, dict) and ("file" in spec or "environment" in spec):
                raise MetadataError(FIELD, f"{kind[:-1]} {key!r} is read from a host file or variable, which a "
                                           "backend with restricted permissions may not do")
    for key, spec in (doc.get("volumes") or {}).items() if isinstance(doc.get("volumes"), dict) else ():
        if isinstance(spec, dict) and (spec.get("driver_opts") or spec.get("driver") not in (None, "local")):
            raise MetadataError(FIELD, f"volume {key!r} has driver options (they can bind a host path), which a "
                                       "backend with restricted permissions may not use")
        _check_own("volume", key, spec, project)
    for key, spec in (doc.get("networks") or {}).items() if isinstance(doc.get("networks"), dict) else ():
        if key == "host" or (isinstance(spec, dict) and "host" in (spec.get("name"), spec.get("driver"))):
            raise MetadataError(FIELD, f"network {key!r} is the host's network, which a backend with restricted "
                                       "permissions may not join")
        if isinstance(spec, dict) and (spec.get("driver_opts") or spec.get("ipam")):
            raise MetadataError(FIELD, f"network {key!r} sets driver options or addresses (they can take over a "
                                       "bridge or a route of the host), which a backend with restricted "
                                       "permissions may not use")
        _check_own("network", key, spec, project)


def _check_own(kind: str, key: str, spec: object, project: str | None) -> None:
    """A volume or network of a restricted file must be its project's own: not an existing one (``external``),
    nor one named like another project's (Compose would use it as it is, or take it over)."""
    if not isinstance(spec, dict):
        return
    if spec.get("external"):
        raise MetadataError(FIELD, f"{kind} {key!r} is an existing {kind}, which a backend with restricted "
                                   "permissions may not use")
    name = spec.get("name")
    if name is not None and (project is None or not _owned(str(name), project)):
        raise MetadataError(FIELD, f"{kind} {key!r} is named {name!r}: a backend with restricted permissions may "
                                   f"only have {kind}s of its own project ({project or 'its project'}_...)")


def _check_service(name: str, svc: dict[str, Any]) -> None:
    for key, value in svc.items():
        if key not in SAFE_KEYS and key not in CHECKED_KEYS and key not in SYSTEM_KEYS:
            raise MetadataError(FIELD, f"service {name!r} uses `{key}`, which dockext cannot vet for a backend "
                                       "with restricted permissions; allow them (dockext permissions) to run it")
        if key not in INTERPOLATION_OK and _has_variable(value):
            raise MetadataError(FIELD, f"service {name!r} sets `{key}` from a variable (`$`), which dockext "
                                       "cannot vet for a backend with restricted permissions")
    for key in ("build", "env_file"):
        if key in svc:
            raise MetadataError(FIELD, f"service {name!r} uses `{key}`, which reads files of the host")
    for key in HOST_MODES:
        value = svc.get(key)
        if value is not None and value != "host" and not (isinstance(value, str) and (
                value.startswith("service:") or value in ("none", "bridge", "default", "private", "shareable"))):
            raise MetadataError(FIELD, f"service {name!r} has {key}: {value!r}, which dockext cannot vet")
    logging = svc.get("logging")
    driver = logging.get("driver") if isinstance(logging, dict) else None
    if logging is not None and (not isinstance(logging, dict) or driver not in (None, "json-file", "local", "none")):
        raise MetadataError(FIELD, f"service {name!r} sends its output through the {driver!r} logging driver, which "
                                   "the engine runs on the host (to any address or host socket); a backend with "
                                   "restricted permissions may only use json-file or local")
    deploy = svc.get("deploy")
    if deploy is not None and not isinstance(deploy, dict):
        raise MetadataError(FIELD, f"service {name!r} has a `deploy` that is not a mapping")


def _services(doc: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    services = doc.get("services")
    if not isinstance(services, dict):
        return []
    return [(str(k), v) for k, v in services.items() if isinstance(v, dict)]


def _bind(volume: object) -> tuple[str | None, str | None]:
    """(host source, target) of a bind-mount entry; (None, target) for a named volume or anything else."""
    if isinstance(volume, str):
        windows = _WINDOWS_SOURCE.match(volume)  # c:/x:/y, C:\\:/y, \\\\.\\pipe\\x:/y: Compose reads a host path
        if windows:
            return windows.group(1), windows.group(2).split(":")[0]
        parts = volume.split(":")
        if len(parts) >= 2 and parts[0].startswith(("/", ".", "~")):
            return parts[0], parts[1]
        return None, parts[1] if len(parts) >= 2 else parts[0]
    if isinstance(volume, dict):
        kind = volume.get("type", "bind" if "source" in volume else "volume")
        target = str(volume["target"]) if volume.get("target") is not None else None
        if kind == "bind":
            return str(volume.get("source") or "."), target
        return None, target
    return None, None


def _norm(path: str) -> str:
    """A path as the engine will use it: ``.`` and ``..`` folded, one slash between parts, relative paths kept
    relative (they are the extension's directory: host paths all the same)."""
    if path.startswith("~"):
        return path
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if path.startswith("/") else norm


def _has_variable(value: object) -> bool:
    if isinstance(value, str):
        return bool(_VARIABLE.search(value.replace("$$", "")))
    if isinstance(value, dict):
        return any(_has_variable(k) or _has_variable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_variable(v) for v in value)
    return False
