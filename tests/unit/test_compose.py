"""The compose rewrites of reference §3.2, on documents shaped like real extensions' files."""

from __future__ import annotations

import pytest
import yaml

from dockext import compose
from dockext.errors import MetadataError

KW = dict(
    key="acme_ext",
    project="acme_ext-desktop-extension",
    image="acme/ext:1.2.0",
    title="My Ext",
    engine_socket="/run/user/1000/docker.sock",
    guest_services_dir="/home/u/.local/share/dockext/gs/abcd1234",
)


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
        assert {"type": "bind", "source": KW["guest_services_dir"], "target": "/run/guest-services"} in svc[
            "volumes"
        ]
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
    assert [v for v in vols if "guest-services" in str(v)] == [
        {"type": "bind", "source": KW["guest_services_dir"], "target": "/run/guest-services"}
    ]


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
