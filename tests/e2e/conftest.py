"""Real Chromium, driven by Playwright, against a real ``dockext serve``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.server import Server, start_server

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

#: The repository prefix of this tier's fixture images unless a test names its own. scripts/test.sh runs this tier
#: beside tests/engine, which installs the same fixtures under ``dockext-test``: one fixture under one prefix is one
#: extension and one compose project, so the two tiers' installs would be each other's.
PREFIX = "dockext-e2e"

#: How long ``expect`` waits for the page to show something (Playwright's 5 s default is too short when the engine
#: tier runs beside this one on a 2-core machine); a failing assertion still fails, only later.
expect.set_options(timeout=15_000)


def chromium_path() -> str:
    for candidate in (os.environ.get("DOCKEXT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.exit("Chromium is not installed: run `bash scripts/setup.sh` first", returncode=3)
    raise AssertionError


@pytest.fixture(scope="session")
def browser() -> Browser:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def server(tmp_path) -> Server:
    srv = start_server(tmp_path / "home")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def fixture_image(fixture_image: Callable[..., str]) -> Callable[..., str]:
    """The root ``fixture_image`` with :data:`PREFIX` as the default ``repo_prefix``."""

    def build(name: str, *, repo_prefix: str = PREFIX, **kwargs: object) -> str:
        return fixture_image(name, repo_prefix=repo_prefix, **kwargs)

    return build
