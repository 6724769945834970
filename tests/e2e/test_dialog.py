"""The dashboard's file dialog (desktopUI.dialog.showOpenDialog) in a real browser against a real server.

An extension frame posts the raw request of docs/design.md, ``{dockext: "dialog", id, options}``, exactly as the
SDK does, and waits for ``{dockext: "reply", id, ok, value}``. The user picks by clicking and with the keyboard
in the dashboard's dialog; the reply reaches the frame from the dashboard's origin. The SDK's own
``showOpenDialog`` is exercised by tests/e2e/test_conformance.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Frame, Page, expect

from tests.support.cli import run_dockext
from tests.support.server import Server, start_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

KEY = "dockext-test-conf_ui-only"
_ids = itertools.count(1)

# Posts the request from the extension page and keeps the reply on window.__dialogReplies[id].
ASK = """([id, options]) => {
  window.__dialogReplies = window.__dialogReplies || {};
  window.__dialogReplies[id] = new Promise((resolve) => {
    window.addEventListener("message", function onReply(event) {
      if (event.data && event.data.dockext === "reply" && event.data.id === id) {
        window.removeEventListener("message", onReply);
        resolve({origin: event.origin, data: event.data});
      }
    });
  });
  window.parent.postMessage({dockext: "dialog", id, options}, window.__dockextConfig.dashboardOrigin);
}"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "pick"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "inner.json").write_text("{}")
    (root / "notes").mkdir()
    (root / "a.json").write_text('{"a": 1}')
    (root / "b.txt").write_text("b")
    (root / "c.JSON").write_text("{}")
    (root / ".hidden.json").write_text("{}")
    (root / "link-to-sub").symlink_to(root / "sub")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_image) -> Iterator[Server]:
    """One server with the extension installed for the whole module (each test has its own page)."""
    srv = start_server(tmp_path_factory.mktemp("dialog") / "home")
    try:
        run_dockext("install", "-f", fixture_image("ui-only", repo_prefix="dockext-test-conf"), home=srv.home)
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def ui(page: Page, server: Server) -> Frame:
    page.goto(server.login_url)
    page.locator(f'[role="tab"][data-key="{KEY}"]').click()
    expect(page.frame_locator("#extension-frame").locator("#status")).to_have_text("done")
    frame = page.locator("#extension-frame").element_handle().content_frame()
    assert frame is not None
    return frame


def ask(frame: Frame, **options) -> str:
    request_id = f"dialog-{next(_ids)}"
    frame.evaluate(ASK, [request_id, options])
    return request_id


def reply(frame: Frame, request_id: str) -> dict:
    got = frame.evaluate("(id) => window.__dialogReplies[id]", request_id)
    assert got["origin"].startswith("http://dockext.localhost:"), got  # from the dashboard, nobody else
    assert got["data"]["ok"] is True, got
    return got["data"]["value"]


def dialog(page: Page):
    return page.get_by_role("dialog")


def rows(page: Page):
    return dialog(page).locator('[role="option"]')


def row(page: Page, name: str):
    return dialog(page).locator(f'[role="option"][data-name="{name}"]')


def shown_names(page: Page) -> list[str]:
    return rows(page).evaluate_all("els => els.map(e => e.dataset.name)")


def test_open_file_with_filters_by_clicking(page: Page, ui: Frame, tree: Path):
    rid = ask(ui, title="Pick a config", buttonLabel="Use it", message="Choose the JSON file to import.",
              properties=["openFile"], defaultPath=str(tree),
              filters=[{"name": "JSON", "extensions": ["json"]}, {"name": "All files", "extensions": ["*"]}])
    d = dialog(page)
    expect(d).to_be_visible()
    expect(d).to_have_attribute("aria-modal", "true")
    expect(d.get_by_role("heading")).to_have_text("Pick a config")
    expect(d).to_contain_text("UI Only asks you to choose a file")  # which extension asks
    expect(d).to_contain_text("Choose the JSON file to import.")
    expect(d.locator('[aria-current="location"]')).to_have_text("pick")
    # folders first; hidden files hidden; the JSON filter hides b.txt and matches c.JSON case-insensitively
    expect(rows(page)).to_have_count(5)
    assert shown_names(page) == ["link-to-sub", "notes", "sub", "a.json", "c.JSON"]
    expect(row(page, "link-to-sub")).to_have_attribute("data-type", "dir")  # a link shows as what it points to
    confirm = d.get_by_role("button", name="Use it")
    expect(confirm).to_be_disabled()  # nothing chosen yet

    d.get_by_label("File type").select_option(label="All files (*)")
    expect(row(page, "b.txt")).to_be_visible()
    d.get_by_label("File type").select_option(label="JSON (*.json)")
    expect(row(page, "b.txt")).to_have_count(0)

    row(page, "a.json").click()
    expect(row(page, "a.json")).to_have_attribute("aria-selected", "true")
    row(page, "c.JSON").click()  # single selection: replaces
    expect(row(page, "a.json")).to_have_attribute("aria-selected", "false")
    row(page, "a.json").click()
    confirm.click()
    expect(d).to_have_count(0)
    assert reply(ui, rid) == {"canceled": False, "filePaths": [str(tree / "a.json")]}


def test_multi_selection_with_the_keyboard_and_hidden_files(page: Page, ui: Frame, tree: Path):
    rid = ask(ui, properties=["openFile", "multiSelections", "showHiddenFiles"], defaultPath=str(tree))
    d = dialog(page)
    expect(d.get_by_role("heading")).to_have_text("Choose files")
    expect(d.get_by_role("listbox")).to_have_attribute("aria-multiselectable", "true")
    expect(rows(page)).to_have_count(7)
    assert shown_names(page) == ["link-to-sub", "notes", "sub", ".hidden.json", "a.json", "b.txt", "c.JSON"]
    expect(d.get_by_label("Show hidden files")).to_be_checked()
    expect(d.get_by_role("listbox")).to_be_focused()  # the list has the focus from the start

    page.keyboard.press("End")  # c.JSON
    page.keyboard.press("Shift+ArrowUp")  # b.txt .. c.JSON
    expect(d.locator('[aria-selected="true"]')).to_have_count(2)
    row(page, "a.json").click(modifiers=["Control"])  # add one more
    expect(d).to_contain_text("3 items selected")
    page.keyboard.press("Control+Enter")
    expect(d).to_have_count(0)
    assert reply(ui, rid) == {"canceled": False,
                              "filePaths": [str(tree / n) for n in ("a.json", "b.txt", "c.JSON")]}


def test_open_directory_by_double_click_backspace_and_keyboard(page: Page, ui: Frame, tree: Path):
    rid = ask(ui, properties=["openDirectory"], defaultPath=str(tree))
    d = dialog(page)
    expect(d.get_by_role("heading")).to_have_text("Choose a folder")
    expect(row(page, "a.json")).to_have_attribute("aria-disabled", "true")  # files are shown, not choosable
    row(page, "sub").dblclick()
    expect(d.locator('[aria-current="location"]')).to_have_text("sub")
    expect(row(page, "inner.json")).to_be_visible()
    page.keyboard.press("Backspace")  # back up, with the folder we came from selected
    expect(d.locator('[aria-current="location"]')).to_have_text("pick")
    expect(row(page, "sub")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowUp")  # notes
    expect(row(page, "notes")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")  # Enter opens a folder...
    expect(d.locator('[aria-current="location"]')).to_have_text("notes")
    d.get_by_role("button", name="Select").click()  # ...and with nothing selected, Select takes this folder
    expect(d).to_have_count(0)
    assert reply(ui, rid) == {"canceled": False, "filePaths": [str(tree / "notes")]}

    rid = ask(ui, properties=["openDirectory", "multiSelections"], defaultPath=str(tree))
    row(page, "notes").click()
    row(page, "sub").click(modifiers=["Control"])
    page.keyboard.press("Control+Enter")
    assert reply(ui, rid) == {"canceled": False, "filePaths": [str(tree / "notes"), str(tree / "sub")]}


@pytest.mark.parametrize("how", ["Escape", "Cancel", "close button"])
def test_cancel(page: Page, ui: Frame, tree: Path, how: str):
    rid = ask(ui, defaultPath=str(tree))
    d = dialog(page)
    row(page, "a.json").click()
    if how == "Escape":
        page.keyboard.press("Escape")
    elif how == "Cancel":
        d.get_by_role("button", name="Cancel", exact=True).click()
    else:
        d.get_by_role("button", name="Close", exact=True).click()
    expect(d).to_have_count(0)
    assert reply(ui, rid) == {"canceled": True, "filePaths": []}


def test_focus_stays_in_the_dialog_and_the_page_behind_is_inert(page: Page, ui: Frame, tree: Path):
    rid = ask(ui, defaultPath=str(tree), filters=[{"name": "Any", "extensions": ["*"]}])
    d = dialog(page)
    expect(rows(page)).to_have_count(6)
    assert page.evaluate("document.querySelector('.app-body').inert") is True
    for _ in range(30):
        page.keyboard.press("Tab")
        assert page.evaluate("document.querySelector('[role=dialog]').contains(document.activeElement)")
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("document.querySelector('[role=dialog]').contains(document.activeElement)")
    page.keyboard.press("Escape")
    expect(d).to_have_count(0)
    assert page.evaluate("document.querySelector('.app-body').inert") is False
    assert reply(ui, rid)["canceled"] is True


def test_default_path_to_a_file_preselects_it(page: Page, ui: Frame, tree: Path):
    rid = ask(ui, defaultPath=str(tree / "b.txt"))
    expect(row(page, "b.txt")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    assert reply(ui, rid) == {"canceled": False, "filePaths": [str(tree / "b.txt")]}
    # a default path that does not exist yet opens its folder; "~" is the home folder
    rid = ask(ui, defaultPath=str(tree / "sub" / "new.json"))
    expect(dialog(page).locator('[aria-current="location"]')).to_have_text("sub")
    page.keyboard.press("Escape")
    assert reply(ui, rid)["canceled"] is True


def test_typed_paths_missing_folders_and_going_up(page: Page, ui: Frame, tree: Path):
    rid = ask(ui, defaultPath=str(tree / "sub"))
    d = dialog(page)
    expect(d.locator('[aria-current="location"]')).to_have_text("sub")
    page.keyboard.press("Control+l")
    location = d.get_by_label("Go to folder")
    expect(location).to_be_focused()
    location.fill(str(tree / "missing" / "deeper"))
    location.press("Enter")
    expect(d).to_contain_text("Cannot open this folder")
    expect(d).to_contain_text(f"No such directory: {tree / 'missing' / 'deeper'}")
    d.get_by_role("button", name="Parent folder (Backspace)").click()
    expect(d.locator('[aria-current="location"]')).to_have_text("pick")
    page.keyboard.press("Control+l")
    location.fill("~")
    location.press("Enter")
    home = page.evaluate("fetch('/api/fs/home', {headers: {'X-Dockext': '1', 'X-Dockext-Key': window.dockext.key()}})"
                         ".then(r => r.json())")["path"]
    expect(d.locator('[aria-current="location"]')).to_have_text(Path(home).name or "/")
    page.keyboard.press("Escape")
    assert reply(ui, rid)["canceled"] is True


def test_requests_queue_and_a_closed_tab_cancels(page: Page, ui: Frame, tree: Path):
    first = ask(ui, title="First", defaultPath=str(tree))
    second = ask(ui, title="Second", defaultPath=str(tree))
    expect(dialog(page).get_by_role("heading")).to_have_text("First")
    page.keyboard.press("Escape")
    expect(dialog(page).get_by_role("heading")).to_have_text("Second")
    assert reply(ui, first)["canceled"] is True
    # leaving the extension's tab destroys its UI: its dialog goes away with it
    page.evaluate("location.hash = '#/'")
    expect(dialog(page)).to_have_count(0)
    expect(page.locator("#extension-frame")).to_have_count(0)
    assert page.evaluate("document.querySelector('.app-body').inert") is False
    del second  # its reply had nowhere to go


def test_an_extension_cannot_lock_the_user_in_dialogs(page: Page, ui: Frame, tree: Path):
    first = ask(ui, title="One", defaultPath=str(tree))
    second = ask(ui, title="Two", defaultPath=str(tree))  # waits for the first
    third = ask(ui, title="Three", defaultPath=str(tree))  # one waiting is the most
    expect(dialog(page).get_by_role("heading")).to_have_text("One")
    got = ui.evaluate("(id) => window.__dialogReplies[id]", third)["data"]
    assert got == {"dockext": "reply", "id": third, "ok": False, "error": {"message": "a file dialog is already open"}}
    page.keyboard.press("Escape")
    expect(dialog(page).get_by_role("heading")).to_have_text("Two")  # asked before the user cancelled: shown
    page.keyboard.press("Escape")
    assert reply(ui, first)["canceled"] is True and reply(ui, second)["canceled"] is True
    # asked right after a cancel: refused, so that the user can get away from an extension that insists
    again = ask(ui, title="Again", defaultPath=str(tree))
    got = ui.evaluate("(id) => window.__dialogReplies[id]", again)["data"]
    assert got["ok"] is False and got["error"]["message"] == "the user has just dismissed a file dialog"
    expect(dialog(page)).to_have_count(0)
    page.wait_for_timeout(1600)
    later = ask(ui, title="Later", defaultPath=str(tree))
    expect(dialog(page).get_by_role("heading")).to_have_text("Later")
    page.keyboard.press("Escape")
    assert reply(ui, later)["canceled"] is True


def test_an_extension_origin_cannot_list_files(page: Page, ui: Frame, server):
    """S18: the listing is the dashboard's alone; an extension page gets nothing, even with the cookie."""
    out = ui.evaluate(
        """async (dashboard) => {
          const result = {};
          try {
            const r = await fetch(dashboard + "/api/fs/list?path=/", {credentials: "include",
                                                                      headers: {"X-Dockext": "1"}});
            result.withHeader = "answered " + r.status;
          } catch (e) { result.withHeader = "blocked"; }
          try {
            const r = await fetch(dashboard + "/api/fs/home", {credentials: "include"});
            result.plain = "answered " + r.status + " " + (await r.text());
          } catch (e) { result.plain = "blocked"; }
          const own = await fetch("/api/fs/list?path=/");
          result.ownOrigin = own.status;
          return result;
        }""",
        server.url,
    )
    assert out == {"withHeader": "blocked", "plain": "blocked", "ownOrigin": 404}
