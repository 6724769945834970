"""The isolation every backend gets and what denied backend grants take out (dockext/backendpolicy.py).

Each case is a way a hostile compose file could reach the host or another extension. Where it matters how
Compose itself reads the file, the restricted file is given to the real Compose binary (``config``: no engine
involved) and its own resolution is checked, so the rules are proven against the interpreter, not a model."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockext import backendpolicy, compose, permissions
from dockext.composecli import compose_binary
from dockext.errors import MetadataError

SOCKET = "/var/run/docker.sock"
PROJECT = "acme_x-desktop-extension"


def restrict(doc: dict[str, Any], engine: bool = False, system: bool = False, socket: str = SOCKET,
             network: bool = True) -> dict[str, Any]:
    return backendpolicy.restrict(doc, engine=engine, system=system, network=network, engine_socket=socket,
                                  project=PROJECT)


def service(**keys: Any) -> dict[str, Any]:
    return {"services": {"api": {"image": "x", **keys}}}


def resolved(doc: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """What Compose makes of ``doc`` after dockext's rewrite (with dockext's own environment, as at install)."""
    rewritten = compose.rewrite(doc, key="acme_x", project=PROJECT, image="acme/x:1", title="X",
                                engine_socket=SOCKET, guest_services=compose.guest_services_bind("/gs/abcd"))
    path = tmp_path / "docker-compose.yaml"
    path.write_bytes(rewritten.dump())
    out = subprocess.run([compose_binary(), "-f", str(path), "config", "--format", "json"], capture_output=True,
                         text=True, env={**os.environ, "DESKTOP_PLUGIN_IMAGE": "acme/x:1"}, check=True)
    return dict(json.loads(out.stdout))


def host_access(config: dict[str, Any]) -> list[str]:
    """Everything in Compose's resolved config that reaches the host, beyond dockext's own socket directory."""
    found = []
    for name, svc in config["services"].items():
        for key in ("privileged", "cap_add", "devices", "security_opt", "gpus", "sysctls"):
            if svc.get(key):
                found.append(f"{name}.{key}")
        for key in backendpolicy.HOST_MODES:
            if svc.get(key) == "host":
                found.append(f"{name}.{key}")
        for mount in svc.get("volumes") or []:
            if mount.get("type") == "bind" and mount.get("source") != "/gs/abcd":
                found.append(f"{name}.bind {mount.get('source')}")
    return found


HOSTILE: dict[str, Any] = service(
    privileged="true", pid="host", ipc="host", cap_add=["SYS_ADMIN"], devices=["/dev/sda"], gpus="all",
    security_opt=["seccomp=unconfined"], sysctls={"net.ipv4.ip_forward": "1"},
    volumes=["/:/host", "/var/run/docker.sock.raw:/var/run/docker.sock", "./conf:/conf",
             "/run/guest-services/../../etc:/hostetc", {"type": "bind", "source": "/run/docker.sock/", "target": "/s"},
             "data:/data", "/run/guest-services:/run/guest-services"],
    deploy={"resources": {"limits": {"cpus": "1"}, "reservations": {"devices": [{"capabilities": ["gpu"]}]}}},
)
HOSTILE["volumes"] = {"data": {}}


def test_with_both_backend_grants_denied_compose_resolves_nothing_of_the_host(tmp_path):
    assert host_access(resolved(HOSTILE, tmp_path))  # unrestricted, it has plenty (the check can fail)
    config = resolved(restrict(HOSTILE), tmp_path)
    assert host_access(config) == []
    api = config["services"]["api"]
    assert {m["target"] for m in api["volumes"]} == {"/data", "/run/guest-services"}  # its own things stay
    assert api["deploy"]["resources"]["limits"]["cpus"] == 1


def test_the_engine_grant_covers_the_socket_and_every_directory_above_it_in_any_spelling():
    for volume in ("/var/run/docker.sock.raw:/x", "/var/run//docker.sock:/x", "/var/run:/hostrun", "/:/root",
                   {"type": "bind", "source": "/run/docker.sock/", "target": "/s"}, "/run/user/1000/docker.sock:/d",
                   "/run/user/1000:/d"):
        assert "engine" in backendpolicy.bind_grants(volume, "/run/user/1000/docker.sock"), volume
        kept = restrict(service(volumes=[volume]), engine=False, system=True, socket="/run/user/1000/docker.sock")
        assert kept["services"]["api"]["volumes"] == [], volume
    assert backendpolicy.bind_grants("/etc:/etc", SOCKET) == {"system"}
    assert backendpolicy.bind_grants("/var/run:/r", SOCKET) == {"engine", "system"}
    assert backendpolicy.bind_grants("data:/data", SOCKET) == frozenset()
    assert backendpolicy.bind_grants("/anything:/run/guest-services", SOCKET) == frozenset()  # replaced by ours


@pytest.mark.parametrize("doc, why", [
    (service(network_mode="${N:-host}"), "from a variable"),
    (service(volumes=["${HOME}:/h"]), "from a variable"),
    (service(volumes=[{"type": "bind", "source": "${S:-/}", "target": "/s"}]), "from a variable"),
    (service(privileged="${P:-true}"), "from a variable"),
    (service(build={"context": "/etc"}), "uses `build`"),
    (service(env_file="/etc/environment"), "uses `env_file`"),
    (service(volumes_from=["service:api"], frobnicate=True), "uses `frobnicate`"),
    (service(network_mode="service:other", pid="container:x"), "cannot vet"),
    ({**service(), "volumes": {"v": {"driver_opts": {"type": "none", "o": "bind", "device": "/"}}}}, "driver options"),
    ({**service(), "secrets": {"s": {"file": "/etc/shadow"}}}, "host file"),
    ({**service(), "configs": {"c": {"file": SOCKET}}}, "host file"),
    ({**service(), "networks": {"hn": {"external": True, "name": "host"}}}, "host's network"),
])
def test_what_cannot_be_vetted_is_refused_when_a_grant_is_denied(doc, why):
    with pytest.raises(MetadataError, match=why):
        restrict(doc, engine=False, system=True)
    assert restrict(doc, engine=True, system=True) == doc  # with both grants, the file is as Docker Desktop runs it


@pytest.mark.parametrize("doc, why", [
    ({**service(), "include": ["../ui/evil.yaml"]}, "uses `include`"),
    (service(extends={"file": "../ui/evil.yaml", "service": "x"}), "extends a service of another file"),
    (service(volumes_from=["container:acme_y-desktop-extension-service"]), "volumes of a container outside"),
    (service(pid="container:acme_y-desktop-extension-service"), "pid of a container outside"),
    (service(network_mode="container:abc"), "network_mode of a container outside"),
    ({**service(), "volumes": {"v": {"external": True, "name": "acme_y-desktop-extension_dockext-guest-services"}}},
     "belongs to another extension"),
    ({**service(), "networks": {"n": {"external": True, "name": "acme_y-desktop-extension_default"}}},
     "belongs to another extension"),
    # found in a review (helpers/backend policy): what Compose reads otherwise than the rules did
    ({**service(), "volumes": {"acme_y-desktop-extension_data": {"external": True}}},  # no name: the key is it
     "belongs to another extension"),
    ({**service(), "volumes": {"v": {"name": "${UNSET:-acme_y-desktop-ext}ension_data"}}}, "name from a variable"),
    (service(pid="${UNSET:-container:acme_y-desktop-extension-service}"), "pid from a variable"),
    (service(network_mode="acme_y-desktop-extension_default"), "would join the network of that name"),
    (service(extends="dockext-sockperm"), "not a service of this file"),  # userns_mode: host, CHOWN...
    (service(extends={"service": "dockext-relay"}), "not a service of this file"),
    (service(network_mode="service:dockext-sockperm"), "not a service of this file"),
    (service(volumes_from=["dockext-relay"]), "not a service of this file"),
    (service(depends_on=["dockext-relay"]), "names a service dockext adds"),
    ({"services": {"dockext-relay": {"image": "x"}}}, "reserved by dockext"),
    # what Compose does on the machine it runs on, not in a container (on a remote engine: dockext's own machine)
    (service(provider={"type": "/home/u/.local/share/dockext/extensions/acme_x/host/bin"}), "uses `provider`"),
    (service(use_api_socket=True), "uses `use_api_socket`"),
    # a container name is global to the engine: taking another backend's makes that extension's install fail
    (service(container_name="acme_y-desktop-extension-service"), "the name of another extension's container"),
    (service(container_name="acme_y-desktop-extension-db-1"), "the name of another extension's container"),
    (service(container_name=f"{PROJECT}-y-desktop-extension-service"), "the name of another extension's"),
    (service(container_name="${UNSET:-acme_y-desktop-extension-service}"), "container_name from a variable"),
    ({"services": {"x-desktop-extension-db": {"image": "x"}}}, "would name its container like another"),
])
def test_nothing_reaches_into_another_project_whatever_the_grants(doc, why):
    with pytest.raises(MetadataError, match=why):
        backendpolicy.check_isolation(doc, PROJECT)


@pytest.mark.parametrize("volume", ["c:/var/run/docker.sock:/var/run/docker.sock", "C:\\:/hostc",
                                    "\\\\.\\pipe\\docker_engine:/pipe"])
def test_windows_host_paths_are_host_paths(volume):
    """Found in a review: the rules took these for named volumes; Compose reads host paths (binds)."""
    assert backendpolicy.bind_grants(volume, SOCKET) == {"system"}
    assert restrict(service(volumes=[volume]), engine=True, system=False)["services"]["api"]["volumes"] == []


def test_what_a_backend_may_do_with_its_own_project_is_left_alone():
    doc = {**service(volumes_from=["service:db"], network_mode="service:db", environment={"A": "${A:-1}"},
                     ports=["127.0.0.1:8080:80"], command="serve --port $$PORT"),
           "volumes": {"data": {}, "mine": {"name": f"{PROJECT}_mine"}},
           "networks": {"n": {}}}
    doc["services"]["db"] = {"image": "postgres", "volumes": ["data:/var/lib/postgresql"]}
    doc["services"]["ui"] = {"image": "x", "container_name": f"{PROJECT}-service"}  # Docker Desktop's own name
    doc["services"]["coder"] = {"image": "x", "container_name": "coder_embedded_dd_vm"}  # a published extension's
    backendpolicy.check_isolation(doc, PROJECT)
    assert restrict(doc) == doc  # nothing of the host: nothing to take out
    assert backendpolicy.is_privileged("true") and backendpolicy.is_privileged(True)
    assert not backendpolicy.is_privileged("false") and not backendpolicy.is_privileged(None)


def test_what_it_asks_for_is_reported_by_the_same_rules():
    asked = permissions.requested(HOSTILE)
    assert asked.privileged == ("api",) and asked.engine_socket  # the "true" string and the ancestor binds
    assert set(asked.host_paths) >= {"/", "./conf", "/run/guest-services/../../etc"}
    assert "gpus" in asked.other and "sysctls" in asked.other
    hidden = permissions.requested(service(volumes=["${HOME}:/h"]))
    assert hidden.host_paths == ("${HOME}",) and hidden.asks("system")
    assert permissions.requested(restrict(HOSTILE)) == permissions.Requested(network=True)
    yaml.safe_dump(restrict(HOSTILE))  # still a plain document


PORTS = ["8080", 8081, "8082/udp", "9000-9001:7000-7001", "0.0.0.0:5432:5432", "[::]:5433:5433", ":::5434:5434",
         "127.0.0.1:6000:6000", "[::1]:6001:6001", "127.0.0.1::6002", {"target": 80, "published": "8090"},
         {"target": 81, "host_ip": "0.0.0.0", "protocol": "udp"}, {"target": 82, "host_ip": "127.0.0.1"}]


def test_denied_system_keeps_published_ports_on_the_loopback_interface(tmp_path):
    """Compose publishes on every interface unless told otherwise: the machine's network. With `system` denied,
    what Compose itself resolves listens on loopback only, every port and protocol kept."""
    doc = service(ports=PORTS)
    before = resolved(doc, tmp_path)["services"]["api"]["ports"]
    assert {p.get("host_ip") for p in before} >= {None, "0.0.0.0", "::"}  # the check can fail
    after = resolved(restrict(doc, engine=True, system=False), tmp_path)["services"]["api"]["ports"]
    assert all(backendpolicy._is_loopback(p.get("host_ip")) for p in after), after

    def shape(ports: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((p["target"], p.get("published"), p.get("protocol")) for p in ports)
    assert shape(after) == shape(before)
    assert restrict(doc, engine=False, system=True) == doc  # only `system` covers them
    asked = permissions.requested(doc)
    assert asked.asks("system") and asked.network_ports == tuple(sorted(
        f"api {p}" for p in ["8080", "8081", "8082/udp", "9000-9001:7000-7001", "0.0.0.0:5432:5432",
                             "[::]:5433:5433", ":::5434:5434", "8090:80", "81/udp"]))
    [line] = asked.lines()
    assert line.startswith("ports open to the network: ") and "api 8080, api 8081, api 8082/udp" in line
    assert permissions.requested(restrict(doc, engine=True, system=False)) == permissions.Requested(network=True)
    # on the host's network, publishing means nothing (the service listens there itself, asked as such)
    assert permissions.requested(service(network_mode="host", ports=["80"])).network_ports == ()


@pytest.mark.parametrize("ports, why", [
    (["${P}:80"], "publishes a port from a variable"),
    ([{"target": 80, "host_ip": "${IP}"}], "publishes a port from a variable"),
    ("8080:80", "`ports` that are not a list"),
    ([["80"]], "a `ports` entry dockext cannot read"),
])
def test_published_ports_that_cannot_be_read_are_refused_when_system_is_denied(ports, why):
    with pytest.raises(MetadataError, match=why):
        restrict(service(ports=ports), engine=True, system=False)
    restrict(service(ports=ports), engine=False, system=True)  # not system's business: left to Compose
    assert permissions.requested(service(ports=["${P}:80"])).asks("system")  # it may be the network


def test_denied_network_makes_every_network_of_the_project_internal(tmp_path):
    """Without the network grant, Compose's own resolution has only internal networks (no gateway: the
    services reach each other and nothing else), whatever the services asked for."""
    doc = {"services": {
        "api": {"image": "x", "networks": ["front", "back"]},
        "db": {"image": "x", "networks": {"back": {"aliases": ["database"]}}},
        "plain": {"image": "x"},
        "bridged": {"image": "x", "network_mode": "bridge"},
        "on_host": {"image": "x", "network_mode": "host"},
        "sidecar": {"image": "x", "network_mode": "service:plain"},
        "offline": {"image": "x", "network_mode": "none"},
    }, "networks": {"front": None, "back": {"driver": "bridge", "labels": {"a": "b"}}}}
    before = resolved(doc, tmp_path)
    assert not all(n.get("internal") for n in before["networks"].values())  # the check can fail
    config = resolved(restrict(doc, engine=True, system=True, network=False), tmp_path)
    assert config["networks"] and all(n.get("internal") is True for n in config["networks"].values()), \
        config["networks"]
    services = config["services"]
    for name in ("api", "db", "plain", "bridged", "on_host"):
        assert set(services[name]["networks"]) <= set(config["networks"]), name  # only the project's own
        assert services[name].get("network_mode") is None, name
    assert services["sidecar"]["network_mode"] == "service:plain" and services["offline"]["network_mode"] == "none"
    assert config["networks"]["back"]["labels"] == {"a": "b"}
    asked = permissions.requested(doc)
    assert asked.asks("network")  # every container's default: not a host access, so not among the lines
    assert asked.lines() == ["the host's network (network_mode: host): on_host"]
    assert not permissions.requested(service(network_mode="none")).asks("network")
    assert restrict(doc, engine=True, system=True, network=True) == doc


@pytest.mark.parametrize("networks, why", [
    ({"lan": {"driver": "macvlan"}}, "uses the 'macvlan' driver"),
    ({"shared": {"external": True, "name": "corp"}}, "is an existing network"),
    ({"n": {"driver": "${DRIVER}"}}, "cannot be vetted"),
    ({"n": "bridge"}, "cannot be vetted"),
])
def test_a_network_that_could_lead_out_is_refused_when_network_is_denied(networks, why):
    doc = {**service(networks=list(networks)), "networks": networks}
    with pytest.raises(MetadataError, match=why):
        restrict(doc, engine=True, system=True, network=False)
    restrict(doc, engine=True, system=True, network=True)


def test_a_restricted_backend_gets_no_privileged_hook(tmp_path):
    """post_start/pre_stop hooks are execs the engine runs in the service: a privileged one has every
    capability, whatever the service itself was allowed. With `system` denied, Compose's resolution has none."""
    hooks = [{"command": ["sh", "-c", "id"], "privileged": True, "user": "root"}]
    doc = service(post_start=hooks, pre_stop=hooks)
    assert resolved(doc, tmp_path)["services"]["api"]["post_start"][0]["privileged"] is True  # the check can fail
    api = resolved(restrict(doc, engine=True, system=False), tmp_path)["services"]["api"]
    for hook in ("post_start", "pre_stop"):
        assert [not h.get("privileged") and h["command"] == ["sh", "-c", "id"] for h in api[hook]] == [True], api
    assert restrict(doc, engine=False, system=True)["services"]["api"]["post_start"] == hooks


@pytest.mark.parametrize("doc, why", [
    # a network on a bridge of the host (it takes the bridge's address), or with the LAN's addresses
    ({**service(), "networks": {"default": {"driver_opts": {"com.docker.network.bridge.name": "br0"}}}},
     "driver options or addresses"),
    ({**service(), "networks": {"default": {"ipam": {"config": [{"subnet": "192.168.1.0/24"}]}}}},
     "driver options or addresses"),
    # an existing network or volume under its own name (used as it is, or taken over), or someone else's data
    ({**service(), "networks": {"default": {"name": "myapp_default"}}}, "is named 'myapp_default'"),
    ({**service(volumes=["d:/d"]), "volumes": {"d": {"name": "postgres_data"}}}, "is named 'postgres_data'"),
    ({**service(volumes=["d:/d"]), "volumes": {"d": {"external": True}}}, "is an existing volume"),
    # output shipped by dockerd, from the host: to any address, or into any host socket
    (service(logging={"driver": "syslog", "options": {"syslog-address": "udp://127.0.0.1:514"}}), "'syslog'"),
    (service(logging={"driver": "gelf"}), "'gelf' logging driver"),
    (service(logging="syslog"), "logging driver"),
])
@pytest.mark.parametrize("denied", ["engine", "system", "network"])
def test_what_leads_outside_the_project_is_refused_under_any_denied_grant(doc, why, denied):
    grants = {"engine": True, "system": True, "network": True, denied: False}
    with pytest.raises(MetadataError, match=why):
        backendpolicy.restrict(doc, engine_socket=SOCKET, project=PROJECT, **grants)
    assert backendpolicy.restrict(doc, engine_socket=SOCKET, project=PROJECT, engine=True, system=True,
                                  network=True) == doc


def test_a_restricted_backend_keeps_its_own_named_things_and_plain_logs(tmp_path):
    doc = {**service(volumes=["d:/d"], logging={"driver": "json-file", "options": {"max-size": "1m"}}),
           "volumes": {"d": {"name": f"{PROJECT}_d"}}, "networks": {"default": {"name": f"{PROJECT}_net"}}}
    out = backendpolicy.restrict(doc, engine_socket=SOCKET, project=PROJECT, engine=False, system=False,
                                 network=False)
    assert out["volumes"] == doc["volumes"] and out["services"]["api"]["logging"] == doc["services"]["api"]["logging"]
    assert out["networks"]["default"] == {"name": f"{PROJECT}_net", "internal": True}


def test_a_name_that_starts_like_the_project_but_is_another_extensions_is_refused():
    """Extension keys may hold `_` and `-desktop-extension`: the volume of extension `a-desktop-extension/x`
    (project `a-desktop-extension_x-desktop-extension`) starts with the project of extension `a`."""
    project = "a-desktop-extension"
    theirs = {**service(volumes=["v:/v"]), "volumes": {"v": {"name": f"{project}_x-desktop-extension_data"}}}
    with pytest.raises(MetadataError, match="belongs to another extension"):
        backendpolicy.check_isolation(theirs, project)
    with pytest.raises(MetadataError, match="only have volumes of its own project"):
        backendpolicy.restrict(theirs, engine_socket=SOCKET, project=project, engine=False, system=True)
    mine = {**service(volumes=["v:/v"]), "volumes": {"v": {"name": f"{project}_data"}}}
    backendpolicy.check_isolation(mine, project)
    backendpolicy.restrict(mine, engine_socket=SOCKET, project=project, engine=False, system=True)


def check_resolved(config: dict[str, Any], engine: bool = False, system: bool = False, network: bool = True) -> None:
    backendpolicy.check_resolved(config, engine=engine, system=system, network=network, engine_socket=SOCKET,
                                 project=PROJECT)


PUBLISHING = service(ports=PORTS, volumes=["d:/d"], networks=["default", "back"])
PUBLISHING.update(volumes={"d": {}}, networks={"back": {}})


@pytest.mark.parametrize("doc", [HOSTILE, PUBLISHING], ids=["hostile", "ports"])
@pytest.mark.parametrize("grants", [(e, s, n) for e in (True, False) for s in (True, False) for n in (True, False)],
                         ids=lambda g: "engine={},system={},network={}".format(*g))
def test_compose_reads_the_restricted_file_as_dockext_does_for_every_grant(doc, grants, tmp_path):
    """The install vets Compose's own reading of the file it writes (`compose config`) by the same rules: it
    must find nothing to take out, whatever the grants, or every restricted install would be refused."""
    engine, system, network = grants
    kept = backendpolicy.restrict(doc, engine=engine, system=system, network=network, engine_socket=SOCKET,
                                  project=PROJECT)
    check_resolved(resolved(kept, tmp_path), engine=engine, system=system, network=network)


@pytest.mark.parametrize("changed, where", [
    ({"privileged": True}, "services.api.privileged"),
    ({"volumes": [{"type": "bind", "source": "/etc", "target": "/hostetc"}]}, "services.api.volumes[0]"),
    ({"ports": [{"target": 80, "published": "80", "host_ip": "0.0.0.0", "protocol": "tcp"}]},
     "services.api.ports[0].host_ip"),
    ({"network_mode": "host"}, "services.api.network_mode"),
])
def test_what_compose_reads_otherwise_than_dockext_is_refused(changed, where, tmp_path):
    """Where Compose's reading holds what the denied grants cover (dockext's reading of the YAML missed it), the
    install is refused, naming where."""
    config = resolved(restrict(service()), tmp_path)
    check_resolved(config)  # as written: nothing to take out
    config["services"]["api"].update(changed)
    with pytest.raises(MetadataError, match=rf"reads it otherwise than dockext did: its {re.escape(where)} asks"):
        check_resolved(config)
    check_resolved(config, engine=True, system=True)  # with the grants allowed, it may have all of that


def test_compose_reading_is_isolated_too_and_dockexts_own_services_are_not_the_authors(tmp_path):
    config = resolved(restrict(service()), tmp_path)
    config["services"]["api"]["container_name"] = "acme_y-desktop-extension-service"
    with pytest.raises(MetadataError, match="as Docker Compose reads it: service 'api' has container_name"):
        check_resolved(config, engine=True, system=True)
    config = resolved(restrict(service()), tmp_path)
    config["services"]["dockext-sockperm"] = {"image": "s", "userns_mode": "host", "cap_add": ["CHOWN"]}
    config["volumes"] = {"dockext-guest-services": {"driver_opts": {"type": "tmpfs"}}}
    check_resolved(config)  # dockext's own, with every grant denied
