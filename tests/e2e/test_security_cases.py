"""Security cases of reference security-reliability.md A6 that need a real browser: DNS rebinding (S2), what one
extension's page can do to another's (S13, S14) and to the dashboard's message channel (S15).

Chromium enforces the parts of these that live in the browser (CORS, frame-ancestors); the tests check that what
the server sends makes it do so, as an attacker's page would observe it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from playwright.sync_api import Browser, Frame, Page, expect

from tests.support.cli import run_dockext
from tests.support.server import Server, start_server

from .conftest import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.engine, pytest.mark.browser]

KEY_A = "dockext-test-seca_ui-only"
KEY_B = "dockext-test-secb_ui-only"


@pytest.fixture(scope="module")
def rebinding_browser(browser: Browser) -> Iterator[Browser]:
    """Chromium whose resolver answers 127.0.0.1 for evil.test, as a rebinding attacker's DNS would."""
    b = browser.browser_type.launch(executable_path=chromium_path(),
                                    args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.test 127.0.0.1"])
    yield b
    b.close()


def test_s2_a_rebound_name_gets_no_page_and_no_api_data(rebinding_browser: Browser, tmp_path: Path) -> None:
    """S2: after logging in on the dashboard, a page of ``evil.test`` (resolving to 127.0.0.1, same port) gets
    403 for itself and for every API call it makes from its own origin, so it reads nothing."""
    server = start_server(tmp_path / "home")
    context = rebinding_browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.login_url)
        expect(page.locator("#home-title")).to_be_visible()  # logged in: the browser holds the session cookie
        evil = f"http://evil.test:{server.port}"
        answer = page.goto(evil + "/")
        assert answer is not None and answer.status == 403
        assert "unknown host name" in page.content() and page.locator("#home-title").count() == 0
        got = page.evaluate(
            """async () => {
              const out = {};
              for (const path of ["/api/extensions", "/api/docker/containers", "/api/fs/home", "/login"]) {
                const r = await fetch(path, {credentials: "include", headers: {"X-Dockext": "1"}});
                out[path] = [r.status, await r.text()];
              }
              const post = await fetch("/api/ui-instances", {method: "POST", credentials: "include",
                headers: {"X-Dockext": "1", "Content-Type": "application/json"}, body: "{}"});
              out.post = [post.status, await post.text()];
              return out;
            }"""
        )
        assert {k: v[0] for k, v in got.items()} == dict.fromkeys(got, 403), got
        assert all(v[1] == "Forbidden: unknown host name\n" for v in got.values()), got
    finally:
        context.close()
        server.stop()


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory, fixture_image: Any) -> Iterator[Server]:
    """A server with two extensions (the ui-only fixture under two names: two origins)."""
    srv = start_server(tmp_path_factory.mktemp("security") / "home")
    try:
        for prefix in ("dockext-test-seca", "dockext-test-secb"):
            run_dockext("install", "-f", fixture_image("ui-only", repo_prefix=prefix), home=srv.home)
        yield srv
    finally:
        srv.stop()
        for prefix in ("dockext-test-seca", "dockext-test-secb"):
            run_dockext("rm", f"{prefix}/ui-only", home=srv.home, check=False)


def open_frame(page: Page, server: Server, key: str) -> Frame:
    page.goto(server.login_url)
    page.locator(f'[role="tab"][data-key="{key}"]').click()
    expect(page.frame_locator("#extension-frame").locator("#status")).to_have_text("done")
    handle = page.locator("#extension-frame").element_handle()
    assert handle is not None
    frame = handle.content_frame()
    assert frame is not None
    return frame


def new_instance(page: Page, key: str) -> dict[str, str]:
    """A UI instance of ``key`` opened through the dashboard's API (as the dashboard does), from the page."""
    body: dict[str, str] = page.evaluate(
        """async (key) => {
          const r = await fetch("/api/ui-instances", {method: "POST", headers: {"X-Dockext": "1",
            "X-Dockext-Key": window.dockext.key(), "Content-Type": "application/json"},
            body: JSON.stringify({extension: key})});
          return await r.json();
        }""",
        key,
    )
    return body


@pytest.mark.parametrize("web", ["allow", "deny"])
def test_s13_one_extensions_page_cannot_use_or_read_anothers_origin(
    page: Page, two: Server, docker_client: docker.DockerClient, web: str
) -> None:
    """S13: A's page, even knowing a live URL (capability included) of B, cannot read B's page or SDK and cannot
    make B run a command. With the ``web`` permission (the default) A's cross-origin requests are made by dockext,
    which refuses those to itself (by address, and by the mark it puts on every such request, whatever name or
    redirect leads back); without it the browser blocks the reads (no CORS), and the exec's preflight is never
    granted, so the request with the X-Dockext header is never sent."""
    volume = "dockext-sec-" + secrets.token_hex(4)  # what B's exec would create if it ran
    run_dockext("permissions", "set", KEY_A.replace("_", "/", 1), f"web={web}", home=two.home)
    frame = open_frame(page, two, KEY_A)
    b = new_instance(page, KEY_B)
    base = b["url"].rsplit("/", 1)[0]
    got = frame.evaluate(
        """async ([base, marker]) => {
          const out = {};
          const attempt = async (name, url, init) => {
            try { const r = await fetch(url, init); out[name] = "read " + r.status + " " + (await r.text()).length; }
            catch (e) { out[name] = "blocked"; out.why.push(e.message); }
          };
          out.why = [];
          await attempt("page", base + "/index.html", {credentials: "include"});
          await attempt("sdk", base + "/__dockext__/ddclient.js", {credentials: "include"});
          await attempt("exec", base + "/__dockext__/exec", {method: "POST", credentials: "include",
            headers: {"X-Dockext": "1", "Content-Type": "application/json"},
            body: JSON.stringify({cli: "docker", cmd: "volume", args: ["create", marker]})});
          return out;
        }""",
        [base, volume],
    )
    try:
        why = got.pop("why")
        assert got == {"page": "blocked", "sdk": "blocked", "exec": "blocked"}, got
        if web == "allow":
            assert why == ["Failed to fetch: dockext does not pass web requests to itself"] * 3, why
        else:
            assert not [w for w in why if "dockext" in w], why  # the browser's own failures
        assert volume not in [v.name for v in docker_client.volumes.list()]
    finally:
        run_dockext("permissions", "set", KEY_A.replace("_", "/", 1), "web=allow", home=two.home)
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.volumes.get(volume).remove()


def test_s14_one_extensions_page_cannot_frame_another_or_the_dashboard(page: Page, two: Server) -> None:
    """S14: B's live page and the dashboard put in an iframe by A's page are refused by Chromium
    (frame-ancestors): A can reach into neither."""
    frame = open_frame(page, two, KEY_A)
    b = new_instance(page, KEY_B)
    result = frame.evaluate(
        """async ([bUrl, dash]) => {
          const out = {};
          for (const [name, url] of [["b", bUrl], ["dashboard", dash]]) {
            const f = document.createElement("iframe");
            f.src = url;
            const loaded = new Promise((resolve) => f.addEventListener("load", resolve, {once: true}));
            document.body.appendChild(f);
            await loaded;
            let seen;
            try { seen = f.contentDocument ? "readable" : "opaque"; } catch (e) { seen = "opaque"; }
            let title;
            try { title = f.contentWindow.document.title; } catch (e) { title = null; }
            out[name] = [seen, title];
          }
          return out;
        }""",
        [b["url"], two.url + "/"],
    )
    assert result == {"b": ["opaque", None], "dashboard": ["opaque", None]}, result
    # what Chromium put in those frames is its error page, not B's UI or the dashboard
    urls = [f.url for f in page.frames]
    assert not [u for u in urls if u.startswith(b["url"].split("?")[0])], urls
    assert sum(u.startswith(two.url) for u in urls) == 1, urls  # the top page only


def test_s15_the_dashboard_takes_messages_only_from_the_open_extensions_own_frame(page: Page, two: Server) -> None:
    """S15: messages posted to the dashboard by a window of the same origin that is not the extension frame (a
    frame nested in it, its script running there) are ignored: no toast, no navigation, no reply to anyone. The
    frame's own toast is shown."""
    frame = open_frame(page, two, KEY_A)
    dashboard = two.url
    frame.evaluate(
        """(dashboard) => {
          window.__replies = [];
          window.addEventListener("message", (e) => window.__replies.push(e.data));
          const nested = document.createElement("iframe");
          document.body.appendChild(nested);  // about:blank: the extension's origin, another window
          nested.contentWindow.__replies = [];
          nested.contentWindow.addEventListener("message", (e) => nested.contentWindow.__replies.push(e.data));
          window.__nested = nested.contentWindow;
          // a function of the nested window's own realm: the messages' source is the nested window
          const post = new nested.contentWindow.Function("message", "dashboard",
                                                         "window.top.postMessage(message, dashboard);");
          post({dockext: "toast", level: "error", message: "forged by a nested frame"}, dashboard);
          post({dockext: "navigate", id: "forged-1", route: "viewContainers", args: []}, dashboard);
          post({dockext: "dialog", id: "forged-2", options: {}}, dashboard);
        }""",
        dashboard,
    )
    # then the frame itself: a toast, and a request whose reply comes after the forged ones were handled
    reply = frame.evaluate(
        """(dashboard) => new Promise((resolve) => {
          window.addEventListener("message", (e) => { if (e.data && e.data.id === "own-1") resolve(e.data); });
          window.parent.postMessage({dockext: "toast", level: "success", message: "from the frame"}, dashboard);
          window.parent.postMessage({dockext: "navigate", id: "own-1", route: "viewDevEnvironments", args: []},
                                    dashboard);
        })""",
        dashboard,
    )
    assert reply == {"dockext": "reply", "id": "own-1", "ok": True, "value": None}
    expect(page.locator(".toast-message")).to_have_text(["from the frame"])
    assert page.locator(".toast-message", has_text="forged").count() == 0
    assert page.get_by_role("dialog").count() == 0
    assert "#/containers" not in page.url
    expect(page.locator("#extension-frame")).to_have_attribute("data-key", KEY_A)
    replies = frame.evaluate("[window.__replies.map((r) => r.id), window.__nested.__replies]")
    assert replies == [["own-1"], []]


def set_cookie_bomb(frame: Frame) -> int:
    """From an extension's page: 170 cookies of 4000 bytes for the dashboard's domain, and one of its own."""
    held: int = frame.evaluate(
        """() => {
          const v = "x".repeat(4000);
          for (let i = 0; i < 170; i++) document.cookie = `bomb${i}=${v}; domain=dockext.localhost; path=/`;
          document.cookie = "own=1; path=/";  // one of the extension's own, on its origin
          return document.cookie.length;
        }"""
    )
    return held


def test_an_extensions_cookie_bomb_is_cleared_and_the_dashboard_comes_back(page: Page, two: Server) -> None:
    """An extension's page can set cookies for the dashboard's domain (its origin is a subdomain of it, and
    same-site): 170 cookies of 4000 bytes make every request to the dashboard and to every extension carry a
    Cookie line of 660 KiB, ten times what dockext reads. The 431 has Chromium delete the site's cookies
    (extension origins' too), and the user is told so: the dashboard's next API call sends them to the login page
    with the reason, and a page (the extension's frame reloading) says so and links to the dashboard."""
    assert set_cookie_bomb(open_frame(page, two, KEY_A)) > 600_000  # Chromium took them: the bomb is real
    page.evaluate("location.hash = '#/containers'")  # the dashboard's next call to its API
    expect(page).to_have_url(f"{two.url}/login?why=cookies")
    expect(page.get_by_role("alert")).to_contain_text("had it delete them, your session's too. Log in again.")
    assert page.context.cookies() == []  # every cookie of the site: the bomb, the session, the extension's own
    page.goto(two.login_url)
    expect(page.locator("#home-title")).to_be_visible()

    frame = open_frame(page, two, KEY_A)
    set_cookie_bomb(frame)
    answer = frame.goto(frame.url)  # the extension's own page, reloaded
    assert answer is not None and answer.status == 431
    inner = page.frame_locator("#extension-frame")
    expect(inner.locator("h1")).to_have_text("Too many cookies")
    expect(inner.locator("body")).to_contain_text("dockext has asked your browser to delete this site's cookies")
    assert page.context.cookies() == []
    with page.context.expect_page() as opened:  # the frame may not lead the tab away (its sandbox): a new tab
        inner.get_by_role("link", name="open the dashboard in a new one").click()
    expect(opened.value).to_have_url(f"{two.url}/login")
    opened.value.close()
    page.reload()  # or this tab, reloaded
    expect(page).to_have_url(re.compile(rf"^{re.escape(two.url)}/login"))
    page.goto(two.login_url)
    open_frame(page, two, KEY_A)  # and the extension opens again

    set_cookie_bomb(open_frame(page, two, KEY_A))
    answer = page.goto(two.url + "/")  # the dashboard's own page: a link back in the same tab
    assert answer is not None and answer.status == 431
    page.get_by_role("link", name="Open the dashboard again").click()
    expect(page).to_have_url(f"{two.url}/login")


def test_an_extensions_page_cannot_send_the_dashboards_tab_elsewhere_but_opens_windows(page: Page, two: Server) -> None:
    """A click in an extension's frame gives it user activation, with which a cross-origin frame may navigate the
    top window: without the frame's sandbox, A's page could replace the whole dashboard with a copy of the login
    page asking for the token. Chromium refuses it (no allow-top-navigation); a window it opens (not sandboxed)
    has no opener to reach the tab through; the popups, dialogs and storage an extension uses still work."""
    frame = open_frame(page, two, KEY_A)
    frame.evaluate(
        """() => {
          for (const [id, action] of [
            ["away", () => { window.top.location.href = "http://127.0.0.1:1/copy-of-the-login-page"; }],
            ["away-open", () => { window.open("http://127.0.0.1:1/copy-of-the-login-page", "_top"); }],
            ["popup", () => { window.__popup = window.open("about:blank"); }],
          ]) {
            const b = document.createElement("button");
            b.id = id;
            b.textContent = id;
            b.addEventListener("click", action);
            document.body.appendChild(b);
          }
          localStorage.setItem("still", "works");
        }"""
    )
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    frame.evaluate("confirm('dialogs work')")  # a sandbox without allow-modals would skip it
    assert dialogs == ["dialogs work"]
    dashboard = page.url
    inner = page.frame_locator("#extension-frame")
    for button in ("#away", "#away-open"):
        inner.locator(button).click()
        page.wait_for_timeout(500)  # a navigation would have started by now
        assert page.url == dashboard
    expect(page.locator("#extension-frame")).to_have_attribute("data-key", KEY_A)
    with page.context.expect_page() as popup:
        inner.locator("#popup").click()
    # nor through a window it opens: the dashboard's Cross-Origin-Opener-Policy gives that window no opener
    assert popup.value.evaluate("window.opener") is None and frame.evaluate("window.__popup") is None
    assert frame.evaluate("localStorage.getItem('still')") == "works"
