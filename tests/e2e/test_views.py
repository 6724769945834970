"""The dashboard's Docker views in a real browser against the real engine: containers (list, logs, inspect,
stats, terminal), images, volumes, the "show extension containers" setting, and navigation requested by an
extension frame (the ``navigate`` message of docs/design.md)."""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import docker.errors
import pytest
from playwright.sync_api import Frame, Page, expect

from tests.support.cli import run_dockext
from tests.support.images import TEST_LABEL
from tests.support.server import log_in

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-test-views"  # our own image names: other sessions build fixtures on the same engine


@dataclass
class Objects:
    image: str
    image_id: str
    container: str  # name
    container_id: str
    extension_container: str
    volume: str


@pytest.fixture(scope="module")
def objects(docker_client: docker.DockerClient, fixture_image) -> Iterator[Objects]:
    ref = fixture_image("vm-image", repo_prefix=PREFIX)
    suffix = secrets.token_hex(4)
    volume = docker_client.volumes.create(f"dockext-views-{suffix}", labels={TEST_LABEL: "1"})
    created = []
    try:
        web = docker_client.containers.run(
            ref, ["sh", "-c", "echo hello-from-views; echo oops-on-stderr >&2; sleep 3600"],
            name=f"dockext-views-{suffix}", detach=True, init=True, labels={TEST_LABEL: "1"},
            volumes={volume.name: {"bind": "/data", "mode": "rw"}},
        )
        created.append(web)
        ext = docker_client.containers.run(
            ref, ["sleep", "3600"], name=f"dockext-views-ext-{suffix}", detach=True, init=True,
            labels={TEST_LABEL: "1", "com.docker.desktop.extension": "true"},
        )
        created.append(ext)
        yield Objects(ref, docker_client.images.get(ref).id, web.name, web.id, ext.name, volume.name)
    finally:
        for c in created:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
        volume.remove(force=True)


def login(page: Page, server, hash_: str = "") -> None:
    log_in(page, server)
    if hash_:
        page.goto(f"{server.url}/{hash_}")


def row(page: Page, name: str):
    return page.locator("#view-containers tbody tr").filter(has=page.get_by_role("button", name=name, exact=True))


def test_container_list_shows_our_container_and_hides_extension_containers_until_asked(page: Page, server, objects):
    login(page, server)
    page.get_by_role("button", name="Containers", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/containers$"))
    expect(page.locator('.nav-item[data-panel="#/containers"]')).to_have_attribute("aria-current", "page")
    expect(page.locator("#home-button")).not_to_have_attribute("aria-current", "page")
    expect(row(page, objects.container)).to_be_visible()
    expect(row(page, objects.container)).to_contain_text("Running")
    expect(row(page, objects.container)).to_contain_text(objects.container_id[:12])
    expect(row(page, objects.extension_container)).to_have_count(0)
    expect(page.locator("#view-containers .view-summary")).to_contain_text("extension container")

    toggle = page.get_by_role("switch", name="Show extension containers")
    expect(toggle).not_to_be_checked()
    toggle.focus()
    page.keyboard.press("Space")  # keyboard usable
    expect(row(page, objects.extension_container)).to_be_visible()
    expect(row(page, objects.extension_container).locator(".tag-chip")).to_have_text("extension")
    page.reload()  # the setting is stored by the server
    expect(page.get_by_role("switch", name="Show extension containers")).to_be_checked()
    expect(row(page, objects.extension_container)).to_be_visible()
    page.get_by_role("switch", name="Show extension containers").click()
    expect(row(page, objects.extension_container)).to_have_count(0)

    page.get_by_role("searchbox", name="Search containers").fill("no-such-container-here")
    expect(row(page, objects.container)).to_have_count(0)
    expect(page.locator("#view-containers .view-empty")).to_contain_text("No matching containers")

    # "Skip to content" moves the focus to the view; its href (#main) must not route the page to Home
    page.locator(".skip-link").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/containers$"))
    page.keyboard.press("Tab")
    expect(page.get_by_role("searchbox", name="Search containers")).to_be_focused()

    # an 800 px window: the sidebar shows icons only, still named, and the list fits without scrolling sideways
    page.get_by_role("searchbox", name="Search containers").fill(objects.container)
    page.set_viewport_size({"width": 800, "height": 800})
    expect(row(page, objects.container)).to_be_visible()
    widths = page.locator("#view-containers .table-card").evaluate("(n) => [n.scrollWidth, n.clientWidth]")
    assert widths[0] <= widths[1], widths
    page.get_by_role("button", name="Images", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/images$"))


def test_logs_show_the_container_output_with_stderr_marked(page: Page, server, objects):
    login(page, server, "#/containers")
    row(page, objects.container).get_by_role("button", name=objects.container, exact=True).click()
    expect(page).to_have_url(re.compile(rf"#/containers/{objects.container_id}$"))
    expect(page.locator("#view-containers h1")).to_have_text(objects.container)
    expect(page.get_by_role("tab", name="Logs")).to_have_attribute("aria-selected", "true")
    log = page.get_by_role("log", name="Container logs")
    expect(log).to_contain_text("hello-from-views")
    expect(log.locator(".log-stderr")).to_contain_text("oops-on-stderr")
    expect(page.locator(".log-toolbar .live-status")).to_have_text("Live")
    page.get_by_role("switch", name="Timestamps").check()
    expect(log.locator(".log-line .log-ts").first).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$"))
    page.get_by_role("searchbox", name="Filter logs").fill("oops")
    expect(log.locator(".log-line:visible")).to_have_count(1)


def test_inspect_shows_the_container_json(page: Page, server, objects):
    login(page, server, f"#/containers/{objects.container_id}/inspect")
    expect(page.get_by_role("tab", name="Inspect")).to_have_attribute("aria-selected", "true")
    json_view = page.locator("#view-containers .json-view")
    expect(json_view).to_contain_text(f'"Id": "{objects.container_id}"')
    expect(json_view).to_contain_text('"Running": true')
    # arrow keys move between the tabs
    page.get_by_role("tab", name="Inspect").focus()
    page.keyboard.press("ArrowLeft")
    expect(page).to_have_url(re.compile(rf"#/containers/{objects.container_id}/logs$"))
    expect(page.get_by_role("log", name="Container logs")).to_contain_text("hello-from-views")


def test_stats_show_numbers(page: Page, server, objects):
    login(page, server, f"#/containers/{objects.container_id}/stats")
    expect(page.locator('[data-stat="cpu"] .stat-value')).to_have_text(re.compile(r"^\d+\.\d\d %$"), timeout=15_000)
    expect(page.locator('[data-stat="memory"] .stat-value')).to_have_text(re.compile(r"^\d+(\.\d+)? (B|KiB|MiB|GiB)$"))
    expect(page.locator('[data-stat="memory"] .stat-sub')).to_contain_text("of ")
    expect(page.locator('[data-stat="pids"] .stat-value')).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.locator('[data-stat="network"] .stat-value')).to_have_text(re.compile(r"\d.* / \d"))


def test_terminal_runs_what_is_typed_and_its_shell_ends_when_left(page: Page, server, objects, docker_client):
    container = docker_client.containers.get(objects.container_id)
    before = len(container.top()["Processes"])
    login(page, server, f"#/containers/{objects.container_id}/terminal")
    expect(page.locator(".terminal-toolbar .live-status")).to_have_text("Connected", timeout=15_000)
    screen = page.locator("#view-containers .terminal-host .xterm-rows")
    expect(screen).to_contain_text("#")  # the prompt
    marker = secrets.token_hex(3)
    page.keyboard.type(f"echo hello-{marker}-$((40+2))\n")
    expect(screen).to_contain_text(f"hello-{marker}-42")
    # the pty has the size of the terminal on the page (wider than the default 80 columns)
    page.keyboard.type("stty size\n")
    expect(screen).to_contain_text(re.compile(r"\n?\d+ (\d{3,})"))
    size = re.search(r"(\d+) (\d{3,})", screen.inner_text())
    assert size and int(size.group(2)) > 80
    assert len(container.top()["Processes"]) > before

    page.get_by_role("tab", name="Logs").click()  # leaving the terminal ends its shell
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(container.top()["Processes"]) > before:
        time.sleep(0.2)
    assert len(container.top()["Processes"]) == before, container.top()["Processes"]


def test_terminal_says_when_the_container_is_not_running(page: Page, server, objects, docker_client):
    stopped = docker_client.containers.create(objects.image, ["true"], labels={TEST_LABEL: "1"})
    try:
        login(page, server, f"#/containers/{stopped.id}/terminal")
        expect(page.locator("#view-containers .tab-panel")).to_contain_text("This container is not running")
        expect(page.locator("#view-containers .pill")).to_have_text("Created")
    finally:
        stopped.remove(force=True)


def test_images_view_lists_and_shows_one_image(page: Page, server, objects):
    login(page, server)
    page.get_by_role("button", name="Images", exact=True).click()
    repo = objects.image.rsplit(":", 1)[0]
    image_row = page.locator("#view-images tbody tr").filter(has=page.get_by_role("button", name=repo, exact=True))
    expect(image_row).to_be_visible()
    expect(image_row).to_contain_text("In use")
    expect(image_row).to_contain_text(objects.image_id.removeprefix("sha256:")[:12])
    image_row.get_by_role("button", name=repo, exact=True).click()
    expect(page).to_have_url(re.compile(r"#/images/sha256%3A[0-9a-f]{64}$"))
    detail = page.locator("#view-images")
    expect(detail.locator("h1")).to_have_text(objects.image)
    expect(detail.get_by_role("heading", name=re.compile(r"^Layers \(\d+\)$"))).to_be_visible()
    expect(detail.locator(".layer-command").first).not_to_be_empty()
    expect(detail.locator(".link-list")).to_contain_text(objects.container)
    expect(detail.locator(".json-view")).to_contain_text(objects.image_id)
    detail.get_by_role("button", name=objects.container, exact=True).click()
    expect(page).to_have_url(re.compile(rf"#/containers/{objects.container_id}$"))


def test_volumes_view_lists_and_shows_one_volume(page: Page, server, objects):
    login(page, server, "#/volumes")
    volume_row = page.locator("#view-volumes tbody tr").filter(
        has=page.get_by_role("button", name=objects.volume, exact=True)
    )
    expect(volume_row).to_contain_text("In use")
    expect(volume_row).to_contain_text("local")
    volume_row.get_by_role("button", name=objects.volume).click()
    expect(page).to_have_url(re.compile(rf"#/volumes/{objects.volume}$"))
    detail = page.locator("#view-volumes")
    expect(detail.locator("h1")).to_have_text(objects.volume)
    expect(detail.locator(".kv-list")).to_contain_text(f"/volumes/{objects.volume}/_data")
    expect(detail.locator(".link-list")).to_contain_text(objects.container)


def test_missing_objects_show_a_clear_error(page: Page, server):
    login(page, server, "#/containers/0123456789ab-missing")
    expect(page.locator("#view-containers [role=alert]")).to_contain_text("No such container: 0123456789ab-missing")
    page.goto(f"{server.url}/#/volumes/dockext-views-missing")
    expect(page.locator("#view-volumes [role=alert]")).to_contain_text("No such volume: dockext-views-missing")


def test_the_views_open_when_the_extension_list_cannot_be_read(page: Page, server):
    page.route("**/api/extensions", lambda r: r.fulfill(
        status=500, content_type="application/json", body='{"error": {"message": "the state cannot be read"}}'))
    page.goto(server.login_url)
    expect(page.locator("#home-error")).to_contain_text("the state cannot be read")
    page.get_by_role("button", name="Containers", exact=True).click()
    expect(page.locator("#view-containers h1")).to_have_text("Containers")
    page.locator("#home-button").click()
    expect(page.locator("#home-error")).to_be_visible()
    expect(page.locator("#view-containers")).to_be_hidden()


# -- navigation requested by an extension ---------------------------------------------------------------

ASK = """async ([route, args]) => {
  const id = "nav-" + Math.random().toString(16).slice(2);
  const reply = new Promise((resolve) => {
    addEventListener("message", (e) => {
      if (e.data && e.data.dockext === "reply" && e.data.id === id) resolve(e.data);
    });
    setTimeout(() => resolve("no reply"), 5000);
  });
  parent.postMessage({dockext: "navigate", id, route, args}, window.__dockextConfig.dashboardOrigin);
  return await reply;
}"""
SEND = """([route, args]) => {
  parent.postMessage({dockext: "navigate", id: "nav-go", route, args}, window.__dockextConfig.dashboardOrigin);
}"""


def install_extension(server, fixture_image) -> str:
    run_dockext("install", "-f", fixture_image("ui-only", repo_prefix=PREFIX), home=server.home)
    return f"{PREFIX}_ui-only"


def open_extension(page: Page, key: str) -> Frame:
    page.locator(f'[role="tab"][data-key="{key}"]').click()
    expect(page.locator("#extension-frame")).to_have_attribute("data-key", key)
    expect(page.frame_locator("#extension-frame").locator("#has-ddclient")).to_have_text("yes")
    handle = page.locator("#extension-frame").element_handle()
    content = handle.content_frame() if handle else None
    assert content is not None
    return content


def extension_frame(page: Page, server, fixture_image) -> Frame:
    key = install_extension(server, fixture_image)
    login(page, server)
    return open_extension(page, key)


def test_navigation_to_missing_objects_rejects_and_keeps_the_extension(page: Page, server, fixture_image):
    frame = extension_frame(page, server, fixture_image)
    for route, args, message in [
        ("viewContainer", ["f" * 64], "No such container"),
        ("viewContainerLogs", ["dockext-views-missing"], "No such container"),
        ("viewContainerTerminal", [""], "must be a non-empty string"),
        ("viewImage", ["sha256:" + "e" * 64, "missing:latest"], "No such image"),
        ("viewVolume", ["dockext-views-missing"], "No such volume"),
        ("viewSomethingElse", [], "unknown navigation route"),
    ]:
        reply = frame.evaluate(ASK, [route, args])
        assert reply["ok"] is False, (route, reply)
        assert message in reply["error"]["message"], (route, reply)
    reply = frame.evaluate(ASK, ["viewDevEnvironments", []])
    assert (reply["ok"], reply["value"]) == (True, None)
    expect(page.locator("#extension-frame")).to_be_visible()  # still on the extension


def test_navigation_to_a_container_leaves_the_extension_for_its_view(page: Page, server, fixture_image, objects):
    frame = extension_frame(page, server, fixture_image)
    frame.evaluate(SEND, ["viewContainerLogs", [objects.container_id]])
    expect(page).to_have_url(re.compile(rf"#/containers/{objects.container_id}/logs$"))
    expect(page.locator("#extension-frame")).to_have_count(0)  # the extension's UI is destroyed
    expect(page.get_by_role("log", name="Container logs")).to_contain_text("hello-from-views")


def test_navigation_to_an_image_and_a_volume(page: Page, server, fixture_image, objects):
    frame = extension_frame(page, server, fixture_image)
    frame.evaluate(SEND, ["viewImage", [objects.image_id, objects.image]])
    expect(page).to_have_url(re.compile(r"#/images/sha256%3A[0-9a-f]{64}$"))
    expect(page.locator("#view-images h1")).to_have_text(objects.image)
    frame = open_extension(page, f"{PREFIX}_ui-only")
    frame.evaluate(SEND, ["viewVolume", [objects.volume]])
    expect(page.locator("#view-volumes h1")).to_have_text(objects.volume)
