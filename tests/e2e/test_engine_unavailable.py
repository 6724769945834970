"""The engine unavailable when dockext starts, then back (reference security-reliability.md R19).

The server starts anyway, the dashboard says what is wrong and what to do about it, and recovers by itself
once the engine answers: no restart of dockext, no reload of the page.
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.cli import run_dockext
from tests.support.server import start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), host
    return host[len("unix://"):]


def test_a_missing_engine_is_reported_and_the_dashboard_recovers_when_it_appears(page: Page, tmp_path, fixture_image,
                                                                                docker_client) -> None:
    home = tmp_path / "home"
    ref = fixture_image("vm-image", repo_prefix="dockext-noengine")
    run_dockext("install", "-f", ref, home=home)  # with the engine: its backend runs
    sock = tmp_path / "engine" / "docker.sock"  # nothing there yet: the engine is "down"
    sock.parent.mkdir()
    server = start_server(home, extra_env={"DOCKER_HOST": f"unix://{sock}"})
    try:
        page.goto(server.login_url)
        expect(page.locator("#home-title")).to_be_visible()  # the dashboard itself does not need the engine
        # the backend's state is unknown, not "Stopped" (which sent users looking at the wrong thing)
        backend = page.locator("#home-table tr", has_text="VM Image").locator(".pill")
        expect(backend).to_have_text("Engine unreachable")
        assert f"cannot reach the Docker engine at unix://{sock}" in (backend.get_attribute("title") or "")
        page.get_by_role("button", name="Containers", exact=True).click()
        error = page.locator("#view-containers .view-error")
        expect(error).to_contain_text("Cannot list containers")
        expect(error).to_contain_text(f"cannot reach the Docker engine at unix://{sock}")
        expect(error).to_contain_text("Is dockerd running, and may this user use it?")  # what to do
        expect(error.get_by_role("button", name="Try again")).to_be_visible()

        sock.symlink_to(engine_socket())  # the engine comes up at that address
        # the view polls: the error goes and the engine's figures come, without a reload
        expect(error).to_have_count(0, timeout=20_000)
        expect(page.locator("#view-containers .view-summary")).to_contain_text(re.compile(r"\d+ running · \d+ total"))

        # Home follows the backend's state by itself, with no reload and no change to the installed set
        page.get_by_role("button", name="Home", exact=True).click()
        expect(backend).to_have_text("Running", timeout=20_000)
        [container] = docker_client.containers.list(
            filters={"label": "com.docker.compose.project=dockext-noengine_vm-image-desktop-extension"})
        container.kill()
        expect(backend).to_have_text("Stopped", timeout=20_000)
    finally:
        server.stop()
        run_dockext("rm", ref, home=home, check=False)
