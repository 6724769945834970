"""The engine unavailable when dockext starts, then back (reference security-reliability.md R19).

The server starts anyway, the dashboard says what is wrong and what to do about it, and recovers by itself
once the engine answers: no restart of dockext, no reload of the page.
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.support.server import start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), host
    return host[len("unix://"):]


def test_a_missing_engine_is_reported_and_the_dashboard_recovers_when_it_appears(page: Page, tmp_path) -> None:
    sock = tmp_path / "engine" / "docker.sock"  # nothing there yet: the engine is "down"
    sock.parent.mkdir()
    server = start_server(tmp_path / "home", extra_env={"DOCKER_HOST": f"unix://{sock}"})
    try:
        page.goto(server.login_url)
        expect(page.locator("#home-title")).to_be_visible()  # the dashboard itself does not need the engine
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
    finally:
        server.stop()
