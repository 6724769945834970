"""The dashboard server killed and started again while a browser has it open (reference R16)."""

from __future__ import annotations

import os
import signal

import pytest
from playwright.sync_api import Page, expect

from tests.support.cli import run_dockext
from tests.support.server import start_server

from .test_dashboard import open_tab, status_of

pytestmark = [pytest.mark.engine, pytest.mark.browser]


def test_after_kill_9_and_a_restart_the_browser_is_still_logged_in_and_its_tab_comes_back(
    page: Page, tmp_path, fixture_image
):
    home = tmp_path / "home"
    ref = fixture_image("ui-only")
    first = start_server(home)
    second = None
    try:
        run_dockext("install", "-f", ref, home=home)
        page.goto(first.login_url)
        ui = open_tab(page, "dockext-e2e_ui-only")
        expect(ui.locator("#image")).to_have_text(ref)
        before = page.locator("#extension-frame").get_attribute("src")

        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(5)
        expect(page.locator("#connection")).to_be_visible(timeout=15_000)  # "Reconnecting…"

        second = start_server(home, port=first.port)  # a new token: only the signed session can carry over
        assert second.token != first.token
        expect(page.locator("#connection")).to_be_hidden(timeout=30_000)
        ui = page.frame_locator("#extension-frame")
        expect(ui.locator("#image")).to_have_text(ref, timeout=15_000)  # a new UI instance, no reload, no login
        assert page.locator("#extension-frame").get_attribute("src") != before
        assert page.evaluate("fetch('/api/extensions', {headers: {'X-Dockext-Key': window.dockext.key()}})"
                             ".then((r) => r.status)") == 200
        assert status_of(first.login_url) == 401  # the first start's token is no longer one
    finally:
        first.stop()
        if second is not None:
            run_dockext("rm", ref, home=home)
            second.stop()
