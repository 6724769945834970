"""The project `dockext init` writes, built and installed, in a real browser: its tab shows the backend's answer,
the engine's containers and a toast, in light and in dark."""

from __future__ import annotations

import contextlib

import docker.errors
import pytest
from playwright.sync_api import Browser, expect

from tests.support.cli import run_dockext
from tests.support.images import PYBASE, TEST_LABEL, ensure_pybase

pytestmark = [pytest.mark.engine, pytest.mark.browser]

NAME = 'Hello <Ext> & "Co"'
REPOSITORY = "dockext-init/e2e-ext"
KEY = "dockext-init_e2e-ext"
BACKGROUND = {"light": "rgb(244, 244, 246)", "dark": "rgb(27, 29, 34)"}  # ui/style.css's --bg


def test_the_generated_extension_tab_shows_the_backends_answer_containers_and_a_toast(
    tmp_path, browser: Browser, server, docker_client
):
    project = tmp_path / "e2e-ext"
    run_dockext("init", str(project), "--name", NAME, "--repository", REPOSITORY, home=server.home)
    ref = f"{REPOSITORY}:1.0.0"
    ensure_pybase(docker_client)
    docker_client.images.build(path=str(project), tag=ref, buildargs={"BASE_IMAGE": PYBASE},
                               labels={TEST_LABEL: "1"}, rm=True, forcerm=True)
    try:
        run_dockext("install", "-f", ref, home=server.home)
        try:
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=scheme)
                try:
                    page = context.new_page()
                    page.goto(server.login_url)
                    page.locator(f'[role="tab"][data-key="{KEY}"]').click()
                    expect(page.locator("#extension-frame")).to_have_attribute("data-key", KEY)
                    ui = page.frame_locator("#extension-frame")
                    expect(ui.locator("h1")).to_have_text(NAME)
                    expect(ui.locator("#hello")).to_have_text("Hello from the backend!")
                    # its own backend container is among those the engine runs
                    expect(ui.locator("#containers tbody")).to_contain_text(f"{KEY}-desktop-extension-service")
                    expect(ui.locator("#containers-status")).to_contain_text("running")
                    expect(ui.locator("body")).to_have_css("background-color", BACKGROUND[scheme])
                    ui.locator("#show-toast").click()
                    expect(page.locator("#toasts .toast-success")).to_contain_text(f"Hello from {NAME}!")
                finally:
                    context.close()
        finally:
            run_dockext("rm", ref, home=server.home)
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref, force=True)
