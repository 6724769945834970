"""dockext on Podman (a rootful ``podman system service``, tests/support/podman.py): an extension's whole life,
with the real CLI, real Compose and the real service.

The ddClient conformance suite runs on Podman too (tests/e2e/test_conformance.py), and so do the rootless
tests (tests/e2e/test_rootless.py, with the user's own Podman service). This module covers what those do not:
update, a failed update's rollback, remove, and the next command's view of the engine. Podman answers a new
random ``ID`` at every ``GET /info``, so until dockext named a Podman service by its host and storage, every
extension installed there showed as Elsewhere (on another engine) at the next command.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.support.cli import run_dockext
from tests.support.images import copy_image
from tests.support.podman import PodmanEngine, podman_engine

from .test_install import assert_nothing_left, ls_json, record
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

        out = run_dockext("update", "-f", v2, home=home, env=env)
        assert f'Extension "Compose Backend" updated to {v2}' in out.stdout
        assert_running(home, client, v2, slug=rec["origin_slug"], env=env)

        out = run_dockext("update", "-f", broken, home=home, env={**env, **SLOW_TO_FAIL}, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"the update of dockext-upd/compose to {broken} failed, and {v2} was restored" in out.stderr
        assert_running(home, client, v2, slug=rec["origin_slug"], env=env)
        assert client.containers.list(all=True, filters={"ancestor": broken}) == []

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
