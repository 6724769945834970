"""``dockext serve --domain dockext.test --tls-cert ... --tls-key ...``, opened by Chromium as a browser on another
machine would: its resolver maps ``dockext.test`` and ``*.dockext.test`` to the server (here 127.0.0.1, as the
user's wildcard DNS record would name the server's address) and it trusts the certificate (pinned by its key, as
a certificate the user's browser trusts). Everything an extension does then works over HTTPS and WSS, in a
secure context: on a port of its own, on the default port (443, names without a port) and behind a proxy that
serves TLS in front of dockext (``--public-url``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server.run import server_config
from tests.support.cli import run_dockext
from tests.support.server import Server, listening_socket, start_server, uvicorn_in_thread
from tests.support.tlscert import TestCert, make_cert
from tests.support.tlsproxy import tls_proxy
from tests.unit import test_server

from .conftest import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-test-tls"  # our own image names: other suites install fixtures on the same engine
VM_KEY = f"{PREFIX}_vm-image"
STREAMS_KEY = f"{PREFIX}_streams"
NAME = "dockext.test"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> TestCert:
    return make_cert(tmp_path_factory.mktemp("tls"), NAME, f"*.{NAME}")


@pytest.fixture(scope="module")
def home(tmp_path_factory, fixture_image) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("tls-domain") / "home"
    refs = [fixture_image("vm-image", repo_prefix=PREFIX), fixture_image("streams", repo_prefix=PREFIX)]
    for ref in refs:
        run_dockext("install", "-f", ref, home=home)
    yield home
    for ref in refs:
        run_dockext("rm", ref, home=home, check=False)


@pytest.fixture(scope="module")
def srv(home: Path, cert: TestCert) -> Iterator[Server]:
    server = start_server(home, domain=NAME, tls=(cert.cert, cert.key))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def far_browser(browser: Browser, cert: TestCert) -> Iterator[Browser]:
    """Chromium that resolves the domain and every name under it to the server, and trusts its certificate."""
    b = browser.browser_type.launch(executable_path=chromium_path(), args=[
        *CHROMIUM_ARGS, f"--host-resolver-rules=MAP {NAME} 127.0.0.1, MAP *.{NAME} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={cert.spki}",
    ])
    yield b
    b.close()


@pytest.fixture
def far_page(far_browser: Browser, srv: Server) -> Iterator[Page]:
    context = far_browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(srv.login_url)
    expect(page.locator("#home-title")).to_be_visible()
    yield page
    context.close()


def test_the_dashboard_logs_in_over_https_with_a_cookie_never_sent_in_clear(far_page: Page, srv: Server) -> None:
    assert far_page.url == f"https://{NAME}:{srv.port}/"  # the token is gone from the address bar
    (cookie,) = far_page.context.cookies()
    assert (cookie["name"], cookie["domain"], cookie["secure"], cookie["httpOnly"]) == (
        f"dockext-{srv.port}", NAME, True, True)
    assert far_page.evaluate("window.isSecureContext") is True


def test_an_extension_tab_loads_from_its_https_origin_and_reaches_its_backend(far_page: Page, srv: Server) -> None:
    far_page.goto(f"{srv.url}/#/extensions/{VM_KEY}")
    ui = far_page.frame_locator("#extension-frame")
    expect(ui.locator("#get")).to_have_text("hello from vm-image")  # vm.service through the proxy
    expect(ui.locator("#vm-exec")).to_have_text("hello from inside the backend")  # exec in its container
    expect(ui.locator("#v0-backend")).to_have_text("hello from vm-image")
    src = far_page.locator("#extension-frame").get_attribute("src") or ""
    assert re.match(rf"https://[a-z0-9-]+\.{re.escape(NAME)}:{srv.port}/i/", src), src
    frame = next(f for f in far_page.frames if f.url.startswith(src.split("/i/")[0]))
    # a secure context: what extension UIs use from the platform is there, as on Docker Desktop
    assert frame.evaluate("[window.isSecureContext, typeof crypto.subtle.digest, typeof navigator.clipboard]") == [
        True, "function", "object"]


def test_streaming_exec_runs_over_wss(far_page: Page, srv: Server) -> None:
    far_page.goto(f"{srv.url}/#/extensions/{STREAMS_KEY}")
    ui = far_page.frame_locator("#extension-frame")
    expect(ui.locator("#status")).to_have_text("ready")
    ui.locator("#run-tick").click()  # ticker.sh 2 3: "tick 1", three seconds, "tick 2", exit 0
    expect(ui.locator("#tick-first")).to_have_text("tick 1")
    expect(ui.locator("#tick-close")).to_have_text("0", timeout=15_000)
    assert ui.locator("#tick-log").text_content() == "tick 1\ntick 2\n"


#: a page that runs its host binary (which prints "hi") both ways: the answer over HTTPS, the stream over WSS
EXEC_PAGE = """<!doctype html><html><head><title>exec</title></head><body><p id="out">pending</p>
<p id="stream">pending</p><script>
const show = (id, text) => { document.getElementById(id).textContent = text; };
ddClient.extension.host.cli.exec("kubectl", []).then((r) => show("out", r.stdout.trim()),
  (e) => show("out", "error " + JSON.stringify(e)));
let got = "";
ddClient.extension.host.cli.exec("kubectl", [], {stream: {
  onOutput(d) { got += d.stdout || ""; }, onError(e) { show("stream", "error " + e); },
  onClose(code) { show("stream", got.trim() + " " + code); }}});
</script></body></html>"""


def test_on_port_443_the_browser_reaches_everything_by_names_without_the_port(
    far_browser: Browser, cert: TestCert, tmp_path: Path
) -> None:
    """A browser leaves 443 out of every Host and Origin (``https://dockext.test``). The server runs as ``dockext
    serve --port 443`` would (its state on port 443), listening on a free port the browser's resolver maps 443 to,
    so that the test needs no privileged port."""
    test_server.install_fake(tmp_path, "acme_x", html=EXEC_PAGE)
    sock = listening_socket(16)
    state = HostState(Layout(tmp_path), port=443, token="t0ken-" + "e" * 42, domain=NAME, tls=True)
    config = server_config(create_app(state), ssl_certfile=str(cert.cert), ssl_keyfile=str(cert.key))
    at = f"127.0.0.1:{sock.getsockname()[1]}"
    browser = far_browser.browser_type.launch(executable_path=chromium_path(), args=[
        *CHROMIUM_ARGS, f"--host-resolver-rules=MAP {NAME} {at}, MAP *.{NAME} {at}",
        f"--ignore-certificate-errors-spki-list={cert.spki}",
    ])
    try:
        with uvicorn_in_thread(config, sock):
            page = browser.new_page()
            page.goto(f"https://{NAME}/?token={state.token}")
            expect(page.locator("#home-title")).to_be_visible()
            assert page.url == f"https://{NAME}/"
            page.goto(f"https://{NAME}/#/extensions/acme_x")
            ui = page.frame_locator("#extension-frame")
            expect(ui.locator("#out")).to_have_text("hi")  # exec: an API call with the page's Origin
            expect(ui.locator("#stream")).to_have_text("hi 0")  # the WebSocket's Origin is checked too
            src = page.locator("#extension-frame").get_attribute("src") or ""
            assert src.startswith(f"https://acme-x-abc123.{NAME}/i/"), src
    finally:
        browser.close()


def test_behind_a_proxy_that_serves_tls_everything_works_at_the_public_address(
    far_browser: Browser, cert: TestCert, home: Path
) -> None:
    """``dockext serve --public-url https://dockext.test``: plain HTTP on its own port, behind a proxy serving TLS
    for the name and the names under it (here on a free port, which the browser's resolver maps 443 to)."""
    server = start_server(home, public_url=f"https://{NAME}")
    try:
        with tls_proxy(cert.cert, cert.key, server.port) as proxy_port:
            at = f"127.0.0.1:{proxy_port}"
            browser = far_browser.browser_type.launch(executable_path=chromium_path(), args=[
                *CHROMIUM_ARGS, f"--host-resolver-rules=MAP {NAME} {at}, MAP *.{NAME} {at}",
                f"--ignore-certificate-errors-spki-list={cert.spki}",
            ])
            try:
                page = browser.new_page()
                page.goto(f"https://{NAME}/?token={server.token}")
                expect(page.locator("#home-title")).to_be_visible()
                assert page.url == f"https://{NAME}/"
                assert [c["secure"] for c in page.context.cookies()] == [True]
                page.goto(f"https://{NAME}/#/extensions/{VM_KEY}")
                ui = page.frame_locator("#extension-frame")
                expect(ui.locator("#get")).to_have_text("hello from vm-image")
                expect(ui.locator("#vm-exec")).to_have_text("hello from inside the backend")
                page.goto(f"https://{NAME}/#/extensions/{STREAMS_KEY}")
                expect(ui.locator("#status")).to_have_text("ready")
                ui.locator("#run-tick").click()
                expect(ui.locator("#tick-close")).to_have_text("0", timeout=15_000)
                # its own port, by a loopback name: where to go, never a redirect (which a proxy could loop)
                direct = page.goto(f"http://127.0.0.1:{server.port}/")
                assert direct is not None and direct.status == 421
                assert page.locator("a").get_attribute("href") == f"https://{NAME}/"
            finally:
                browser.close()
    finally:
        server.stop()
