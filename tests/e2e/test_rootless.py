"""dockext on a rootless Docker engine (reference R13): an ordinary user who is not in the `docker` group runs
its own `dockerd-rootless.sh` and dockext; published extensions install and work, in Chromium.

On such an engine the containers' root is the user itself, and container uid N is one of its subordinate ids:
a backend that runs as root creates its socket as the user, and one that runs as another uid creates it as a
subordinate id the user cannot connect to (0755). dockext's sockperm sidecar must then hand sockets to the
container's root, not to the user's own uid (which there is a subordinate id again, as the first version of
this test showed: every install failed with "dockext is not allowed to connect to it").

Each test runs on a rootless Docker engine and on a rootless Podman service (the same user's `podman system
service`), which dockext recognises as rootless from its `GET /info` ("Rootless": true)."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.images import copy_image
from tests.support.podman import rootless_podman
from tests.support.rootless import RootlessEngine, rootless_engine
from tests.support.server import start_server
from tests.support.unpriv import ensure_unprivileged

pytestmark = [pytest.mark.engine, pytest.mark.browser]
REPO = Path(__file__).resolve().parents[2]
NON_ROOT = "dockext-test-rootless/vm-image-uid4242:1.0.0"


@pytest.fixture(scope="module", params=["docker", "podman"])
def engine(request, docker_client, fixture_image, tmp_path_factory):
    log = tmp_path_factory.mktemp("rootless") / f"{request.param}.log"
    start = rootless_engine if request.param == "docker" else rootless_podman
    with start(ensure_unprivileged(REPO), log) as eng:
        refs = [fixture_image(name) for name in ("vm-image", "compose", "host-binary")]
        # the vm-image backend as an ordinary user of its container: its socket is made by uid 4242
        dockerfile = f"FROM {refs[0]}\nUSER 4242\nLABEL dockext.test=1\n".encode()
        docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=NON_ROOT, rm=True)
        for ref in (*refs, NON_ROOT):
            copy_image(docker_client, eng.client, ref)
        yield eng


def test_an_extension_installs_and_works_on_a_rootless_engine_in_the_browser(page: Page, engine: RootlessEngine):
    user = engine.user
    info = engine.client.info()
    assert "name=rootless" in info["SecurityOptions"] if engine.name == "docker" else info["Rootless"] is True
    home = user.home / f"e2e-{secrets.token_hex(4)}"
    env = engine.env(DOCKEXT_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    user.run(["mkdir", "-p", str(home)], env=env)
    refs = ["dockext-e2e/vm-image:1.0.0", "dockext-e2e/compose:1.0.0", "dockext-e2e/host-binary:1.0.0", NON_ROOT]
    server = None
    try:
        for ref in refs:
            out = user.run([str(user.dockext), "install", "-f", ref], env=env, timeout=300)
            assert out.returncode == 0, out.stdout + out.stderr
        ls = user.run([str(user.dockext), "ls"], env=env)
        assert ls.stdout.count("Running(1)") == 2 and "Running(2)" in ls.stdout, ls.stdout  # compose: 2 services

        # the sockets are the user's: made by the container's root, or handed to it by the sidecar
        for sock in (home / "gs").glob("*/*.sock"):
            assert sock.stat().st_uid == user.uid, sock
        # the engine socket an extension mounts is the rootless engine's own, not the machine's
        [backend] = engine.client.containers.list(filters={"label": [
            "com.docker.compose.project=dockext-e2e_compose-desktop-extension", "com.docker.compose.service=server"]})
        mounts = {m["Destination"]: m["Source"] for m in backend.attrs["Mounts"]}
        assert mounts["/var/run/docker.sock"] == str(engine.socket)

        server = start_server(home, argv=[str(user.dockext)], user=(user.uid, user.gid, []), extra_env=env)
        page.goto(server.login_url)
        for key in ("dockext-e2e_vm-image", "dockext-test-rootless_vm-image-uid4242"):
            page.locator(f'[role="tab"][data-key="{key}"]').click()
            expect(page.locator("#extension-frame")).to_have_attribute("data-key", key)
            ui = page.frame_locator("#extension-frame")
            expect(ui.locator("#get")).to_have_text("hello from vm-image")  # vm.service through the socket
            expect(ui.locator("#post")).to_have_text("42")
            expect(ui.locator("#vm-exec")).to_have_text("hello from inside the backend")  # vm.cli.exec
        page.locator('[role="tab"][data-key="dockext-e2e_compose"]').click()
        expect(page.locator("#extension-frame")).to_have_attribute("data-key", "dockext-e2e_compose")
        ui = page.frame_locator("#extension-frame")
        expect(ui.locator("#engine")).to_have_text("1.41")  # the backend reached the engine through its socket
        expect(ui.locator("#peer")).to_have_text("helper says hi")
        page.locator('[role="tab"][data-key="dockext-e2e_host-binary"]').click()
        expect(page.locator("#extension-frame")).to_have_attribute("data-key", "dockext-e2e_host-binary")
        expect(page.frame_locator("#extension-frame").locator("#host")).to_have_text("Hello, John! (2 args)")
    finally:
        if server is not None:
            server.stop()
        for ref in refs:
            user.run([str(user.dockext), "rm", ref], env=env, timeout=300)
        shutil.rmtree(home, ignore_errors=True)
    assert engine.client.containers.list(all=True) == []


def test_root_installs_on_a_users_rootless_engine(engine: RootlessEngine, tmp_path: Path):
    """dockext run as root (sudo) with DOCKER_HOST naming a user's rootless engine. That engine, and its
    containers, run as the user: they cannot see root's 0700 home, so backends are reached as on a remote engine
    (through a relay container), not through a directory bind-mounted from that home (which failed: 'error while
    creating mount source path ...: permission denied')."""
    env = {**os.environ, "DOCKER_HOST": engine.host, "DOCKEXT_HOME": str(tmp_path / "home"), "NO_COLOR": "1",
           "COLUMNS": "200"}
    env.pop("DOCKEXT_REMOTE_ENGINE", None)
    dockext = [str(REPO / ".venv/bin/dockext")]
    ref = "dockext-e2e/vm-image:1.0.0"
    try:
        out = subprocess.run([*dockext, "install", "-f", ref], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr  # it waits for the backend's socket to accept
        ls = subprocess.run([*dockext, "ls"], env=env, capture_output=True, text=True, timeout=60)
        assert "Running(1)" in ls.stdout, ls.stdout
    finally:
        subprocess.run([*dockext, "rm", ref], env=env, capture_output=True, text=True, timeout=300)
    assert engine.client.containers.list(all=True) == []
