"""`dockext permissions`: grants enforced by the host API and seen by the extension (real server, Chromium)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.support.cli import run_dockext
from tests.support.session import Session

from .test_dashboard import open_tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-perm"
KEY = f"{PREFIX}_host-binary"
DOCKER = {"cli": "docker", "cmd": "version", "args": ["--format", "{{.Server.Version}}"]}
HOST = {"cli": "host", "cmd": "hello.sh", "args": ["John"]}

EXEC_IN_PAGE = """(cli) => (cli === "docker"
    ? window.ddClient.docker.cli.exec("version", ["--format", "x"])
    : window.ddClient.extension.host.cli.exec("hello.sh", ["John"])
  ).then(() => "ran", (e) => `${e.name}: ${e.message}`)"""


def test_denied_docker_and_host_access_is_refused_everywhere_and_allowed_again(page: Page, server, fixture_image):
    ref = fixture_image("host-binary", repo_prefix=PREFIX)
    run_dockext("install", "-f", ref, home=server.home)
    session = Session(server)
    ui = session.open_ui(KEY)
    try:
        with session.page(ui) as c:
            assert c.post(f"{ui.api}/exec", json=DOCKER).status_code == 200  # the defaults: Docker Desktop's
            assert c.post(f"{ui.api}/exec", json=HOST).json()["stdout"].startswith("Hello, John!")

        said = run_dockext("permissions", "set", ref, "docker=deny", "host=deny", home=server.home).stdout
        assert said.strip() == f"{ref}: docker denied, host denied."
        with session.page(ui) as c:  # the open UI is refused at once, no reopening needed
            for body, what in ((DOCKER, "run docker commands"), (HOST, "run the host binaries it ships")):
                r = c.post(f"{ui.api}/exec", json=body)
                assert r.status_code == 403, r.text
                assert r.json()["error"]["type"] == "PermissionDenied"
                assert f"Host Binary may not {what}" in r.json()["error"]["message"]
            r = c.get(f"{ui.api}/docker/containers")
            assert r.status_code == 403 and r.json()["error"]["type"] == "PermissionDenied"
            with c.stream("GET", f"{ui.api}/docker/images") as listed:
                assert listed.status_code == 403

        # what the page's ddClient gets, in Chromium; and the dashboard shows it
        page.goto(server.login_url)
        expect(page.locator("#ext-rows")).to_contain_text("docker: denied")
        expect(page.locator("#ext-rows")).to_contain_text("hello.sh: denied")
        open_tab(page, KEY)
        frame = page.locator("#extension-frame").element_handle().content_frame()
        assert frame.evaluate(EXEC_IN_PAGE, "docker").startswith("PermissionDenied: Host Binary may not run docker")
        assert frame.evaluate(EXEC_IN_PAGE, "host").startswith("PermissionDenied: Host Binary may not run the host")

        rows = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert rows == [{"id": f"{PREFIX}/host-binary", "docker": False, "host": False,
                         "backend": ["host binaries run as you: hello.sh"]}]

        # allowed again from the dashboard's dialog (the same as `dockext permissions set`)
        page.locator("#home-button").click()
        page.get_by_role("button", name="Change the permissions of Host Binary").click()
        dialog = page.locator("dialog.dx-dialog")
        expect(dialog).to_contain_text("run hello.sh as you")
        dialog.get_by_role("checkbox", name="Docker engine").check()
        dialog.get_by_role("checkbox", name="Host binaries").check()
        dialog.get_by_role("button", name="Save").click()
        expect(page.locator("#toasts")).to_contain_text("Permissions of Host Binary saved.")
        expect(page.locator("#ext-rows")).not_to_contain_text("denied")  # the change came back as an event
        rows = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert (rows[0]["docker"], rows[0]["host"]) == (True, True)
        ui2 = open_tab(page, KEY)
        expect(ui2.locator("#host")).to_have_text("Hello, John! (2 args)")
        frame = page.locator("#extension-frame").element_handle().content_frame()
        assert frame.evaluate(EXEC_IN_PAGE, "docker") == "ran"
        assert frame.evaluate(EXEC_IN_PAGE, "host") == "ran"
    finally:
        session.close_ui(ui)
        run_dockext("permissions", "set", ref, "docker=deny", home=server.home)
        run_dockext("rm", ref, home=server.home)
    # the grants went with the extension: a new install starts from the defaults
    assert not (server.home / "permissions.json").exists() or \
        json.loads((server.home / "permissions.json").read_text())["extensions"] == {}


def test_install_says_what_the_backend_gets(tmp_path, fixture_image):
    home = tmp_path / "home"
    ref = fixture_image("compose", repo_prefix=PREFIX)
    out = run_dockext("install", "-f", ref, home=home).stdout
    try:
        assert "It gets the Docker engine's socket (full control of the engine)" in out
        table = run_dockext("permissions", home=home).stdout
        assert table.splitlines()[0].split() == ["ID", "DOCKER", "HOST", "BACKEND", "GETS"]
        assert f"{PREFIX}/compose" in table and "allowed" in table and "the Docker engine's socket" in table
        wrong = run_dockext("permissions", "set", ref, "network=deny", home=home, check=False)
        assert wrong.returncode == 2 and "expected one of docker, host =allow or =deny" in wrong.stderr
    finally:
        run_dockext("rm", ref, home=home)
