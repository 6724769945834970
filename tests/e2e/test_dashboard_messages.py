"""What an extension's page can make the dashboard do, in Chromium, against a dockext server run in-process with
fake extensions (no engine: the Docker views' answers are played by the page's routes where a test needs them).

Each test here is a finding of a review of the dashboard's scripts: an extension must not be able to log the user
out, move the dashboard once the user has left it, or open the Docker views without its grant; and the file
dialog must keep its keys after a click on its text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page, Route, expect

from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server.run import server_config
from tests.support.server import listening_socket, uvicorn_in_thread
from tests.unit.test_server import TOKEN, install_fake

pytestmark = [pytest.mark.browser]


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A server with two fake extensions (acme_a, acme_b), on an engine that does not exist."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    for key in ("acme_a", "acme_b"):
        install_fake(tmp_path, key, html=f"<html><head><title>{key}</title></head><body>{key}</body></html>")
    sock = listening_socket(64)
    port = sock.getsockname()[1]
    state = HostState(Layout(tmp_path), port=port, token=TOKEN)
    with uvicorn_in_thread(server_config(create_app(state), loop="asyncio"), sock):
        yield f"http://dockext.localhost:{port}"


@pytest.fixture
def page(browser: Browser, dash: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.goto(f"{dash}/?token={TOKEN}")
    expect(pg.locator("#home-title")).to_be_visible()
    yield pg
    context.close()


def open_extension(page: Page, key: str) -> Frame:
    page.evaluate(f"location.hash = '#/extensions/{key}'")
    expect(page.locator(f'#extension-frame[data-key="{key}"]')).to_be_attached()
    frame = page.locator("#extension-frame").element_handle().content_frame()
    assert frame is not None
    frame.wait_for_function("() => !!window.ddClient")
    return frame


def test_a_key_in_a_link_an_extension_opens_does_not_log_the_dashboard_out(page: Page, dash: str) -> None:
    """An extension's page can open the dashboard with any fragment (a link, openExternal): the key it names was
    stored unchecked, and every dashboard tab of the browser went to the login page. Only a key the server takes
    is kept now."""
    key = page.evaluate("localStorage.getItem('dockext-key')")
    assert key
    frame = open_extension(page, "acme_a")
    frame.evaluate(f"""() => {{ const a = document.createElement('a'); a.id = 'x'; a.textContent = 'go';
                   a.href = '{dash}/#dockext-key=bogus'; a.target = '_blank'; document.body.appendChild(a); }}""")
    with page.context.expect_page() as opened:
        frame.click("#x")
    popup = opened.value
    expect(popup).to_have_url(f"{dash}/")  # the fragment is gone from the address bar
    expect(popup.locator("#home-title")).to_be_visible()  # the cookie's session, with the key this browser has
    assert page.evaluate("localStorage.getItem('dockext-key')") == key
    page.goto(f"{dash}/#/containers")  # a fresh load of the first tab: still in, with its key
    expect(page.locator("#view-containers")).to_be_visible()
    assert "/login" not in page.url and "/login" not in popup.url


def test_a_navigation_answered_after_the_user_left_the_extension_does_not_move_the_dashboard(page: Page) -> None:
    """navigate.viewContainer checks that the container exists first; when the user opened another extension
    meanwhile, the late answer took the dashboard away from it (and destroyed its UI)."""
    held: list[Route] = []
    # the engine's answer, given by hand below
    page.route("**/api/docker/containers/slowid", lambda route: held.append(route))
    a = open_extension(page, "acme_a")
    a.evaluate("""() => { window.result = 'pending';
        ddClient.desktopUI.navigate.viewContainer('slowid')
          .then(() => { window.result = 'resolved'; }, (e) => { window.result = 'rejected: ' + e.message; }); }""")
    for _ in range(50):  # until the check is out, held
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    open_extension(page, "acme_b")
    held[0].fulfill(status=200, content_type="application/json", body=json.dumps({"Id": "slowid"}))
    page.wait_for_timeout(500)
    expect(page.locator('#extension-frame[data-key="acme_b"]')).to_be_attached()
    assert page.evaluate("location.hash") == "#/extensions/acme_b"


def test_unreadable_grants_open_no_docker_view(page: Page, dash: str, tmp_path: Path) -> None:
    """The server refuses an extension's docker calls while permissions.json cannot be read; the dashboard's
    navigation took unknown grants for allowed, and told the page whether a container exists."""
    asked: list[str] = []
    page.route("**/api/docker/containers/**", lambda route: (asked.append(route.request.url), route.abort()))
    (tmp_path / "permissions.json").write_text("{not json")
    page.reload()
    expect(page.locator("#ext-rows")).to_contain_text("grants unreadable")
    a = open_extension(page, "acme_a")
    said = a.evaluate("""() => ddClient.desktopUI.navigate.viewContainer('probe')
        .then(() => 'resolved', (e) => 'rejected: ' + e.message)""")
    assert said.startswith("rejected: PermissionDenied: "), said
    assert asked == []
    assert page.evaluate("location.hash") == "#/extensions/acme_a"


def test_the_file_dialog_keeps_its_keys_after_a_click_on_its_text(page: Page) -> None:
    """A click on the dialog's title moved the focus to <body>, where Escape no longer reached the dialog."""
    a = open_extension(page, "acme_a")
    a.evaluate("""() => { window.result = null;
        ddClient.desktopUI.dialog.showOpenDialog({properties: ['openFile']})
          .then((r) => { window.result = r; }); }""")
    dialog = page.locator(".fd")
    expect(dialog).to_be_visible()
    dialog.get_by_role("heading").first.click()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    a.wait_for_function("() => window.result !== null")
    assert a.evaluate("() => window.result") == {"canceled": True, "filePaths": []}
