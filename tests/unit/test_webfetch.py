"""Cross-origin web requests of extension UIs, made by the host (``server/webfetch.py``, the ``web`` permission).

The server runs in-process (Starlette's TestClient) and the site is a real HTTP server on 127.0.0.1 that sends no
CORS headers. The browser's side (the SDK sending a page's fetch and XMLHttpRequest here) is proven in Chromium by
tests/e2e/test_web_requests.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse

import pytest

from dockext import permissions
from dockext.errors import WebRequestError
from dockext.server import webfetch
from tests.support.backends import RecordingSite

from . import test_server
from .test_server import PORT, TOKEN, cap_base, ext_url, login

env = test_server.env  # two installed extensions and the server, in-process


@pytest.fixture
def site():
    s = RecordingSite()
    yield s
    s.close()


def web(client, base, target, method="GET", headers=None, **kw):
    sent = {"X-Dockext": "1", "X-Dockext-Target": target, **(headers or {})}
    return client.request(method, f"{base}/__dockext__/web", headers=sent, **kw)


def test_a_post_without_cors_reaches_the_site_with_its_body_and_authorization(env, site):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = web(client, base, f"{site.url}/login/oauth/access_token?x=1", "POST", content=b'{"code":"c0de"}',
            headers={"Authorization": "Bearer abc", "Content-Type": "application/json", "Accept": "application/json",
                     "Origin": ext_url(state, a), "Referer": f"{base}/index.html", "Sec-Fetch-Site": "same-origin",
                     "X-Dockext-Other": "ours"})
    assert r.status_code == 201  # the site's own status
    assert r.json() == {"method": "POST", "path": "/login/oauth/access_token?x=1", "body": '{"code":"c0de"}',
                        "authorization": "Bearer abc", "contentType": "application/json"}
    assert r.headers["x-dockext-url"] == f"{site.url}/login/oauth/access_token?x=1"
    [(_, _, headers, _)] = site.seen
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["host"] == f"127.0.0.1:{site.port}" and lower["accept"] == "application/json"
    for never in ("cookie", "origin", "referer", "sec-fetch-site", "x-dockext", "x-dockext-target", "x-dockext-other"):
        assert never not in lower, never
    assert lower["x-dockext-via"] == "web"  # what dockext's own router refuses
    assert TOKEN not in json.dumps(headers) and a.origin_slug not in json.dumps(headers)


@test_server.BOTH_WAYS
def test_headers_that_would_act_on_the_extensions_origin_are_dropped(env, site):
    client, state, a, b = env
    login(client)
    base = cap_base(client, state, a)
    r = web(client, base, f"{site.url}/cookie")
    assert (r.status_code, r.text, r.headers["x-site"]) == (200, "cookies", "kept")
    # one Date, the server's own, not "<site's>, <dockext's>" (the ASGI app alone writes none)
    assert len(r.headers.get_list("date")) == (1 if hasattr(client, "taken") else 0)
    for gone in ("set-cookie", "strict-transport-security", "clear-site-data", "access-control-allow-origin"):
        assert gone not in r.headers, gone
    assert "site" not in client.cookies and "sid" not in client.cookies
    # nor does dockext keep the site's session for the next request, this extension's or another's
    web(client, cap_base(client, state, b), f"{site.url}/after")
    assert "cookie" not in {k.lower() for k in site.seen[-1][2]}
    # the extension origin's own policy, as on every answer of that origin
    assert r.headers["content-security-policy"].startswith("frame-ancestors ")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_redirects_follow_the_pages_mode(env, site):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = web(client, base, f"{site.url}/redirect")  # fetch's default: follow
    assert r.status_code == 200 and r.json()["path"] == "/final?from=redirect"
    assert (r.headers["x-dockext-url"], r.headers["x-dockext-redirected"]) == (f"{site.url}/final?from=redirect", "1")
    r = web(client, base, f"{site.url}/redirect", headers={"X-Dockext-Redirect": "manual"})
    assert (r.status_code, r.headers["location"]) == (302, "/final?from=redirect")  # the browser makes it opaque
    assert "x-dockext-redirected" not in r.headers


def test_an_encoded_answer_passes_as_it_came(env, site):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = web(client, base, f"{site.url}/gzip", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"  # not decoded by dockext: the browser does it
    assert r.text == "unzipped by the browser"
    assert {k.lower(): v for k, v in site.seen[-1][2].items()}["accept-encoding"] == "gzip"


def test_a_withheld_permission_is_said_so_and_nothing_is_sent(env, site):
    client, state, a, b = env
    login(client)
    permissions.set_grants(state.layout, a.key, web=False)
    base = cap_base(client, state, a)
    r = web(client, base, f"{site.url}/token", "POST", content=b"x")
    assert r.status_code == 403 and r.headers["x-dockext-proxy-error"] == "withheld"
    assert "may not make web requests" in r.json()["error"]["message"]
    assert site.seen == []
    # the page is told at load, so that its requests go to the browser from the start
    sdk = client.get(f"{base}/__dockext__/ddclient.js").text
    assert json.loads(sdk.split("window.__dockextConfig = ", 1)[1].split(";\n", 1)[0])["web"] is False
    # another extension keeps the default (allowed)
    assert web(client, cap_base(client, state, b), f"{site.url}/token").status_code == 200


@pytest.mark.parametrize("target", ["", "file:///etc/passwd", "ftp://127.0.0.1/x", "http://", "http://[::1/x",
                                    "javascript:alert(1)", "/relative/path"])
def test_what_is_not_an_http_url_is_refused(env, target):
    client, state, a, _ = env
    login(client)
    r = web(client, cap_base(client, state, a), target)
    assert r.status_code == 502 and r.headers["x-dockext-proxy-error"] == "1"
    assert r.json()["error"]["type"] == "WebRequestError"


def test_the_engines_own_tcp_address_is_refused_even_through_a_redirect(env, site, monkeypatch):
    client, state, a, _ = env
    login(client)
    monkeypatch.setattr(state.engine, "host", "tcp://127.0.0.1:2375")
    base = cap_base(client, state, a)
    for target in ("http://127.0.0.1:2375/containers/json", "http://localhost:2375/v1.41/info",
                   "http://127.0.0.2:2375/info", f"{site.url}/redirect-to?http://localhost:2375/containers/json"):
        r = web(client, base, target)
        assert r.status_code == 502 and "Docker engine" in r.json()["error"]["message"], target
    assert [p for _, p, _, _ in site.seen] == ["/redirect-to?http://localhost:2375/containers/json"]


def test_the_engine_is_refused_in_every_spelling_and_by_any_name_that_resolves_to_it(env, site, monkeypatch):
    """Found by a bug hunt: only the engine's own spelling was refused, so ``127.1``, ``2130706433``, ``0.0.0.0`` or
    a DNS name resolving to 127.0.0.1 reached a TCP engine on loopback. Here the "engine" is the test site's port:
    nothing may reach it. The name is resolved once and the connection made to the address checked (a name in
    no check of the URL, as after a redirect, is caught when the connection is made)."""
    client, state, a, _ = env
    login(client)
    monkeypatch.setattr(state.engine, "host", f"tcp://127.0.0.1:{site.port}")
    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self, host, port, *args, **kwargs):
        if host == "engine.example.test":  # a name whose DNS answer is loopback (as 127.0.0.1.nip.io's is)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    base = cap_base(client, state, a)
    for host in ("127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0.0.0.0", "[::ffff:127.0.0.1]",
                 "[::1]", "localhost", "engine.example.test"):
        r = web(client, base, f"http://{host}:{site.port}/containers/json")
        assert r.status_code == 502 and "Docker engine's own address" in r.json()["error"]["message"], host
    assert site.seen == []
    # the engine without a port is on the Docker CLI's default ports
    monkeypatch.setattr(state.engine, "host", "tcp://127.0.0.1")
    for port in (2375, 2376):
        r = web(client, base, f"http://127.0.0.1:{port}/containers/json")
        assert r.status_code == 502 and "Docker engine's own address" in r.json()["error"]["message"], port
    # another port of the same machine is not the engine: the site answers, by name too
    r = web(client, base, f"http://localhost:{site.port}/token")
    assert r.status_code == 200 and [p for _, p, _, _ in site.seen] == ["/token"]


def test_a_site_that_cannot_be_reached_is_a_clear_failure(env, site):
    client, state, a, _ = env
    login(client)
    port = site.port
    site.close()  # nothing listens there any more
    r = web(client, cap_base(client, state, a), f"http://127.0.0.1:{port}/token")
    assert r.status_code == 502 and r.headers["x-dockext-proxy-error"] == "1"
    assert f"http://127.0.0.1:{port}/token could not be requested: ConnectError" in r.json()["error"]["message"]


def test_an_xmlhttprequest_fails_as_a_network_error_with_the_reason_in_the_refused_url(env, site):
    """The SDK's XMLHttpRequest asks to fail as the browser fails: a redirect to ``dockext-failed:/<reason>``,
    which Chromium turns into a network error (tests/e2e/test_web_requests.py); fetch keeps dockext's answer."""
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    port = site.port
    site.close()
    xhr = {"X-Dockext-Failure": "network-error"}
    r = web(client, base, f"http://127.0.0.1:{port}/token", "POST", content=b"x", headers=xhr, follow_redirects=False)
    assert r.status_code == 307 and r.headers["x-dockext-proxy-error"] == "1" and r.content == b""
    scheme, _, reason = r.headers["location"].partition(":/")
    assert scheme == webfetch.FAILED_SCHEME and "%20" in reason and "/" not in reason
    said = urllib.parse.unquote(reason)
    assert said.startswith(f"http://127.0.0.1:{port}/token could not be requested: ConnectError"), said
    assert r.headers["cache-control"] == "no-store"
    assert web(client, base, "file:///etc/passwd", headers=xhr, follow_redirects=False).status_code == 307
    permissions.set_grants(state.layout, a.key, web=False)  # withheld: as the browser's own CORS failure would be
    r = web(client, base, f"http://127.0.0.1:{port}/token", headers=xhr, follow_redirects=False)
    assert r.status_code == 307 and r.headers["x-dockext-proxy-error"] == "withheld"
    assert "may%20not%20make%20web%20requests" in r.headers["location"]


def test_the_page_must_say_it_is_the_sdk_and_hold_this_extensions_capability(env, site):
    client, state, a, b = env
    login(client)
    base = cap_base(client, state, a)
    r = client.get(f"{base}/__dockext__/web", headers={"X-Dockext-Target": f"{site.url}/x"})
    assert r.status_code == 403  # a navigation or a plain form cannot set X-Dockext
    other = ext_url(state, b) + base[len(ext_url(state, a)):]  # a's capability on b's origin
    assert web(client, other, f"{site.url}/x").status_code == 404
    assert site.seen == []


def test_target_rules():
    unix = "unix:///var/run/docker.sock"
    assert webfetch.target_of("https://example.test/a?b", unix, PORT) == "https://example.test/a?b"
    assert webfetch.target_of("http://127.0.0.1:2376/x", "tcp://127.0.0.1:2375", PORT) == "http://127.0.0.1:2376/x"
    assert webfetch.target_of(f"http://example.test:{PORT}/", unix, PORT) == f"http://example.test:{PORT}/"
    for target, engine in (("http://[::1]:2375/x", "tcp://localhost:2375"), ("http://localhost:80/", "tcp://127.0.0.1:80"),
                           (f"http://127.0.0.1:{PORT}/api/extensions", unix),
                           (f"http://acme-x.dockext.localhost:{PORT}/i/cap/__dockext__/exec", unix),
                           (f"http://[::1]:{PORT}/", unix)):
        with pytest.raises(WebRequestError):
            webfetch.target_of(target, engine, PORT)
    # served with --domain: that name and the extension origins under it are dockext's own too, on its port only
    for target in (f"https://dockext.test:{PORT}/api/extensions", f"https://acme-x.DOCKEXT.test.:{PORT}/i/cap/"):
        with pytest.raises(WebRequestError, match="to itself"):
            webfetch.target_of(target, unix, PORT, "dockext.test")
    assert webfetch.target_of("https://dockext.test/", unix, PORT, "dockext.test") == "https://dockext.test/"
    assert webfetch.target_of(f"https://xdockext.test:{PORT}/", unix, PORT, "dockext.test")


@pytest.mark.parametrize("host", ["dockext.localhost", "127.0.0.1", "ext"])
def test_dockext_refuses_the_requests_it_makes_for_pages_whatever_led_there(env, host):
    """A site's redirect, or a name that resolves to this machine, brings a page's request back to dockext: it
    carries X-Dockext-Via and is refused before routing, so no capability is ever used from the host."""
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    if host == "ext":
        name, method, url = ext_url(state, a).split("//", 1)[1], "POST", f"{base}/__dockext__/exec"
    else:
        name, method, url = f"{host}:{PORT}", "GET", "/api/extensions"
    call = {"cli": "host", "cmd": "kubectl", "args": []} if method == "POST" else None
    r = client.request(method, url, json=call, headers={"Host": name, "X-Dockext": "1", "X-Dockext-Via": "web"})
    assert r.status_code == 403 and "does not answer the web requests it makes" in r.text
    r = client.request(method, url, json=call, headers={"Host": name, "X-Dockext": "1"})  # unmarked: answered
    assert r.status_code == 200 and (r.json()["stdout"] == "hi\n" if method == "POST" else r.json()), r.text


def test_unreadable_grants_send_the_page_to_the_browser(env, site):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    (state.layout.root / permissions.FILE).write_text("{not json")
    r = web(client, base, f"{site.url}/x")
    assert r.status_code == 403 and r.headers["x-dockext-proxy-error"] == "withheld"
    assert "unreadable" in r.json()["error"]["message"] and site.seen == []


def test_a_length_beside_a_transfer_encoding_is_not_passed_on():
    """Found by a bug hunt: a site sending both kept its (wrong) Content-Length while the body went unframed, and
    the page's fetch failed where a browser's direct one works (the encoding wins: RFC 9112, 6.3)."""
    both = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"3"), (b"Transfer-Encoding", b"chunked")]
    assert webfetch.answer_headers(both, "http://s.test/", False) == [
        (b"Content-Type", b"text/plain"), (b"x-dockext-url", b"http://s.test/")]
    length = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"3")]
    assert webfetch.answer_headers(length, "http://s.test/", True) == [
        *length, (b"x-dockext-url", b"http://s.test/"), (b"x-dockext-redirected", b"1")]


@pytest.mark.parametrize("env", ["served"], indirect=True)
def test_a_page_that_leaves_before_the_answer_ends_its_request_and_others_do_not_wait(env, site):
    """Found by a bug hunt: with no deadline on a site's answer (long polls) and no look at the page meanwhile,
    requests to a site that never answers stayed open after their pages had gone, and one client for every
    extension let 100 of them take every connection: the next web request of any extension waited 30 s, then
    failed. Now the request ends with its page, and each extension has connections of its own."""
    client, state, a, b = env
    login(client)
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(128)
    base_a, base_b = cap_base(client, state, a), cap_base(client, state, b)
    origin_a = urllib.parse.urlsplit(base_a)
    port = client._transport.port
    try:
        for _ in range(3):  # a's page asks, then leaves before any answer
            with socket.create_connection(("127.0.0.1", port)) as page:
                page.sendall(f"GET {origin_a.path}/__dockext__/web HTTP/1.1\r\nHost: {origin_a.netloc}\r\n"
                             f"X-Dockext: 1\r\nX-Dockext-Target: http://127.0.0.1:{hang.getsockname()[1]}/\r\n\r\n"
                             .encode())
                hang.settimeout(10)
                to_site, _ = hang.accept()  # dockext's request reached the site...
            with to_site:
                to_site.settimeout(10)
                while to_site.recv(65536):  # ...and ends once the page is gone (EOF, not a timeout)
                    pass
        r = web(client, base_b, f"{site.url}/after")
        assert r.status_code == 200 and [p for _, p, _, _ in site.seen] == ["/after"]
        assert webfetch._CLIENTS[state].keys() == {a.key, b.key}  # one client each
    finally:
        hang.close()
