"""Cross-origin web requests of an extension UI in Chromium (fetch, XMLHttpRequest, EventSource): made by the host
with the ``web`` permission (Docker Desktop applies no CORS to extension views), by the browser under CORS without
it (real server, real engine).

The site is a real HTTP server on 127.0.0.1 that sends no CORS headers, like the OAuth provider's token endpoint
the official oauth sample POSTs to from its UI.
"""

from __future__ import annotations

import urllib.parse

import pytest
from playwright.sync_api import Frame, Page

from tests.support.backends import RecordingSite
from tests.support.cli import run_dockext

from .test_dashboard import open_tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-web"
KEY = f"{PREFIX}_ui-only"

FETCH_TOKEN = """async (url) => {
  try {
    const r = await fetch(url, {method: "POST", body: JSON.stringify({code: "c0de"}), headers: {
      Accept: "application/json", "Content-Type": "application/json", Authorization: "Bearer from-the-page"}});
    return {status: r.status, url: r.url, redirected: r.redirected, type: r.headers.get("content-type"),
            body: await r.json()};
  } catch (e) {
    return {error: `${e.name}: ${e.message}`};
  }
}"""

FETCH_GET = """async (url) => {
  try {
    const r = await fetch(url);
    return {status: r.status, url: r.url, redirected: r.redirected, text: await r.text()};
  } catch (e) {
    return {error: `${e.name}: ${e.message}`};
  }
}"""

XHR_FORM = """(url) => new Promise((resolve) => {
  const xhr = new XMLHttpRequest();   // what axios uses in a browser
  xhr.open("POST", url);
  xhr.setRequestHeader("Content-Type", "application/x-www-form-urlencoded");
  xhr.onload = () => resolve({status: xhr.status, url: xhr.responseURL, body: JSON.parse(xhr.responseText)});
  xhr.onerror = () => resolve({error: "network error", status: xhr.status});
  xhr.send("code=c0de&state=s");
})"""

EVENTS = """(url) => new Promise((resolve) => {
  const source = new EventSource(url);
  const got = [];
  let opened = 0;
  source.onopen = () => { opened += 1; };
  source.onmessage = (e) => {
    got.push(`${e.lastEventId}: ${e.data}`);
    if (got.length === 4) {
      source.close();
      resolve({got, opened, origin: e.origin, state: source.readyState});
    }
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) resolve({error: "closed", got, opened});
  };
  setTimeout(() => { source.close(); resolve({timeout: true, got, opened}); }, 20000);
})"""


def extension_frame(page: Page) -> Frame:
    open_tab(page, KEY)
    frame = page.locator("#extension-frame").element_handle().content_frame()
    assert frame is not None
    frame.wait_for_function("() => window.ddClient !== undefined")
    return frame


def seen_headers(site: RecordingSite) -> dict[str, str]:
    return {k.lower(): v for k, v in site.seen[-1][2].items()}


def test_a_page_reaches_a_site_without_cors_through_the_host_and_not_once_the_permission_is_denied(
        page: Page, server, fixture_image):
    ref = fixture_image("ui-only", repo_prefix=PREFIX)
    run_dockext("install", "-f", ref, home=server.home)
    site = RecordingSite()
    try:
        page.goto(server.login_url)
        frame = extension_frame(page)

        # fetch: a POST with a JSON body and an Authorization header, as the OAuth sample makes it
        got = frame.evaluate(FETCH_TOKEN, f"{site.url}/login/oauth/access_token")
        assert got == {"status": 201, "url": f"{site.url}/login/oauth/access_token", "redirected": False,
                       "type": "application/json",
                       "body": {"method": "POST", "path": "/login/oauth/access_token", "body": '{"code":"c0de"}',
                                "authorization": "Bearer from-the-page", "contentType": "application/json"}}, got
        sent = seen_headers(site)
        assert "cookie" not in sent and "origin" not in sent and "referer" not in sent, sent
        assert "Chrome" in sent["user-agent"]  # the page's own headers go on

        # XMLHttpRequest (axios): the same way
        got = frame.evaluate(XHR_FORM, f"{site.url}/token")
        assert got == {"status": 201, "url": f"{site.url}/token",
                       "body": {"method": "POST", "path": "/token", "body": "code=c0de&state=s", "authorization": None,
                                "contentType": "application/x-www-form-urlencoded"}}, got

        # EventSource (server-sent events): read through the host; it reconnects when the stream ends, sending the
        # last event's id back, as a browser's EventSource does
        got = frame.evaluate(EVENTS, f"{site.url}/events")
        assert got == {"got": ["1: event 1", "2: event 2", "3: event 3", "4: event 4"], "opened": 2,
                       "origin": site.url, "state": 2}, got
        asked = [{k.lower(): v for k, v in headers.items()} for _, path, headers, _ in site.seen if path == "/events"]
        assert [h.get("last-event-id") for h in asked] == [None, "2"] and asked[0]["accept"] == "text/event-stream"

        # redirects are followed by the host, and the page sees where it ended
        got = frame.evaluate(FETCH_GET, f"{site.url}/redirect")
        assert (got["status"], got["url"], got["redirected"]) == (200, f"{site.url}/final?from=redirect", True), got

        # a site that cannot be reached fails as fetch fails, with the reason
        got = frame.evaluate(FETCH_GET, "http://127.0.0.1:1/nothing-listens")
        assert got["error"].startswith("TypeError: Failed to fetch: http://127.0.0.1:1/nothing-listens could not be "
                                       "requested"), got
        # and as an XMLHttpRequest fails: a network error (axios: "Network Error", no response), the reason in the
        # console for the developer
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        got = frame.evaluate(XHR_FORM, "http://127.0.0.1:1/nothing-listens")
        assert got == {"error": "network error", "status": 0}, got
        reason = urllib.parse.quote("http://127.0.0.1:1/nothing-listens could not be requested", safe="")
        assert any(f"dockext-failed:/{reason}" in text for text in console), console

        # never dockext itself: not by its address, nor through a site's redirect
        got = frame.evaluate(FETCH_GET, f"http://127.0.0.1:{server.port}/api/extensions")
        assert got == {"error": "TypeError: Failed to fetch: dockext does not pass web requests to itself"}, got
        got = frame.evaluate(FETCH_GET, f"{site.url}/redirect-to?http://localhost:{server.port}/api/extensions")
        assert got == {"error": "TypeError: Failed to fetch: dockext does not pass web requests to itself"}, got
        got = frame.evaluate(XHR_FORM, f"http://127.0.0.1:{server.port}/api/extensions")
        assert got == {"error": "network error", "status": 0}, got

        # denied while the page is open: the host says so, and the browser makes the request itself, under CORS
        out = run_dockext("permissions", "set", ref, "web=deny", home=server.home).stdout
        assert out.strip() == f"{ref}: web denied."
        before = len(site.seen)
        got = frame.evaluate(FETCH_GET, f"{site.url}/after-deny")
        assert got["error"].startswith("TypeError"), got
        assert "could not be requested" not in got["error"]  # the browser's own CORS failure, not dockext's
        got = frame.evaluate(XHR_FORM, f"{site.url}/xhr-after-deny")  # a network error, as under CORS
        assert got == {"error": "network error", "status": 0}, got
        # whatever reached the site came from the browser, which says where the page is
        assert all(headers.get("Origin", "").endswith(f".dockext.localhost:{server.port}")
                   for _, _, headers, _ in site.seen[before:]), site.seen[before:]

        # and a page opened after that does not ask the host at all
        page.reload()
        frame = extension_frame(page)
        got = frame.evaluate(FETCH_TOKEN, f"{site.url}/token-after-reload")
        assert got["error"].startswith("TypeError"), got
        got = frame.evaluate(XHR_FORM, f"{site.url}/xhr-after-reload")
        assert got == {"error": "network error", "status": 0}, got
        got = frame.evaluate(EVENTS, f"{site.url}/events")
        assert got == {"error": "closed", "got": [], "opened": 0}, got  # the browser's own, under CORS

        # allowed again: the next page reaches the site through the host
        run_dockext("permissions", "set", ref, "web=allow", home=server.home)
        page.reload()
        frame = extension_frame(page)
        assert frame.evaluate(FETCH_GET, f"{site.url}/again")["status"] == 200
    finally:
        site.close()
        run_dockext("rm", ref, home=server.home, check=False)
