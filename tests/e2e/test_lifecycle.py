"""UI lifecycle: every process an extension UI started dies with it (reference §5.4, security A4).

The ``streams`` fixture's page, opened with ``?start=lifecycle&marker=M``, starts long-running commands whose
argv carries M through every path a UI has: a streaming ``docker stats``, a streaming host binary, a v0
``spawnHostCmd`` and a non-streaming ``host.cli.exec`` that never ends. Each host binary also starts a child
of its own (``sleep-M``), a grandchild of dockext. The host's ``/proc`` then shows what is left.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import urllib.parse

import pytest
from playwright.sync_api import FrameLocator, Page, expect

from tests.support.cli import run_dockext
from tests.support.procs import children, marked, still_running, wait_until
from tests.support.server import Server, log_in, start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-test-streams"
KEY = f"{PREFIX}_streams"
GONE_WITHIN = 8.0  # seconds: SIGTERM, a 2 s grace, SIGKILL, with room for a loaded machine


@pytest.fixture(scope="module")
def home(tmp_path_factory, fixture_image):
    path = tmp_path_factory.mktemp("lifecycle") / "home"
    ref = fixture_image("streams", repo_prefix=PREFIX)
    run_dockext("install", "-f", ref, home=path)
    yield path
    run_dockext("rm", ref, home=path, check=False)


@pytest.fixture
def srv(home) -> Server:
    server = start_server(home)  # one per test: some tests kill it
    yield server
    server.stop()


def expected_processes(marker: str) -> list[str]:
    """What the page starts, as substrings of command lines: one entry per process."""
    return [
        f"{{{{.Name}}}} {marker}",  # docker stats --format "{{.Name}} M"
        f"sleeper.sh {marker}",
        f"sleep-{marker} 3600",
        f"sleeper.sh {marker}-v0",
        f"sleep-{marker}-v0 3600",
        f"sleeper.sh {marker}-exec",
        f"sleep-{marker}-exec 3600",
    ]


def running(marker: str) -> dict[int, str]:
    """The processes carrying ``marker`` once every one of ``expected_processes`` runs (empty until then)."""
    found = marked(marker)
    complete = all(any(cmd.endswith(w) for cmd in found.values()) for w in expected_processes(marker))
    return found if complete else {}


def status_of(url: str) -> int:
    """GET ``url`` from outside the browser; ``*.localhost`` names go to 127.0.0.1 as browsers send them."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", parts.path, headers={"Host": parts.netloc})
        return conn.getresponse().status
    finally:
        conn.close()


def start_long_running(page: Page, server: Server, marker: str) -> tuple[FrameLocator, dict[int, str]]:
    log_in(page, server)
    page.goto("about:blank")
    page.goto(f"{server.url}/#/extensions/{KEY}?start=lifecycle&marker={marker}")
    ui = page.frame_locator("#extension-frame")
    expect(ui.locator("#life-sleeper")).to_have_text(f"sleeper {marker} started")
    expect(ui.locator("#life-v0")).to_have_text(f"sleeper {marker}-v0 started")
    assert wait_until(lambda: bool(running(marker))), f"not everything started: {marked(marker)}"
    procs = running(marker)
    assert len(procs) == len(expected_processes(marker)), procs
    return ui, procs


def assert_all_gone(marker: str, procs: dict[int, str]) -> None:
    assert wait_until(lambda: not still_running(procs), GONE_WITHIN), still_running(procs)
    assert marked(marker) == {}


def test_leaving_the_tab_ends_every_process_it_started(page: Page, srv, marker):
    _, procs = start_long_running(page, srv, marker)
    page.locator("#home-button").click()
    expect(page.locator("#extension-frame")).to_have_count(0)
    assert_all_gone(marker, procs)


def test_reloading_the_frame_ends_the_processes_of_the_old_page(page: Page, srv, marker):
    ui, procs = start_long_running(page, srv, marker)
    first_doc = ui.locator("#doc").text_content()
    frame = page.frame(url=lambda url: "/i/" in url)
    assert frame is not None
    frame.evaluate("location.reload()")
    expect(ui.locator("#doc")).not_to_have_text(first_doc)
    expect(ui.locator("#life-sleeper")).to_have_text(f"sleeper {marker} started")
    assert wait_until(lambda: not still_running(procs), GONE_WITHIN), still_running(procs)
    # the reloaded page started its own set (same marker, new processes), which runs on
    assert wait_until(lambda: bool(running(marker)))
    assert not set(running(marker)) & set(procs)


def test_closing_the_browser_tab_ends_every_process(page: Page, srv, marker):
    _, procs = start_long_running(page, srv, marker)
    page.close()
    assert_all_gone(marker, procs)


def test_stopping_the_dashboard_ends_every_process(page: Page, srv, marker):
    _, procs = start_long_running(page, srv, marker)
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(15)
    assert_all_gone(marker, procs)
    # nothing held the stop until the end of its grace period: not the page's command waiting for its answer,
    # not the dashboard's event stream (each used to, then was cancelled with an error in the log)
    log = srv.log.read_text()
    assert "graceful shutdown exceeded" not in log and "Traceback" not in log, log


def test_kill_9_of_the_dashboard_still_ends_every_process(page: Page, srv, marker):
    _, procs = start_long_running(page, srv, marker)
    guardians = {pid: cmd for pid, cmd in children(srv.proc.pid).items() if " -I -S -c" in cmd}
    assert len(guardians) == 1, children(srv.proc.pid)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(5)
    assert_all_gone(marker, procs)
    assert wait_until(lambda: not still_running(guardians), GONE_WITHIN)  # its work done, the guardian leaves


def test_a_navigation_asked_by_the_extension_leaves_the_tab_and_ends_its_processes(page: Page, srv, marker):
    ui, procs = start_long_running(page, srv, marker)
    ui.locator("#run-navigate").click()  # ddClient.desktopUI.navigate.viewContainers()
    expect(page).to_have_url(re.compile(r"#/containers$"))
    expect(page.locator("#extension-frame")).to_have_count(0)
    assert_all_gone(marker, procs)


def test_opening_the_tab_again_starts_a_fresh_ui(page: Page, srv, marker):
    ui, procs = start_long_running(page, srv, marker)
    src = page.locator("#extension-frame").get_attribute("src")
    doc = ui.locator("#doc").text_content()
    page.locator("#home-button").click()
    assert_all_gone(marker, procs)
    page.locator(f'[role="tab"][data-key="{KEY}"]').click()
    ui = page.frame_locator("#extension-frame")
    expect(ui.locator("#status")).to_have_text("ready")
    new_src = page.locator("#extension-frame").get_attribute("src")
    assert new_src.split("/i/")[1].split("/")[0] != src.split("/i/")[1].split("/")[0]  # a new capability
    assert ui.locator("#doc").text_content() != doc
    assert status_of(src) == 404  # the old instance is gone for good
