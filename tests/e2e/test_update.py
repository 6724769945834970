"""Extensions updated from the CLI while their tab is open in the dashboard (real Chromium, engine, Compose)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.support.cli import run_dockext

from .test_dashboard import open_tab, tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-upd-ui"


def frame_eval(page: Page, script: str):
    return page.locator("#extension-frame").element_handle().content_frame().evaluate(script)


def start_update(server, ref: str, **env: str) -> subprocess.Popen[str]:
    """`dockext update -f ref` in the background, as a user in another terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "dockext.cli", "update", "-f", ref], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DOCKEXT_HOME": str(server.home), "NO_COLOR": "1", **env},
    )


def test_an_update_reopens_the_open_tab_on_the_new_version_and_keeps_its_local_storage(
    page: Page, server, fixture_image
):
    v1 = fixture_image("ui-only", tag="1.0.0", repo_prefix=PREFIX)
    v2 = fixture_image("ui-only", tag="2.0.0", repo_prefix=PREFIX)
    key = f"{PREFIX}_ui-only"
    run_dockext("install", "-f", v1, home=server.home)
    try:
        page.goto(server.login_url)
        ui = open_tab(page, key)
        expect(ui.locator("#image")).to_have_text(v1)
        # the extension's origin is same-site with the dashboard: its storage works (no third-party block)
        frame_eval(page, "localStorage.setItem('kept', 'from 1.0.0')")
        src = page.locator("#extension-frame").get_attribute("src")

        run_dockext("update", "-f", v2, home=server.home)
        # no click: the dashboard reopens the tab on the new version, a fresh UI instance on the same origin
        expect(ui.locator("#image")).to_have_text(v2, timeout=15_000)
        expect(page.locator("#toasts")).to_contain_text("UI Only was updated to 2.0.0.")
        assert page.locator("#extension-frame").get_attribute("src") != src
        assert frame_eval(page, "localStorage.getItem('kept')") == "from 1.0.0"
        expect(tab(page, key)).to_have_attribute("aria-selected", "true")
    finally:
        run_dockext("rm", key, home=server.home)


def test_an_extension_removed_and_installed_again_starts_with_fresh_storage_and_no_service_worker(
    page: Page, server, fixture_image
):
    """S16: rm, then install under the same name: a new origin, so nothing the old install stored is there.
    And no service worker (which would survive an update, on the same origin) can be registered at all."""
    ref = fixture_image("ui-only", tag="1.0.0", repo_prefix=PREFIX)
    key = f"{PREFIX}_ui-only"
    run_dockext("install", "-f", ref, home=server.home)
    page.goto(server.login_url)
    open_tab(page, key)
    frame_eval(page, "localStorage.setItem('left', 'by the first install')")
    first_origin = frame_eval(page, "location.origin")
    # the request a browser makes for a service worker's script is refused; the same file otherwise served
    sw_fetch = "(h) => fetch('app.js', {headers: h}).then((r) => r.status)"
    assert frame_eval(page, f"({sw_fetch})({{'Service-Worker': 'script'}})") == 403
    assert frame_eval(page, f"({sw_fetch})({{}})") == 200
    registered = frame_eval(page, "navigator.serviceWorker.register('app.js').then(() => 'registered', (e) => e.name)")
    assert registered != "registered"
    run_dockext("rm", ref, home=server.home)
    expect(tab(page, key)).to_have_count(0, timeout=15_000)

    run_dockext("install", "-f", ref, home=server.home)
    try:
        expect(tab(page, key)).to_be_visible(timeout=15_000)
        open_tab(page, key)
        assert frame_eval(page, "location.origin") != first_origin
        assert frame_eval(page, "localStorage.getItem('left')") is None
        assert frame_eval(page, "localStorage.length") == 0
    finally:
        run_dockext("rm", key, home=server.home)


def test_the_tab_waits_while_a_backend_is_replaced_then_opens_the_new_version(page: Page, server, fixture_image):
    v1 = fixture_image("vm-image", tag="1.0.0", repo_prefix=PREFIX)
    v2 = fixture_image("vm-image", tag="2.0.0", repo_prefix=PREFIX)
    key = f"{PREFIX}_vm-image"
    run_dockext("install", "-f", v1, home=server.home)
    try:
        page.goto(server.login_url)
        ui = open_tab(page, key)
        expect(ui.locator("#get")).to_have_text("hello from vm-image")

        update = start_update(server, v2)
        # while the old backend is stopped and the new one starts, the tab stays selected behind a notice
        expect(page.locator("#frame-loading")).to_contain_text("Updating VM Image…", timeout=15_000)
        expect(page.locator("#extension-frame")).to_have_count(0)
        expect(tab(page, key)).to_have_attribute("aria-selected", "true")
        assert update.wait(120) == 0, update.stderr.read()

        expect(page.locator("#toasts")).to_contain_text("VM Image was updated to 2.0.0.", timeout=15_000)
        expect(ui.locator("#get")).to_have_text("hello from vm-image")  # the new backend, through the new UI
        assert frame_eval(page, "window.ddClient.extension.image") == v2
    finally:
        run_dockext("rm", key, home=server.home)


def test_a_failed_update_brings_the_tab_back_on_the_installed_version(
    page: Page, server, fixture_image, docker_client
):
    v1 = fixture_image("vm-image", tag="1.0.0", repo_prefix=PREFIX)
    broken = f"{PREFIX}/vm-image:3.0.0"  # a backend that never creates its socket
    docker_client.images.get(fixture_image("bad-no-socket", repo_prefix=PREFIX)).tag(broken)
    key = f"{PREFIX}_vm-image"
    run_dockext("install", "-f", v1, home=server.home)
    try:
        page.goto(server.login_url)
        ui = open_tab(page, key)
        expect(ui.locator("#get")).to_have_text("hello from vm-image")

        update = start_update(server, broken, DOCKEXT_BACKEND_TIMEOUT="3")
        expect(page.locator("#frame-loading")).to_contain_text("Updating VM Image…", timeout=15_000)
        assert update.wait(120) == 1
        assert "was restored" in update.stderr.read()

        expect(page.locator("#toasts")).to_contain_text(
            "The update of VM Image did not complete: version 1.0.0 is back.", timeout=15_000
        )
        expect(ui.locator("#get")).to_have_text("hello from vm-image")
        assert frame_eval(page, "window.ddClient.extension.image") == v1
    finally:
        run_dockext("rm", key, home=server.home)
        docker_client.images.remove(broken)
