"""`dockext dev ui-source | debug | reset` in a real browser: an extension UI served by a developer's dev server
(with its hot-reload WebSocket) on the extension's own origin, ddClient working in it; calls logged in debug."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.support.cli import run_dockext
from tests.support.server import listening_socket, uvicorn_in_thread

from .test_dashboard import open_tab, tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-dev"
KEY = f"{PREFIX}_vm-image"

APP_JS = """
const $ = (id) => document.getElementById(id);
$("platform").textContent = window.ddClient.host.platform;
window.ddClient.extension.vm.service.get("/hello").then(
  (r) => { $("hello").textContent = r.message; },
  (e) => { $("hello").textContent = "error " + JSON.stringify(e); },
);
const ws = new WebSocket(`ws://${location.host}/hmr?token=abc`, "vite-hmr");
ws.onopen = () => ws.send("ping");
ws.onmessage = (event) => { $("ws").textContent = `${event.data} over ${ws.protocol}`; };
"""


@dataclass
class DevServer:
    url: str
    build: dict[str, int] = field(default_factory=lambda: {"n": 1})
    seen: list[dict[str, str]] = field(default_factory=list)  # headers of each HTTP request


@pytest.fixture
def dev_server() -> Iterator[DevServer]:
    """A stand-in for `npm run dev`: the page at /index.html, a module at an absolute path (/src/app.js, as
    Vite serves them) and a hot-reload WebSocket at /hmr speaking the `vite-hmr` subprotocol."""
    sock = listening_socket()
    dev = DevServer(f"http://127.0.0.1:{sock.getsockname()[1]}")

    async def page(request: Request) -> Response:
        dev.seen.append(dict(request.headers))
        return HTMLResponse(
            f"<!doctype html><html><head><title>dev</title></head><body><h1 id='title'>dev build {dev.build['n']}"
            "</h1><p id='platform'></p><p id='hello'></p><p id='ws'></p>"
            "<script type='module' src='/src/app.js'></script></body></html>"
        )

    async def app_js(request: Request) -> Response:
        dev.seen.append(dict(request.headers))
        return Response(APP_JS, media_type="text/javascript")

    async def hmr(ws: WebSocket) -> None:
        await ws.accept(subprotocol="vite-hmr" if "vite-hmr" in ws.scope.get("subprotocols", []) else None)
        message = await ws.receive_text()
        await ws.send_text(f"{message} answered by the dev server (token {ws.query_params.get('token')})")
        await ws.receive()  # until the page goes

    async def sign_in(request: Request) -> Response:  # a redirect to another of its own paths, as a path
        return RedirectResponse("/welcome/", status_code=302)

    app = Starlette(routes=[
        Route("/src/app.js", app_js), WebSocketRoute("/hmr", hmr), Route("/sign-in", sign_in),
        Route("/{path:path}", page),  # like Vite and webpack: the page for any other path (client-side routing)
    ])
    with uvicorn_in_thread(uvicorn.Config(app, log_level="warning", lifespan="off"), sock):
        yield dev


@pytest.fixture
def installed(server, fixture_image) -> Iterator[str]:
    ref = fixture_image("vm-image", repo_prefix=PREFIX)
    run_dockext("install", "-f", ref, home=server.home)
    yield ref
    run_dockext("dev", "reset", ref, home=server.home)
    run_dockext("rm", ref, home=server.home)


def reopen(page: Page):
    page.locator("#home-button").click()
    expect(page.locator("#extension-frame")).to_have_count(0)
    return open_tab(page, KEY)


def test_a_ui_from_a_dev_server_gets_ddclient_its_backend_and_hot_reload(page: Page, server, installed, dev_server):
    out = run_dockext("dev", "ui-source", installed, dev_server.url, home=server.home)
    assert f"now loads from {dev_server.url}" in out.stdout
    page.goto(server.login_url)
    expect(tab(page, KEY).locator(".tab-dev")).to_have_text("dev")
    ui = open_tab(page, KEY)
    expect(ui.locator("#title")).to_have_text("dev build 1")
    expect(ui.locator("#platform")).to_have_text("linux")  # window.ddClient was injected into the dev page
    expect(ui.locator("#hello")).to_have_text("hello from vm-image")  # and reaches the extension's backend
    expect(ui.locator("#ws")).to_have_text("ping answered by the dev server (token abc) over vite-hmr")
    src = page.locator("#extension-frame").get_attribute("src")
    assert src.startswith(f"http://{PREFIX}-vm-image-") and ".dockext.localhost:" in src  # its own origin
    # nothing that identifies the user went to the dev server
    assert dev_server.seen and all("cookie" not in h and "origin" not in h and "referer" not in h
                                   for h in dev_server.seen)

    # the dev server's own paths, outside /i/<cap>/, carry no capability and get none (no cookie needed for them)
    origin_host = src.split("/")[2]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/some/client/route", headers={"Host": origin_host})
    outside = conn.getresponse()
    body = outside.read().decode()
    conn.close()
    assert outside.status == 200 and "dev build 1" in body
    assert "__dockext__" not in body and "/i/" not in body  # no SDK, so no capability

    # the dev server's redirect to one of its own paths (`Location: /welcome/`) stays under /i/<cap>/, so the
    # page it lands on still has ddClient (found in a review: it went to /welcome/, outside, with no SDK)
    frame = page.locator("#extension-frame").element_handle().content_frame()
    frame.evaluate("location.href = 'sign-in'")
    frame.wait_for_url(f"{src.split('/i/')[0]}/i/*/welcome/")
    expect(ui.locator("#platform")).to_have_text("linux")

    dev_server.build["n"] = 2  # the developer changed the page: a reopened tab shows it (nothing cached)
    expect(reopen(page).locator("#title")).to_have_text("dev build 2")

    run_dockext("dev", "reset", installed, home=server.home)
    ui = reopen(page)
    expect(ui.locator("#get")).to_have_text("hello from vm-image")  # the packaged UI again
    expect(tab(page, KEY).locator(".tab-dev")).to_have_count(0)


def test_a_dev_server_that_is_not_running_is_said_so(page: Page, server, installed):
    closed = listening_socket()
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    run_dockext("dev", "ui-source", installed, url, home=server.home)
    page.goto(server.login_url)
    ui = open_tab(page, KEY)
    expect(ui.locator("h1")).to_have_text("The dev server cannot be reached")
    expect(ui.locator("body")).to_contain_text(url)
    expect(ui.locator("body")).to_contain_text("dockext dev reset")


def test_debug_logs_every_ddclient_call_to_the_console(page: Page, server, installed):
    run_dockext("dev", "debug", installed, home=server.home)
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    page.goto(server.login_url)
    ui = open_tab(page, KEY)
    expect(ui.locator("#get")).to_have_text("hello from vm-image")  # the packaged UI, unchanged by tracing
    expect(ui.locator("#status")).to_have_text("done")
    assert any(m.startswith("[ddClient] ddClient.extension.vm.service.get /hello") for m in logged), logged
    assert any(m.startswith("[ddClient] ddClient.extension.vm.service.get resolved") for m in logged), logged
    # the page also asks for /missing, which answers 404
    assert any(m.startswith("[ddClient] ddClient.extension.vm.service.get rejected") for m in logged), logged


def test_dev_commands_refuse_an_extension_that_is_not_installed_and_a_bad_url(server, installed):
    missing = run_dockext("dev", "ui-source", "acme/nothing", "http://127.0.0.1:3000", home=server.home, check=False)
    assert missing.returncode == 1 and "extension acme/nothing is not installed" in missing.stderr
    bad = run_dockext("dev", "ui-source", installed, "file:///etc", home=server.home, check=False)
    assert bad.returncode == 1 and "is not an http(s) URL of a dev server" in bad.stderr
