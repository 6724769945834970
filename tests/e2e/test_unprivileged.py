"""The same install-and-use flow with dockext running as an ordinary user in the `docker` group.

Backends run as root in their containers and create their sockets `root 0755`: dockext must still reach
them (through its sockperm sidecar) without needing root itself.
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.server import start_server
from tests.support.unpriv import ensure_unprivileged

pytestmark = [pytest.mark.engine, pytest.mark.browser]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpriv():
    return ensure_unprivileged(REPO)


def test_install_and_use_as_an_unprivileged_user(page: Page, unpriv, fixture_image, docker_client):
    docker_gid = grp.getgrnam("docker").gr_gid
    home = unpriv.home / f"e2e-{secrets.token_hex(4)}"
    home.mkdir()
    os.chown(home, unpriv.uid, unpriv.gid)
    env = {"HOME": str(unpriv.home), "DOCKEXT_HOME": str(home), "PATH": os.environ["PATH"], "NO_COLOR": "1"}

    def as_user(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(unpriv.dockext), *args], env=env, capture_output=True, text=True, timeout=300, check=False,
            user=unpriv.uid, group=unpriv.gid, extra_groups=[docker_gid],
        )

    vm_ref, host_ref = fixture_image("vm-image"), fixture_image("host-binary")
    server = None
    try:
        for ref in (vm_ref, host_ref):
            out = as_user("install", "-f", ref)
            assert out.returncode == 0, out.stdout + out.stderr
        record = (home / "extensions" / "dockext-e2e_vm-image" / "extension.json").read_text()
        assert '"sockperm": true' in record
        sock = next((home / "gs").glob("*/backend.sock"))
        assert sock.stat().st_uid == unpriv.uid  # handed over by the sidecar; the backend made it as root
        assert all(p.stat().st_uid == unpriv.uid for p in home.rglob("*") if not p.is_socket())

        server = start_server(home, argv=[str(unpriv.dockext)], user=(unpriv.uid, unpriv.gid, [docker_gid]),
                              extra_env={"HOME": str(unpriv.home)})
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1] == str(unpriv.uid)

        page.goto(server.login_url)
        page.locator('[role="tab"][data-key="dockext-e2e_vm-image"]').click()
        ui = page.frame_locator("#extension-frame")
        expect(ui.locator("#get")).to_have_text("hello from vm-image")
        expect(ui.locator("#post")).to_have_text("42")
        expect(ui.locator("#error")).to_have_text("status=404 message=no such thing")
        expect(ui.locator("#vm-exec")).to_have_text("hello from inside the backend")
        page.locator('[role="tab"][data-key="dockext-e2e_host-binary"]').click()
        expect(page.locator("#extension-frame")).to_have_attribute("data-key", "dockext-e2e_host-binary")
        ui = page.frame_locator("#extension-frame")
        expect(ui.locator("#host")).to_have_text("Hello, John! (2 args)")
    finally:
        if server is not None:
            server.stop()
        for ref in (vm_ref, host_ref):
            as_user("rm", ref)
        shutil.rmtree(home, ignore_errors=True)
    project = "dockext-e2e_vm-image-desktop-extension"
    assert docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []
