"""The whole slice in a real browser: log in, install from the CLI while the dashboard is open, use each
extension's UI (its calls go to the real engine, backend and host binaries), leave, remove."""

from __future__ import annotations

import http.client
import json
import os
import platform
import time
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.engine.test_install import assert_nothing_left, labelled, ls_json
from tests.support.cli import run_dockext
from tests.support.server import log_in

pytestmark = [pytest.mark.engine, pytest.mark.browser]

ARCH = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def status_of(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    """GET ``url`` from outside the browser; ``*.localhost`` names are sent to 127.0.0.1 as browsers do."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=5)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers={"Host": parts.netloc, **(headers or {})})
        return conn.getresponse().status
    finally:
        conn.close()


def wait_for(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def tab(page: Page, key: str):
    return page.locator(f'[role="tab"][data-key="{key}"]')


def open_tab(page: Page, key: str):
    tab(page, key).click()
    frame = page.locator("#extension-frame")
    expect(frame).to_have_attribute("data-key", key)
    return page.frame_locator("#extension-frame")


def listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


def test_serve_prints_a_token_url_and_listens_on_loopback_only(server):
    assert f"dockext dashboard: {server.login_url}" in server.log.read_text()
    assert listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, nothing else
    info = server.home / "server.json"
    assert info.stat().st_mode & 0o777 == 0o600
    assert server.home.stat().st_mode & 0o077 == 0  # the home directory is private


def test_without_the_token_only_the_login_page_answers(page: Page, server):
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
    expect(page.locator("input[name=token]")).to_be_visible()
    assert status_of(f"http://127.0.0.1:{server.port}/api/extensions") == 401
    page.fill("input[name=token]", "wrong")
    page.keyboard.press("Enter")
    expect(page.locator("text=That token is not valid.")).to_be_visible()
    page.fill("input[name=token]", server.token)
    page.keyboard.press("Enter")
    expect(page.locator("#home-title")).to_have_text("Installed extensions")
    # the header says which engine this is (remote ones: tests/e2e/test_remote_engine.py)
    expect(page.locator("#engine-name")).to_have_text(os.environ.get("DOCKER_HOST") or "Local engine")


def test_log_out_ends_the_session_in_this_browser_and_for_a_copied_cookie(page: Page, server, fixture_image):
    ref = fixture_image("ui-only")
    run_dockext("install", "-f", ref, home=server.home)
    page.goto(server.login_url)
    open_tab(page, "dockext-e2e_ui-only")
    src = page.locator("#extension-frame").get_attribute("src")
    assert status_of(src) == 200
    [cookie] = page.context.cookies()
    key = page.evaluate("localStorage.getItem('dockext-key')")
    replay = {"Cookie": f"{cookie['name']}={cookie['value']}", "X-Dockext-Key": key}
    assert status_of(f"{server.url}/api/extensions", headers=replay) == 200  # what a copy opens while logged in
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(server.url + "/login")
    assert page.context.cookies() == [] and page.evaluate("localStorage.getItem('dockext-key')") is None
    assert wait_for(lambda: status_of(src) == 404), "the open extension's UI outlived the logout"
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login")
    # the cookie and key copied before, replayed: refused as well (revoked by the server, not only forgotten)
    assert status_of(f"{server.url}/api/extensions", headers=replay) == 401


def test_a_new_login_in_this_browser_does_not_send_an_open_dashboard_to_the_login_page(page: Page, server):
    """Opening the login URL again (in another tab, or over the dashboard in this one) gives the browser a new
    session's cookie at its redirect, while an open dashboard still sends the old session's key until the new page
    has stored its own: a call in that moment gets 401. The dashboard waits a moment for the new key and goes on
    (before, it went to the login page: over the dashboard in the same tab, 11 of 90 such logins ended there).
    A session that did end still sends it to the login page."""
    page.goto(server.login_url)
    expect(page.locator("#home-title")).to_be_visible()
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/api/docker/containers" in r.url else None)
    # another tab's login, up to its redirect: this browser now holds the new session's cookie
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", f"/?token={server.token}", headers={"Host": f"dockext.localhost:{server.port}"})
        login = conn.getresponse()
        new_key = login.headers["location"].split("#dockext-key=", 1)[1]
        name, _, value = login.headers["set-cookie"].split(";", 1)[0].partition("=")
    finally:
        conn.close()
    [old] = page.context.cookies()
    assert login.status == 303 and old["name"] == name and old["value"] != value
    page.context.add_cookies([{**old, "value": value}])
    with page.expect_response(lambda r: "/api/docker/containers" in r.url and r.status == 401):
        page.evaluate("location.hash = '#/containers'")  # the dashboard's next call, with the old key
    page.evaluate("key => localStorage.setItem('dockext-key', key)", new_key)  # that tab's page has loaded
    expect(page.locator("#view-containers .view-summary")).to_contain_text("total")  # its answer, shown
    assert statuses[:2] == [401, 200] and page.url == server.url + "/#/containers"

    # the session ended (logged out in the other tab): to the login page, as before
    assert status_of(f"{server.url}/api/logout", method="POST",
                     headers={"Cookie": f"{name}={value}", "X-Dockext": "1", "X-Dockext-Key": new_key}) == 200
    page.evaluate("location.hash = '#/images'")
    expect(page).to_have_url(server.url + "/login")


def test_ui_only_extension_appears_live_works_and_goes_away(page: Page, server, fixture_image):
    ref = fixture_image("ui-only")
    key = "dockext-e2e_ui-only"
    page.goto(server.login_url)
    expect(page).to_have_url(server.url + "/")  # the token left the address bar
    expect(page.locator("#home-empty")).to_be_visible()

    run_dockext("install", "-f", ref, home=server.home)
    expect(tab(page, key)).to_be_visible(timeout=15_000)  # no reload: pushed by the server
    expect(tab(page, key)).to_contain_text("UI Only")
    expect(tab(page, key).locator("img")).to_have_attribute("src", f"/api/extensions/{key}/icon")

    ui = open_tab(page, key)
    expect(ui.locator("#has-ddclient")).to_have_text("yes")
    expect(ui.locator("#themes")).to_have_text("dark,light|dark,light")
    expect(ui.locator("#platform")).to_have_text(f"linux/{ARCH}")
    expect(ui.locator("#image")).to_have_text(ref)
    expect(ui.locator("#docker-format")).to_have_text("UI Only")  # quoted --format with inner quotes
    expect(ui.locator("#docker-json")).to_have_text("dockext tests")
    expect(ui.locator("#docker-error")).to_have_text("code=1 stderr-has-no-such=true")
    ui.locator("#toast").click()
    expect(page.locator("#toasts .toast-success")).to_contain_text("Hello from UI Only")
    # "Skip to content" puts the focus into the extension (its href, #main, must not route to Home)
    page.locator(".skip-link").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#extension-frame")).to_be_focused()
    expect(page).to_have_url(f"{server.url}/#/extensions/{key}")

    # each extension UI lives on its own origin, never the dashboard's
    src = page.locator("#extension-frame").get_attribute("src")
    assert src.startswith("http://dockext-e2e-ui-only-") and f".dockext.localhost:{server.port}/i/" in src
    assert status_of(src) == 200

    # leaving the tab destroys the UI: the frame is gone and its URL no longer answers
    page.locator("#home-button").click()
    expect(page.locator("#extension-frame")).to_have_count(0)
    assert wait_for(lambda: status_of(src) == 404), "the closed UI's URL still answers"

    # its permissions, from the keyboard: Escape closes the dialog; after Save the table is redrawn (a new
    # list from the server) and the focus stays on the same control rather than falling to <body>
    change = page.get_by_role("button", name="Change the permissions of UI Only")
    change.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog.dx-dialog")
    expect(dialog.get_by_role("checkbox", name="Docker engine")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(change).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Space")  # Docker engine: off
    for key_name in ("Tab", "Tab", "Tab", "Enter"):  # Web requests, Cancel, Save, pressed
        page.keyboard.press(key_name)
    expect(page.locator("#ext-rows")).to_contain_text("docker: denied")
    expect(change).to_be_focused()

    run_dockext("rm", ref, home=server.home)
    expect(tab(page, key)).to_have_count(0, timeout=15_000)


def test_query_string_reaches_the_extension_page(page: Page, server, fixture_image):
    ref = fixture_image("ui-only")
    run_dockext("install", "-f", ref, home=server.home)
    log_in(page, server)
    page.goto("about:blank")
    # a deep link, loaded fresh (as an OAuth redirect would): the query reaches the extension's page
    page.goto(f"{server.url}/#/extensions/dockext-e2e_ui-only?code=abc&state=xyz")
    ui = page.frame_locator("#extension-frame")
    expect(ui.locator("#query")).to_have_text("?code=abc&state=xyz")
    run_dockext("rm", ref, home=server.home)


def test_vm_image_backend_answers_through_vm_service(page: Page, server, fixture_image):
    ref = fixture_image("vm-image")
    run_dockext("install", "-f", ref, home=server.home)
    try:
        page.goto(server.login_url)
        ui = open_tab(page, "dockext-e2e_vm-image")
        expect(ui.locator("#get")).to_have_text("hello from vm-image")
        expect(ui.locator("#post")).to_have_text("42")
        expect(ui.locator("#error")).to_have_text("status=404 message=no such thing")
        expect(ui.locator("#vm-exec")).to_have_text("hello from inside the backend")
        expect(ui.locator("#put")).to_have_text("PUT p")
        expect(ui.locator("#patch")).to_have_text("PATCH q")
        expect(ui.locator("#delete")).to_have_text("DELETE null")
        expect(ui.locator("#head")).to_have_text('resolved ""')
        expect(ui.locator("#query")).to_have_text("x=1&y=two")
        expect(ui.locator("#request")).to_have_text("PATCH request")
        expect(ui.locator("#v0-backend")).to_have_text("hello from vm-image")
    finally:
        run_dockext("rm", ref, home=server.home)


def test_compose_backend_reaches_the_engine_and_its_second_service(page: Page, server, fixture_image,
                                                                   docker_client):
    ref = fixture_image("compose")
    run_dockext("install", "-f", ref, home=server.home)
    try:
        page.goto(server.login_url)
        ui = open_tab(page, "dockext-e2e_compose")
        expect(ui.locator("#engine")).to_have_text(docker_client.version()["ApiVersion"])
        expect(ui.locator("#peer")).to_have_text("helper says hi")
        expect(ui.locator("#vm-exec")).to_have_text("compose-api")  # the first service's hostname
    finally:
        run_dockext("rm", ref, home=server.home)
        vol = "dockext-e2e_compose-desktop-extension_data"
        for v in docker_client.volumes.list(filters={"name": vol}):
            v.remove()


def test_host_binary_runs_and_undeclared_commands_are_refused(page: Page, server, fixture_image):
    ref = fixture_image("host-binary")
    run_dockext("install", "-f", ref, home=server.home)
    try:
        page.goto(server.login_url)
        ui = open_tab(page, "dockext-e2e_host-binary")
        expect(ui.locator("#host")).to_have_text("Hello, John! (2 args)")
        expect(ui.locator("#host-refused")).to_have_text("refused")
    finally:
        run_dockext("rm", ref, home=server.home)


def test_a_marketplace_card_keeps_the_keyboard_focus_while_it_installs(page: Page, server, fixture_image,
                                                                      docker_client, tmp_path):
    """The card is redrawn when its job starts (Install becomes a progress line) and ends (Open): the focus follows
    it. From a folder source, so that no registry is needed."""
    ref = fixture_image("ui-only")
    folder = tmp_path / "offline"
    folder.mkdir()
    with open(folder / "ui-only.tar", "wb") as out:
        for chunk in docker_client.images.get(ref).save(named=ref):
            out.write(chunk)
    run_dockext("marketplace", "add", "--folder", str(folder), home=server.home)
    page.goto(server.login_url)
    page.locator("#marketplace-button").click()
    card = page.locator('.mk-card[data-image="dockext-e2e/ui-only"]')
    install = card.get_by_role("button", name="Install")
    install.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog.dx-dialog")
    expect(dialog.get_by_role("button", name="Install", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(install).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")  # the dialog's Install
    try:
        expect(page.locator(".toast").last).to_contain_text("UI Only installed", timeout=60_000)
        expect(card.get_by_role("button", name="Open")).to_be_focused()
    finally:
        run_dockext("rm", ref, home=server.home, check=False)


def test_the_dashboards_forced_theme_reaches_the_extension(browser, server, fixture_image):
    ref = fixture_image("ui-only")
    run_dockext("install", "-f", ref, home=server.home)
    context = browser.new_context(color_scheme="light")
    page = context.new_page()
    try:
        page.goto(server.login_url)
        expect(open_tab(page, "dockext-e2e_ui-only").locator("#status")).to_have_text("done")
        frame = page.locator("#extension-frame").element_handle().content_frame()
        assert frame.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is False
        # system -> light -> dark: the open extension restarts in the new theme
        toggle = page.locator("#theme-toggle")
        toggle.click()
        toggle.click()
        expect(page.locator("#theme-toggle")).to_have_attribute("data-mode", "dark")
        expect(page.frame_locator("#extension-frame").locator("#status")).to_have_text("done")
        frame = page.locator("#extension-frame").element_handle().content_frame()
        assert frame.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is True
        assert frame.evaluate("matchMedia('(prefers-color-scheme: light)').matches") is False
        assert frame.evaluate("matchMedia('(min-width: 1px)').matches") is True  # other queries untouched
    finally:
        context.close()
        run_dockext("rm", ref, home=server.home)


HOME_PREFIX = "dockext-home"


def test_any_installed_extension_is_removed_from_home_with_the_keyboard(page: Page, server, fixture_image,
                                                                        docker_client):
    """Installed from the CLI, which no Marketplace source lists: removed from the Home page as `dockext rm`
    removes it, after a confirmation that names it (Escape keeps it); the other extension stays."""
    vm, ui = fixture_image("vm-image", repo_prefix=HOME_PREFIX), fixture_image("ui-only", repo_prefix=HOME_PREFIX)
    key, project = f"{HOME_PREFIX}_vm-image", f"{HOME_PREFIX}_vm-image-desktop-extension"
    for ref in (vm, ui):
        run_dockext("install", "-f", ref, home=server.home)
    try:
        assert len(labelled(docker_client, f"com.docker.compose.project={project}")) == 1
        page.goto(server.login_url)
        remove = page.get_by_role("button", name="Remove VM Image")
        remove.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("dialog.dx-dialog")
        expect(dialog.get_by_role("heading")).to_have_text("Remove VM Image?")
        expect(dialog).to_contain_text("Its backend's containers and networks go, and its files; its named volumes "
                                       "are kept.")
        expect(dialog.locator(".dx-ref")).to_have_text(f"{HOME_PREFIX}/vm-image")
        expect(dialog.get_by_role("button", name="Remove")).to_be_focused()
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0)
        expect(remove).to_be_focused()
        assert sorted(row["id"] for row in ls_json(server.home)) == [f"{HOME_PREFIX}/ui-only",
                                                                     f"{HOME_PREFIX}/vm-image"]

        page.keyboard.press("Enter")  # the dialog again
        expect(dialog.get_by_role("button", name="Remove")).to_be_focused()
        page.keyboard.press("Enter")  # its Remove
        expect(page.locator("#toasts .toast-success")).to_contain_text("VM Image removed.", timeout=60_000)
        expect(page.locator(f'#ext-rows tr[data-key="{key}"]')).to_have_count(0)
        expect(tab(page, key)).to_have_count(0)
        expect(page.locator(f'#ext-rows tr[data-key="{HOME_PREFIX}_ui-only"]')).to_have_count(1)
        assert [row["id"] for row in ls_json(server.home)] == [f"{HOME_PREFIX}/ui-only"]
        assert_nothing_left(server.home, docker_client, key, project)
    finally:
        for ref in (vm, ui):
            run_dockext("rm", ref, home=server.home, check=False)


def test_an_extension_whose_backend_is_on_another_engine_is_forgotten_from_home(page: Page, server, fixture_image,
                                                                                docker_client):
    """Its backend is not this engine's to remove (the record says another engine made it, as after `docker
    context use` elsewhere): the Home page offers to forget it, `dockext rm --forget`, and the backend stays."""
    ref = fixture_image("vm-image", repo_prefix=f"{HOME_PREFIX}-other")
    key = f"{HOME_PREFIX}-other_vm-image"
    project = f"{key}-desktop-extension"
    run_dockext("install", "-f", ref, home=server.home)
    try:
        path = server.home / "extensions" / key / "extension.json"
        rec = json.loads(path.read_text())
        rec["vm"]["engine"], rec["vm"]["engine_at"] = "OTHR:ENGI:NE00", "tcp://build-box:2376"
        path.write_text(json.dumps(rec))
        page.goto(server.login_url)
        expect(page.locator(f'#ext-rows tr[data-key="{key}"]')).to_contain_text("On another engine")
        page.get_by_role("button", name="Forget VM Image").click()
        dialog = page.locator("dialog.dx-dialog")
        expect(dialog.get_by_role("heading")).to_have_text("Forget VM Image?")
        expect(dialog).to_contain_text("Its backend is on tcp://build-box:2376, which dockext does not reach now: "
                                       "it stays there, running.")
        dialog.get_by_role("button", name="Forget").click()
        expect(page.locator("#toasts .toast-success")).to_contain_text(
            "VM Image forgotten: its backend stays on tcp://build-box:2376.", timeout=60_000)
        expect(page.locator(f'#ext-rows tr[data-key="{key}"]')).to_have_count(0)
        assert ls_json(server.home) == []
        [ctr] = labelled(docker_client, f"com.docker.compose.project={project}")
        assert ctr.status == "running"  # left where it is
    finally:
        for ctr in labelled(docker_client, f"com.docker.compose.project={project}"):
            ctr.remove(force=True)
        for net in docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"}):
            net.remove()
        run_dockext("rm", ref, home=server.home, check=False)
    assert_nothing_left(server.home, docker_client, key, project)
