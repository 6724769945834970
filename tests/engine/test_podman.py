"""dockext on Podman (a rootful ``podman system service``, tests/support/podman.py): an extension's whole life,
with the real CLI, real Compose and the real service.

The ddClient conformance suite runs on Podman too (tests/e2e/test_conformance.py), and so do the rootless
tests (tests/e2e/test_rootless.py, with the user's own Podman service). This module covers what those do not:
update, a failed update's rollback, remove, the next command's view of the engine, and pulls from a registry.
Podman answers a new
random ``ID`` at every ``GET /info``, so until dockext named a Podman service by its host and storage, every
extension installed there showed as Elsewhere (on another engine) at the next command.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.support.bridge import bridge
from tests.support.cli import run_dockext
from tests.support.images import copy_image, push_fixture
from tests.support.podman import PodmanEngine, podman_engine
from tests.support.procs import wait_until

from .test_install import assert_nothing_left, get_over_socket, ls_json, record
from .test_update import KEY, PROJECT, SLOW_TO_FAIL, VOLUME, assert_running, server

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Iterator[PodmanEngine]:
    with podman_engine(tmp_path_factory.mktemp("podman") / "podman.log") as engine:
        yield engine


def test_install_update_rollback_and_remove_on_podman(tmp_path, podman: PodmanEngine, fixture_image,
                                                      docker_client: docker.DockerClient):
    home, env, client = tmp_path / "home", {"DOCKER_HOST": podman.host}, podman.client
    v1 = fixture_image("compose", tag="1.0.0", repo_prefix="dockext-upd")
    v2 = fixture_image("compose", tag="2.0.0", repo_prefix="dockext-upd")
    broken = "dockext-upd/compose:3.0.0"  # a backend that never makes its socket, as in test_update.py
    docker_client.images.get(fixture_image("bad-no-socket", repo_prefix="dockext-upd")).tag(broken)
    try:
        for ref in (v1, v2, broken):
            copy_image(docker_client, client, ref)
    finally:
        docker_client.images.remove(broken)
    try:
        run_dockext("install", "-f", v1, home=home, env=env)
        rec = record(home, KEY)
        assert rec["vm"]["engine"].startswith("podman:"), rec["vm"]
        [row] = ls_json(home, env)
        assert row["vm"] == "Running(2)", row  # not "Elsewhere": the same service at the next command
        server(client).exec_run(["python3", "-c", "open('/data/marker', 'w').write('kept')"], user="root")
        # the second service, by its compose name: the project network's DNS (aardvark-dns) answers
        peer: list[tuple[int, str]] = []  # (the helper's server may still be starting: Compose does not wait)
        sock = home / "gs" / rec["vm"]["gs_key"] / "compose.sock"
        assert wait_until(lambda: peer.append(get_over_socket(sock, "/peer")) or peer[-1][0] == 200, timeout=60), peer
        assert json.loads(peer[-1][1]) == {"peer": "helper says hi"}

        out = run_dockext("update", "-f", v2, home=home, env=env)
        assert f'Extension "Compose Backend" updated to {v2}' in out.stdout
        assert_running(home, client, v2, slug=rec["origin_slug"], env=env)

        out = run_dockext("update", "-f", broken, home=home, env={**env, **SLOW_TO_FAIL}, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"the update of dockext-upd/compose to {broken} failed, and {v2} was restored" in out.stderr
        assert_running(home, client, v2, slug=rec["origin_slug"], env=env)
        broken_id = client.images.get(broken).id  # (Podman's `ancestor` filter does not know the short name)
        assert [c.name for c in client.containers.list(all=True) if c.image.id == broken_id] == []

        run_dockext("rm", v2, home=home, env=env)
        assert_nothing_left(home, client, KEY, PROJECT)
        assert client.networks.list(filters={"label": f"com.docker.compose.project={PROJECT}"}) == []
        assert client.volumes.get(VOLUME).name == VOLUME  # named volumes are kept, as Docker Desktop does
    finally:
        run_dockext("rm", "--forget", KEY, home=home, env=env, check=False)
        for container in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"name": VOLUME}):
            volume.remove(force=True)


def test_install_from_a_registry_on_podman_and_what_a_plain_http_registry_needs(
    tmp_path, podman: PodmanEngine, fixture_image, docker_client: docker.DockerClient
):
    """The local registry (plain HTTP, marked insecure for this service as Docker treats loopback by itself)
    serves an install as on Docker. The same registry under a name the service is not told about (127.0.0.1:5001)
    fails, and the error says what Podman needs, which is not what Docker would."""
    home, env = tmp_path / "home", {"DOCKER_HOST": podman.host}
    remote = push_fixture(docker_client, fixture_image("vm-image", repo_prefix="dockext-pmreg"))
    key = "127_0_0_1_5000_dockext-pmreg_vm-image"
    with contextlib.suppress(docker.errors.NotFound):  # pulled by an earlier session: the storage is kept (Podman's
        # "image not known" is a NotFound the SDK does not name ImageNotFound)
        podman.client.images.remove(remote, force=True)
    with bridge(5000, into=podman.netns), bridge(5001, into=podman.netns, host_port=5000):
        try:
            out = run_dockext("install", "-f", remote, home=home, env=env)
            assert "pulling" in out.stdout, out.stdout
            [row] = ls_json(home, env)
            assert (row["image"], row["vm"]) == (remote, "Running(1)"), row
            assert (home / "extensions" / key).is_dir()
            assert podman.client.images.get(remote).id == docker_client.images.get(
                remote.removeprefix("127.0.0.1:5000/")).id

            other = remote.replace(":5000/", ":5001/")
            out = run_dockext("install", "-f", other, home=tmp_path / "other", env=env, check=False)
            assert out.returncode != 0
            assert "server gave HTTP response to HTTPS client" in out.stderr, out.stderr
            assert ('The registry 127.0.0.1:5001 speaks plain HTTP, which Podman uses only for registries marked '
                    'insecure: add [[registry]] location = "127.0.0.1:5001" insecure = true to '
                    '/etc/containers/registries.conf') in out.stderr, out.stderr
        finally:
            run_dockext("rm", remote, home=home, env=env, check=False)
            assert not (home / "extensions" / key).exists()
