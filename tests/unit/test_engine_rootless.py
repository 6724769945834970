"""A rootless engine as dockext sees it: told from ``GET /info``, and named when the default engine is down; an
engine with ``--userns-remap`` told the same way, and one that keeps its images in containerd. The whole flows on
real engines are tests/e2e/test_rootless.py, tests/engine/test_userns_remap.py and (for the image store)
tests/engine/test_marketplace_folder.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from dockext.dockerhost import DockerHost
from dockext.engine import Engine, _config_of
from dockext.errors import EngineUnavailable
from dockext.model import ImageRef


class InfoEngine(Engine):
    def __init__(self, info: dict) -> None:
        super().__init__(DockerHost("unix:///nonexistent/docker.sock"))
        self._info_cache = info


@pytest.mark.parametrize("options, rootless", [
    (["name=seccomp,profile=default", "name=rootless", "name=cgroupns"], True),
    (["name=apparmor", "name=seccomp,profile=default"], False),
    (None, False),
    (["name=rootlessish"], False),
])
def test_a_rootless_engine_is_told_from_its_security_options(options, rootless):
    assert InfoEngine({"ID": "X", "SecurityOptions": options}).rootless is rootless


@pytest.mark.parametrize("options, remapped", [
    (["name=seccomp,profile=default", "name=userns"], True),
    (["name=seccomp,profile=default", "name=rootless"], False),
    ([], False),
])
def test_an_engine_with_userns_remap_is_told_from_its_security_options(options, remapped):
    assert InfoEngine({"ID": "X", "SecurityOptions": options}).userns_remapped is remapped


def unreachable(monkeypatch, runtime: Path, source: str) -> EngineUnavailable:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    engine = Engine(DockerHost(f"unix://{runtime}/missing/docker.sock", source=source))
    with pytest.raises(EngineUnavailable) as info:
        engine.ping()
    return info.value


def test_when_the_default_engine_is_down_a_rootless_one_of_this_user_is_named(monkeypatch, tmp_path):
    assert "rootless" not in (unreachable(monkeypatch, tmp_path, "default").hint or "")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "docker.sock"))
        # the file a crashed engine left: nothing listens, nothing is suggested
        assert "rootless" not in (unreachable(monkeypatch, tmp_path, "default").hint or "")
        listening.listen()
        err = unreachable(monkeypatch, tmp_path, "default")
        assert err.hint == ("Is dockerd running, and may this user use it (member of the 'docker' group)? Set "
                            "DOCKER_HOST (or `docker context use`) to use another engine. A rootless engine of yours "
                            f"listens on {tmp_path}/docker.sock: use it with DOCKER_HOST=unix://{tmp_path}/docker.sock.")
        # an engine the user chose is not second-guessed
        assert "rootless" not in (unreachable(monkeypatch, tmp_path, "DOCKER_HOST").hint or "")


def test_when_the_default_engine_is_down_a_podman_service_of_this_user_is_named(monkeypatch, tmp_path):
    (tmp_path / "podman").mkdir()
    path = tmp_path / "podman" / "podman.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        listening.listen()
        err = unreachable(monkeypatch, tmp_path, "default")
        assert err.hint is not None and err.hint.endswith(
            f" Your Podman service listens on {path}: use it with DOCKER_HOST=unix://{path}."), err.hint
        assert "rootless engine" not in err.hint


@pytest.mark.parametrize("owner, remote", [
    ("another user", True),  # another user's rootless engine: its containers cannot see this user's home
    ("this user", False),  # this user's own rootless engine (or Docker Desktop's socket)
    ("root", False),  # the machine's dockerd
])
def test_another_users_engine_socket_is_reached_as_a_remote_engine(monkeypatch, tmp_path, owner, remote):
    monkeypatch.delenv("DOCKEXT_REMOTE_ENGINE", raising=False)
    tmp_path.chmod(0o755)
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        uid = {"another user": os.geteuid() + 4242, "this user": os.geteuid(), "root": 0}[owner]
        if uid != os.geteuid():
            os.chown(path, uid, -1)  # (the tests run as root)
        assert Engine(DockerHost(f"unix://{path}")).remote is remote
        monkeypatch.setenv("DOCKEXT_REMOTE_ENGINE", "0")  # the user's say still wins
        assert Engine(DockerHost(f"unix://{path}")).remote is False


@pytest.mark.parametrize("status, containerd", [
    ([["driver-type", "io.containerd.snapshotter.v1"]], True),  # Docker 24+ with the containerd image store
    ([["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"]], False),  # overlay2
    (None, False),
    ([["driver-type", "io.containerd.snapshotter.v1.overlayfs"]], False),
])
def test_the_containerd_image_store_is_told_from_the_drivers_status(status, containerd):
    assert InfoEngine({"ID": "X", "DriverStatus": status}).containerd_images is containerd


@pytest.mark.parametrize("info, knows", [
    ({"ServerVersion": "20.10.24+dfsg1"}, True),  # this machine's
    ({"ServerVersion": "27.3.1"}, True),
    ({"ServerVersion": "19.03.15"}, False),  # before host-gateway
    ({"ServerVersion": "dev"}, True),  # a build that names itself otherwise: a current one
    ({"ServerVersion": "4.3.1", "BuildahVersion": "1.28.2"}, False),  # Podman maps the host itself
])
def test_host_gateway_is_named_only_to_engines_that_know_it(info, knows):
    assert InfoEngine({"ID": "X", **info}).host_gateway is knows


@pytest.mark.parametrize("info, leaks", [
    ({"ServerVersion": "20.10.24+dfsg1"}, True),  # this machine's
    ({"ServerVersion": "23.0.10"}, True),
    ({"ServerVersion": "23.0.11"}, False),
    ({"ServerVersion": "24.0.9"}, True),  # no 24 release has the fix
    ({"ServerVersion": "25.0.4"}, True),
    ({"ServerVersion": "25.0.5"}, False),
    ({"ServerVersion": "27.3.1"}, False),
    ({"ServerVersion": "dev"}, False),
    ({"ServerVersion": "4.3.1", "BuildahVersion": "1.28.2"}, False),
])
def test_engines_whose_internal_networks_forward_dns_are_named(info, leaks):
    """CVE-2024-29018: a container on an internal network still had its DNS lookups answered through the host's
    resolvers; a backend cut off with network=deny is told apart at install (found in a review)."""
    assert (InfoEngine({"ID": "X", **info}).internal_dns_leaks() is not None) is leaks


def test_an_exports_manifest_names_its_images_config_in_either_layout():
    """``docker save`` names the config ``<hex>.json`` (classic) or ``blobs/sha256/<hex>`` (Docker 25+, OCI)."""
    digest = "a41ba77a03dec6206b9dcbc63dd114b8423a3d8b96c99a18e21842f7f74a9535"
    for name in (f"{digest}.json", f"blobs/sha256/{digest}"):
        assert _config_of([{"Config": name, "RepoTags": ["a:1"], "Layers": []}]) == f"sha256:{digest}"
    for odd in ([], [{"Config": "x.json"}], [{"Config": f"{digest}.json"}] * 2, {"Config": f"{digest}.json"},
                [{"Config": f"../{digest}.json"}], [{"Config": f"blobs/sha512/{digest}"}]):
        assert _config_of(odd) is None


def test_a_podman_service_is_told_from_its_info_and_named_by_its_host_and_storage():
    """Podman answers a new random ``ID`` at every ``GET /info``: its identity is its machine's name and its
    storage root, so an extension installed there is not shown as Elsewhere at the next command."""
    info = {"ID": "b2e55a7c-e745-4ae6-8d54-bc2f45d08529", "Name": "box", "BuildahVersion": "1.28.2",
            "DockerRootDir": "/var/lib/containers/storage", "Rootless": False,
            "SecurityOptions": ["name=seccomp,profile=default"]}
    rootful = InfoEngine(info)
    assert rootful.podman and not rootful.rootless
    assert rootful.identity() == "podman:box:/var/lib/containers/storage"
    assert rootful.identity() == InfoEngine({**info, "ID": "18e2ce45-d630-4dbd-bd38-b463242082c4"}).identity()
    rootless = InfoEngine({**info, "Rootless": True, "DockerRootDir": "/home/u/.local/share/containers/storage"})
    assert rootless.podman and rootless.rootless
    assert rootless.identity() != rootful.identity()
    docker_engine = InfoEngine({"ID": "X", "Name": "box", "SecurityOptions": []})
    assert not docker_engine.podman and docker_engine.identity() == "X"


def test_a_plain_http_registry_gets_each_engines_own_advice():
    """Docker reaches registries on loopback over plain HTTP by itself, others only when its daemon.json lists
    them; Podman none unless its registries.conf marks them insecure (tests/engine/test_podman.py shows the real
    service's error)."""
    ref = ImageRef.parse("10.0.0.7:5000/acme/ext:1.0.0")
    why = 'Get "https://10.0.0.7:5000/v2/": http: server gave HTTP response to HTTPS client'
    podman = InfoEngine({"ID": "X", "Name": "box", "BuildahVersion": "1.28.2"})
    assert podman._pull_hint(ref, why).startswith(
        'The registry 10.0.0.7:5000 speaks plain HTTP, which Podman uses only for registries marked insecure: add '
        '[[registry]] location = "10.0.0.7:5000" insecure = true to /etc/containers/registries.conf')
    docker_engine = InfoEngine({"ID": "X", "Name": "box"})
    assert docker_engine._pull_hint(ref, why) == (
        'The registry 10.0.0.7:5000 speaks plain HTTP: list it in "insecure-registries" of the engine\'s '
        'daemon.json (/etc/docker/daemon.json) and restart the engine.')
    assert docker_engine._pull_hint(ref, "manifest unknown") == \
        "Check the image name and tag, and that you are logged in to its registry."
