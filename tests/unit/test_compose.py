"""The compose rewrites of reference §3.2, on documents shaped like real extensions' files."""

from __future__ import annotations

import json
import os
import random
import subprocess

import pytest
import yaml

from dockext import compose, goyaml
from dockext.composecli import compose_binary
from dockext.errors import MetadataError

KW = dict(
    key="acme_ext",
    project="acme_ext-desktop-extension",
    image="acme/ext:1.2.0",
    title="My Ext",
    engine_socket="/run/user/1000/docker.sock",
    guest_services=compose.guest_services_bind("/home/u/.local/share/dockext/gs/abcd1234"),
)
GS_BIND = {"type": "bind", "source": "/home/u/.local/share/dockext/gs/abcd1234", "target": "/run/guest-services"}


def test_generated_backend_runs_the_extension_image_with_init():
    out = compose.rewrite(compose.generated(), **KW)
    svc = out.document["services"]["service"]
    assert svc["image"] == "acme/ext:1.2.0"
    assert svc["init"] is True
    assert svc["container_name"] == "acme_ext-desktop-extension-service"
    assert out.document["name"] == "acme_ext-desktop-extension"


def test_every_service_gets_labels_restart_and_guest_services_mount():
    doc = compose.parse(
        b"""
services:
  zeta:
    image: ${DESKTOP_PLUGIN_IMAGE}
    labels: ["author=me"]
  alpha:
    image: other:1
    restart: "no"
    labels: {keep: "yes"}
"""
    )
    out = compose.rewrite(doc, **KW)
    assert out.first_service == "zeta"  # the author's order, not alphabetical
    zeta, alpha = out.document["services"]["zeta"], out.document["services"]["alpha"]
    assert zeta["image"] == "acme/ext:1.2.0"
    assert zeta["restart"] == "always"
    assert alpha["restart"] == "no"  # a one-shot the author asked for stays one-shot
    assert zeta["labels"]["author"] == "me" and alpha["labels"]["keep"] == "yes"
    for svc in (zeta, alpha):
        assert svc["labels"]["com.docker.desktop.extension"] == "true"
        assert svc["labels"]["com.docker.desktop.extension.name"] == "My Ext"
        assert svc["labels"]["dockext.extension"] == "acme_ext"
        assert GS_BIND in svc["volumes"]
    assert zeta["container_name"] == "acme_ext-desktop-extension-service"
    assert "container_name" not in alpha


def test_engine_socket_paths_map_to_the_real_engine_socket_in_both_syntaxes():
    doc = compose.parse(
        b"""
services:
  a:
    image: x
    volumes:
      - /var/run/docker.sock.raw:/var/run/docker.sock
      - /var/run/docker.sock:/var/run/docker2.sock:ro
      - type: bind
        source: /var/run/docker.sock.raw
        target: /sock
      - data:/data
      - /run/guest-services:/run/guest-services
volumes:
  data: {}
"""
    )
    vols = compose.rewrite(doc, **KW).document["services"]["a"]["volumes"]
    assert "/run/user/1000/docker.sock:/var/run/docker.sock" in vols
    assert "/run/user/1000/docker.sock:/var/run/docker2.sock:ro" in vols
    assert {"type": "bind", "source": "/run/user/1000/docker.sock", "target": "/sock"} in vols
    assert "data:/data" in vols
    # the old explicit guest-services mount is replaced by ours, not doubled
    assert [v for v in vols if "guest-services" in str(v)] == [GS_BIND]


def test_author_container_name_and_deploy_restart_policy_are_kept():
    doc = compose.parse(
        b"services:\n  a:\n    image: x\n    container_name: mine\n"
        b"    deploy: {restart_policy: {condition: on-failure}}\n"
    )
    svc = compose.rewrite(doc, **KW).document["services"]["a"]
    assert svc["container_name"] == "mine"
    assert "restart" not in svc


def test_extra_services_are_added_last_and_cannot_shadow_the_authors():
    doc = compose.parse(b"services:\n  a:\n    image: x\n")
    out = compose.rewrite(doc, **KW, extra_services={"helper": {"image": "h"}})
    assert list(out.document["services"]) == ["a", "helper"]
    assert out.first_service == "a"
    with pytest.raises(MetadataError, match="reserved"):
        compose.rewrite(doc, **KW, extra_services={"a": {"image": "h"}})


def test_dump_round_trips_and_keeps_order():
    doc = compose.parse(b"services:\n  b: {image: x}\n  a: {image: y}\n")
    text = compose.rewrite(doc, **KW).dump()
    assert list(yaml.safe_load(text)["services"]) == ["b", "a"]


@pytest.mark.parametrize(
    "text, problem",
    [
        (b"services: [", "not valid YAML"),
        (b"- a\n- b\n", "not a YAML mapping"),
        (b"version: '3'\n", "defines no services"),
        (b"services:\n  a: 3\n", "is not a mapping"),
    ],
)
def test_broken_compose_files_name_the_field(text, problem):
    with pytest.raises(MetadataError) as info:
        compose.parse(text)
    assert info.value.field == "vm.composefile"
    assert problem in str(info.value)


def test_remote_engine_guest_services_is_a_tmpfs_volume_of_the_project_shared_with_the_relay():
    """A remote engine's containers cannot see this host: /run/guest-services is a project volume instead of a
    directory here, declared as a tmpfs (sockets left by a stopped backend vanish), on every service, the
    relay included; the author's own volumes stay beside it."""
    doc = compose.parse(
        b"services:\n  a:\n    image: x\n    volumes: [data:/data, /run/guest-services:/run/guest-services]\n"
        b"  b:\n    image: y\nvolumes:\n  data: {}\n"
    )
    relay = {"image": "dockext/sockperm:abc", "command": ["idle"]}
    out = compose.rewrite(doc, **{**KW, "guest_services": compose.guest_services_volume()},
                          extra_services={"dockext-relay": relay}).document
    mount = {"type": "volume", "source": compose.GS_VOLUME, "target": "/run/guest-services"}
    for name in ("a", "b", "dockext-relay"):
        assert [v for v in out["services"][name]["volumes"] if "guest-services" in str(v)] == [mount]
    assert "data:/data" in out["services"]["a"]["volumes"]
    assert out["volumes"]["data"] == {}
    spec = out["volumes"][compose.GS_VOLUME]
    assert spec["driver"] == "local" and spec["driver_opts"]["type"] == "tmpfs"
    assert spec["driver_opts"]["o"] == "mode=1777,size=64m"
    # Podman 4 takes `size` for a quota: the same 64 MiB in tmpfs's own pages
    podman = compose.rewrite(doc, **{**KW, "guest_services": compose.guest_services_volume()}, podman=True)
    assert podman.document["volumes"][compose.GS_VOLUME]["driver_opts"] == {
        "type": "tmpfs", "device": "tmpfs", "o": "mode=1777,nr_blocks=16384"}
    assert compose.GS_VOLUME_SPEC["driver_opts"]["o"] == "mode=1777,size=64m"  # the shared spec is not changed
    # the document compose reads back is still valid YAML with both volumes
    assert set(yaml.safe_load(compose.rewrite(doc, **{**KW, "guest_services": compose.guest_services_volume()})
                              .dump())["volumes"]) == {"data", compose.GS_VOLUME}


def test_remote_engine_volume_name_is_reserved():
    doc = compose.parse(b"services:\n  a:\n    image: x\nvolumes:\n  dockext-guest-services: {}\n")
    with pytest.raises(MetadataError, match="reserved"):
        compose.rewrite(doc, **{**KW, "guest_services": compose.guest_services_volume()})
    # a local engine does not declare the volume, so the name is only the author's there
    assert "dockext-guest-services" in compose.rewrite(doc, **KW).document["volumes"]


def test_host_docker_internal_resolves_to_the_engines_host_unless_the_file_says_otherwise():
    """Docker Desktop resolves ``host.docker.internal`` in every container; a plain engine does so when asked
    (``host-gateway``). Services without a network of their own get nothing (the engine would refuse it for a
    shared namespace), and a mapping the author made is kept, in either syntax."""
    doc = compose.parse(
        b"""
services:
  plain:
    image: ${DESKTOP_PLUGIN_IMAGE}
  listed:
    image: x
    extra_hosts: ["db.local:10.0.0.5"]
  mapped:
    image: x
    extra_hosts: {db.local: 10.0.0.5}
  own-list:
    image: x
    extra_hosts: ["host.docker.internal=192.168.1.9"]
  own-map:
    image: x
    extra_hosts: {host.docker.internal: 192.168.1.9}
  hostnet:
    image: x
    network_mode: host
  nonet:
    image: x
    network_mode: none
  sidecar:
    image: x
    network_mode: "service:plain"
  other:
    image: x
    network_mode: "container:abc"
"""
    )
    services = compose.rewrite(doc, **KW, host_alias=True).document["services"]
    assert services["plain"]["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert services["listed"]["extra_hosts"] == ["db.local:10.0.0.5", "host.docker.internal:host-gateway"]
    assert services["mapped"]["extra_hosts"] == {"db.local": "10.0.0.5", "host.docker.internal": "host-gateway"}
    assert services["own-list"]["extra_hosts"] == ["host.docker.internal=192.168.1.9"]
    assert services["own-map"]["extra_hosts"] == {"host.docker.internal": "192.168.1.9"}
    for name in ("hostnet", "nonet", "sidecar", "other"):
        assert "extra_hosts" not in services[name], name
    # an engine that does not know host-gateway (Podman, Docker before 20.10): the file as the author wrote it
    services = compose.rewrite(doc, **KW).document["services"]
    assert "extra_hosts" not in services["plain"]
    assert services["listed"]["extra_hosts"] == ["db.local:10.0.0.5"]



def test_keys_that_read_files_where_compose_runs_are_dropped():
    """Found in a review: with every grant allowed, `env_file: <dockext's home>/server.json` or a `build` context
    of ~/.ssh read files of the machine Compose runs on (dockext's own, on a remote engine). Only the compose file
    is read out of the image, so such files are never there: the keys go, as the files would be missing in Docker
    Desktop."""
    doc = compose.parse(b"""
services:
  api:
    image: ${DESKTOP_PLUGIN_IMAGE}
    build: {context: /root/.ssh}
    env_file: /home/u/.local/share/dockext/server.json
    label_file: /etc/shadow
""")
    svc = compose.rewrite(doc, **KW).document["services"]["api"]
    assert not {"build", "env_file", "label_file"} & set(svc)


SCALARS = ["22:22", "53:53", "1:20.5", "yes", "No", "on", "OFF", "y", "true", "False", "017", "0o17", "-0o17", "0x1F",
           "0b101", "1_000", "+12", "1.5", "3.", "~", "null", "8080:80", "0.0.0.0:53:53/udp",
           # Go reads these as floats (no dot needed, a leading zero is fine) where YAML 1.1 has strings
           "08", "-08", "09.5", "1e3", "1E+3", "+1e3", "2e-3", "1_0.5", "1e1_0", ".5", "-.5e1", "007", "00",
           "1__0", "1_", "1e", "1e_", "1.2.3", "e3", "+.", "1e999", ".inf", "-.Inf", ".NaN", "0X1F", "0B101", "0O17",
           "0x_1F", "-_1.5", "._5", ".5_", "1_.5", "99999999999999999999", "<<", "=", "2001-02-30"]
QUOTED_ONLY = ["2001-12-14", "2001-12-14 21:59:43.10", "2001-12-14t21:59:43.10-05:00"]  # plain: timestamps


def test_dockext_reads_each_plain_scalar_as_compose_does(tmp_path):
    """Compose keeps an ``x-`` field's values as yaml.v3 typed them (numbers, booleans, null, strings): dockext's
    own reading of each plain scalar has the same type and value (NaN and infinities have no JSON)."""
    values = [v for v in SCALARS if v.lower() not in (".nan", ".inf", "-.inf")]
    text = "services:\n  a:\n    image: x\nx-v:\n" + "".join(f"  V{i}: {v}\n" for i, v in enumerate(values))
    path = tmp_path / "docker-compose.yaml"
    path.write_text(text)
    out = subprocess.run([compose_binary(), "-f", str(path), "config", "--format", "json"], capture_output=True,
                         text=True, env={**os.environ}, check=True)
    theirs = json.loads(out.stdout)["x-v"]
    ours = compose.parse(text.encode())["x-v"]

    def kind(x: object) -> str:
        return "number" if type(x) in (int, float) else type(x).__name__

    for i, value in enumerate(values):
        mine, compose_s = ours[f"V{i}"], theirs[f"V{i}"]
        assert (kind(mine), mine) == (kind(compose_s), compose_s), value
    assert compose.parse(b"services: {a: {image: x}}\nx-t: 2001-12-14\n")["x-t"] == "2001-12-14"


def _plain_scalar(text: str) -> bool:
    """``text`` is read back as one plain scalar when written unquoted as a mapping's value."""
    try:
        node = yaml.compose(f"k: {text}\n")
    except yaml.YAMLError:
        return False
    value = node.value[0][1] if isinstance(node, yaml.MappingNode) and len(node.value) == 1 else None
    return isinstance(value, yaml.ScalarNode) and value.style is None and value.value == text


def test_random_number_like_scalars_are_typed_as_compose_types_them(tmp_path):
    """400 random spellings made of digits, signs, dots, exponents, base prefixes, underscores and dashes (one
    fixed seed): dockext's reading of each has the type and value of Compose's, and the file dockext writes
    back says the same to Compose (a date, which Compose turns into a time, stays a string to dockext)."""
    rng = random.Random(25)
    alphabet = "0123456789" * 3 + "+-._eExXoObB:"
    texts: list[str] = []
    while len(texts) < 400:
        t = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
        if t not in texts and _plain_scalar(t):
            texts.append(t)
    texts += ["2001-12-14", "2001-12-14 21:59:43.10"]  # the date formats are not made by chance

    def compose_reads(text: str) -> dict[str, object]:
        path = tmp_path / "docker-compose.yaml"
        path.write_text(text)
        out = subprocess.run([compose_binary(), "-f", str(path), "config", "--format", "json"],
                             capture_output=True, text=True, env={**os.environ}, check=True)
        return dict(json.loads(out.stdout)["x-v"])

    author = "services:\n  a:\n    image: x\nx-v:\n" + "".join(f"  V{i}: {t}\n" for i, t in enumerate(texts))
    theirs = compose_reads(author)
    ours = compose.parse(author.encode())
    assert compose_reads(compose.Rewritten(ours, "a").dump().decode()) == theirs
    for i, text in enumerate(texts):
        mine, compose_s = ours["x-v"][f"V{i}"], theirs[f"V{i}"]
        if isinstance(mine, goyaml.Timestamp):
            assert isinstance(compose_s, str) and compose_s.startswith(text[:10]), (text, compose_s)
        elif isinstance(mine, str) or isinstance(compose_s, str):
            assert mine == compose_s, text
        else:
            assert mine == compose_s and not isinstance(mine, bool), text


def test_plain_scalars_are_read_as_compose_reads_them(tmp_path):
    """Compose reads YAML with Go's yaml.v3, not as YAML 1.1: an unquoted port `53:53` was the number 3233 to
    PyYAML (base 60) and `DEBUG: yes` the boolean true, and dockext wrote those back for Compose."""
    text = "services:\n  a:\n    image: x\n    environment:\n" + "".join(
        f"      V{i}: {value}\n      Q{i}: '{value}'\n" for i, value in enumerate(SCALARS)) + "".join(
        f"      T{i}: '{value}'\n" for i, value in enumerate(QUOTED_ONLY))
    path = tmp_path / "docker-compose.yaml"
    for written in (text, compose.Rewritten(compose.parse(text.encode()), "a").dump().decode()):
        path.write_text(written)
        out = subprocess.run([compose_binary(), "-f", str(path), "config", "--format", "json"], capture_output=True,
                             text=True, env={**os.environ}, check=True)
        env = json.loads(out.stdout)["services"]["a"]["environment"]
        if written is text:
            direct = env  # Compose's reading of the author's file
        else:
            assert env == direct  # the file dockext writes says the same to Compose
    assert direct["V0"] == "22:22" and direct["V3"] == "yes" and direct["V10"] == "15"  # what those readings are
    assert direct["V23"] == "8" and direct["V26"] == "1000"
    assert all(direct[f"Q{i}"] == value for i, value in enumerate(SCALARS))  # quoted: the string as written
    assert all(direct[f"T{i}"] == value for i, value in enumerate(QUOTED_ONLY))
    doc = compose.parse(b"services:\n  a:\n    image: x\n    ports: [53:53, 8080:80]\n    privileged: on\n")
    assert compose.parse(text.encode())["services"]["a"]["environment"]["V23"] == 8  # dockext's reading: Go's
    assert doc["services"]["a"]["ports"] == ["53:53", "8080:80"] and doc["services"]["a"]["privileged"] == "on"
