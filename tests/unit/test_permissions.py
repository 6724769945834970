"""The permission model's pure parts: what a backend asks for, the grants file, the refusal."""

from __future__ import annotations

import json
import stat

import pytest

from dockext import backendpolicy, permissions
from dockext.errors import DockextError, PermissionDenied, StateError
from dockext.paths import Layout
from dockext.permissions import DEFAULT, Grants, Requested


def test_a_backend_asks_for_what_its_compose_file_says():
    doc = {"services": {
        "api": {"image": "x", "volumes": [
            "/var/run/docker.sock.raw:/var/run/docker.sock", "data:/data", "/run/guest-services:/run/guest-services",
            {"type": "bind", "source": "/etc", "target": "/host-etc"},
            {"type": "volume", "source": "v", "target": "/v"},
            "./config:/config:ro",
        ], "cap_add": ["NET_ADMIN"], "devices": ["/dev/fuse:/dev/fuse"]},
        "agent": {"image": "x", "privileged": True, "pid": "host", "network_mode": "host"},
        "quiet": {"image": "x"},
    }}
    asked = permissions.requested(doc, ("kubectl",))
    assert asked == Requested(
        engine_socket=True, privileged=("agent",), host_network=("agent",), host_pid=("agent",),
        host_paths=("./config", "/etc"), devices=("/dev/fuse",), capabilities=("NET_ADMIN",),
        host_binaries=("kubectl",), network=True,
    )
    assert asked.lines()[:2] == [
        "privileged containers (root on the host): agent", "the Docker engine's socket (full control of the engine)",
    ]


def test_a_ui_only_extension_or_a_plain_backend_asks_for_nothing():
    assert permissions.requested(None) == Requested()
    assert permissions.requested({"services": {"s": {"image": "x", "volumes": ["data:/data"]}}}).lines() == []


def test_requested_round_trips_through_the_extension_directory(tmp_path):
    asked = permissions.requested({"services": {"s": {"image": "x", "privileged": True}}}, ("tool",))
    (tmp_path / permissions.REQUESTED_FILE).write_text(json.dumps(asked.to_json()))
    assert permissions.read_requested(tmp_path) == asked
    assert permissions.read_requested(tmp_path / "missing") is None


@pytest.fixture
def layout(tmp_path) -> Layout:
    lay = Layout(tmp_path / "home")
    lay.ensure()
    return lay


def test_grants_default_to_everything_and_are_kept_per_extension(layout):
    assert permissions.grants_for(layout, "acme_x") == DEFAULT == Grants(docker=True, host=True)
    assert permissions.set_grants(layout, "acme_x", docker=False) == Grants(docker=False, host=True)
    assert permissions.grants_for(layout, "acme_y") == DEFAULT
    path = layout.root / permissions.FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    permissions.set_grants(layout, "acme_x", docker=True)  # back to the defaults: the entry goes
    assert json.loads(path.read_text())["extensions"] == {}
    permissions.set_grants(layout, "acme_x", host=False)
    permissions.forget(layout, "acme_x")
    assert permissions.load(layout) == {}
    with pytest.raises(DockextError, match="unknown permission wifi"):
        permissions.set_grants(layout, "acme_x", wifi=False)


def test_a_denied_permission_is_refused_with_the_way_back(layout):
    permissions.check(DEFAULT, "docker", "X", "acme/x")
    with pytest.raises(PermissionDenied) as denied:
        permissions.check(Grants(docker=False), "docker", "X", "acme/x")
    assert denied.value.message == "X may not run docker commands and read the engine's lists (ddClient.docker): " \
        "that permission is denied"
    assert denied.value.hint == "Allow it with: dockext permissions set acme/x docker=allow"
    assert denied.value.type == "PermissionDenied" and denied.value.http_status == 403


def test_an_unreadable_or_newer_grants_file_is_an_error_never_the_defaults(layout):
    path = layout.root / permissions.FILE
    path.write_text("{")
    with pytest.raises(StateError, match="unreadable"):
        permissions.load(layout)
    path.write_text(json.dumps({"schema": 99, "extensions": {}}))
    with pytest.raises(StateError, match="upgrade dockext"):
        permissions.load(layout)
    for odd in ([1], 5, "all"):  # hand edits of another shape: the file is named, nothing crashes further on
        path.write_text(json.dumps({"schema": 1, "extensions": odd}))
        with pytest.raises(StateError, match="'extensions' is not a JSON object") as info:
            permissions.load(layout)
        assert str(path) in info.value.message and "Fix or delete the file" in (info.value.hint or "")


def test_only_a_json_true_allows(layout):
    (layout.root / permissions.FILE).write_text(json.dumps(
        {"schema": 1, "extensions": {"a": {"docker": "false", "host": 1}, "b": {"docker": False}}}
    ))
    assert permissions.load(layout) == {"a": Grants(docker=False, host=False), "b": Grants(docker=False, host=True)}


def restrict(doc, **grants):
    return backendpolicy.restrict(doc, engine_socket="/var/run/docker.sock", **grants)


RISKY = {"services": {
    "api": {"image": "x", "volumes": [
        "/var/run/docker.sock.raw:/var/run/docker.sock", "data:/data", "/run/guest-services:/run/guest-services",
        {"type": "bind", "source": "/etc", "target": "/host-etc"}, "./config:/config:ro",
    ], "cap_add": ["NET_ADMIN"], "devices": ["/dev/fuse:/dev/fuse"], "security_opt": ["seccomp=unconfined"],
        "ipc": "host", "environment": {"A": "1"}},
    "agent": {"image": "x", "privileged": True, "pid": "host", "network_mode": "host", "uts": "host"},
}}


def test_backend_grants_take_out_of_the_compose_file_what_they_cover_and_nothing_else():
    asked = permissions.requested(RISKY)
    assert asked.other == ("ipc: host", "security_opt: seccomp=unconfined", "uts: host")
    assert asked.asks("engine") and asked.asks("system") and not Requested().asks("system")
    no_engine = restrict(RISKY, engine=False, system=True)
    assert no_engine["services"]["api"]["volumes"] == RISKY["services"]["api"]["volumes"][1:]
    assert permissions.requested(no_engine) == Requested(**{**asked.__dict__, "engine_socket": False})
    no_system = restrict(RISKY, engine=True, system=False)
    assert no_system["services"] == {
        "api": {"image": "x", "volumes": ["/var/run/docker.sock.raw:/var/run/docker.sock", "data:/data",
                                          "/run/guest-services:/run/guest-services"], "environment": {"A": "1"}},
        "agent": {"image": "x"},
    }
    assert permissions.requested(no_system) == Requested(engine_socket=True, network=True)
    assert restrict(RISKY, engine=True, system=True) == RISKY  # a copy, as it was
    assert permissions.withheld(Grants(engine=False, system=False), asked) == ("engine", "system")
    # a grant the backend does not need withholds nothing
    assert permissions.withheld(Grants(system=False), permissions.requested(no_system)) == ()


def test_backend_grants_are_kept_with_the_others_and_default_to_allowed(layout):
    assert permissions.set_grants(layout, "acme_x", engine=False) == Grants(engine=False)
    assert permissions.grants_for(layout, "acme_x").to_json() == {
        "docker": True, "host": True, "web": True, "engine": False, "system": True, "network": True}
    # a file from before the backend grants: they default to allowed
    (layout.root / permissions.FILE).write_text(json.dumps({"schema": 1, "extensions": {"a": {"docker": False}}}))
    assert permissions.load(layout) == {"a": Grants(docker=False)}
    # what a backend asked for, recorded by an older dockext (no "other" yet), is still read
    old = permissions.requested(RISKY).to_json()
    del old["other"]
    (layout.root / permissions.REQUESTED_FILE).write_text(json.dumps(old))
    assert permissions.read_requested(layout.root).other == ()
