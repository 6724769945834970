"""HTTP-level checks of the server against records on disk (no engine): auth, hosts, origins, files.

The engine tests and the browser tests prove the same flows end to end; these pin the security rules
(reference security-reliability.md S1-S19) one request at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server.run import server_config
from dockext.store import Store
from tests.support.backends import RecordingBackend
from tests.support.server import listening_socket, uvicorn_in_thread

from .test_store import make_record

PORT = 7683
TOKEN = "t0ken-" + "a" * 42
DASH = f"http://dockext.localhost:{PORT}"


def install_fake(root: Path, key: str, html: str = "<html><head><title>x</title></head><body>hi</body></html>",
                 says: str = "hi"):
    """An installed extension on disk: a UI (index.html, assets/app.js) and a host binary printing ``says``."""
    layout = Layout(root)
    layout.ensure()
    d = layout.extension_dir(key)
    (d / "ui" / "assets").mkdir(parents=True)
    (d / "ui" / "index.html").write_text(html)
    (d / "ui" / "assets" / "app.js").write_text("console.log('app')")
    (d / "host").mkdir()
    (d / "host" / "kubectl").write_text(f"#!/bin/sh\necho {says}\n")
    (d / "host" / "kubectl").chmod(0o755)
    rec = make_record(key)
    Store(layout).write(rec)
    return rec


@pytest.fixture
def env(tmp_path, request):
    """(client, state, A, B). Through Starlette's TestClient (the ASGI app alone), or, parametrized indirectly
    with ``"served"``, through the real server as ``dockext serve`` runs it (uvicorn, dockext's protocol and its
    shortcut past ASGI), with an httpx client that sends every name's requests to it; there ``client.taken``
    lists the request targets the shortcut answered."""
    a = install_fake(tmp_path, "acme_a")
    b = install_fake(tmp_path, "acme_b")
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN)
    if getattr(request, "param", "asgi") == "served":
        with served(state) as client:
            yield client, state, a, b
        return
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as client:
        yield client, state, a, b


BOTH_WAYS = pytest.mark.parametrize("env", ["asgi", "served"], indirect=True)


class ToServer(httpx.BaseTransport):
    """Sends each request to 127.0.0.1:``port`` whatever its URL names (``*.dockext.localhost`` does not resolve
    here), with the URL's own Host header; the URL is put back for the cookie jar."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        request.url = url.copy_with(host="127.0.0.1", port=self.port)
        try:
            return self.inner.handle_request(request)
        finally:
            request.url = url

    def close(self) -> None:
        self.inner.close()


@contextlib.contextmanager
def served(state: HostState) -> Iterator[httpx.Client]:
    app = create_app(state)
    offered = app.shortcut  # type: ignore[attr-defined]
    taken: list[str] = []

    def recording(method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
        handler = offered(method, url, headers)
        if handler is not None:
            taken.append(url.decode())
        return handler

    app.shortcut = recording  # type: ignore[attr-defined]
    sock = listening_socket(64)
    with uvicorn_in_thread(server_config(app, loop="asyncio"), sock), \
            httpx.Client(base_url=DASH, follow_redirects=False, transport=ToServer(sock.getsockname()[1])) as client:
        client.taken = taken  # type: ignore[attr-defined]
        yield client


def login(client, token=TOKEN):
    """What the browser and the dashboard's script do: the cookie from the token's login, and the session's key
    from the fragment of its redirect, sent with every API call."""
    r = client.get(f"/?token={token}")
    assert r.status_code == 303
    client.headers["X-Dockext-Key"] = r.headers["location"].partition("#dockext-key=")[2]
    return r


def ext_url(state, rec):
    return f"http://{rec.origin_slug}.dockext.localhost:{PORT}"


def open_ui(client, rec, query=""):
    r = client.post("/api/ui-instances", json={"extension": rec.key, "query": query}, headers={"X-Dockext": "1"})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize(
    "host",
    [f"evil.test:{PORT}", f"localhost.evil.test:{PORT}", f"127.0.0.1.nip.io:{PORT}", f"0.0.0.0:{PORT}",
     f"unknownext.localhost:{PORT}", "", f"localhost:{PORT + 1}", "localhost"],
)
def test_unknown_host_names_are_refused_before_anything_runs(env, host):
    client, *_ = env
    login(client)
    r = client.get("/api/extensions", headers={"Host": host})
    assert r.status_code == 403


def test_an_extension_host_outside_the_dashboards_site_is_refused(env):
    client, _, a, _ = env
    login(client)
    assert client.get("/", headers={"Host": f"{a.origin_slug}.localhost:{PORT}"}).status_code == 403


@pytest.mark.parametrize("alias", [f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"[::1]:{PORT}"])
def test_pages_on_another_loopback_name_are_sent_to_the_dashboards_name_and_the_api_answers_there(env, alias):
    """Extension frames are same-site only under dockext.localhost; scripts keep using 127.0.0.1 for the API."""
    client, *_ = env
    r = client.get("/login?next=x", headers={"Host": alias})
    assert (r.status_code, r.headers["location"]) == (307, f"{DASH}/login?next=x")
    r = client.get(f"/?token={TOKEN}", headers={"Host": alias})
    assert (r.status_code, r.headers["location"]) == (307, f"{DASH}/?token={TOKEN}")  # logs in over there
    assert client.get("/api/extensions", headers={"Host": alias}).status_code == 401
    r = client.get("/api/extensions", headers={"Host": alias, "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and [e["key"] for e in r.json()] == ["acme_a", "acme_b"]


def test_a_cookie_planted_by_an_extension_page_does_not_log_the_user_out(env):
    """A same-site page can set `dockext-<port>=junk; Domain=dockext.localhost`; the browser then sends both."""
    client, *_ = env
    session = login(client).cookies[f"dockext-{PORT}"]
    client.cookies.clear()
    for header in (f"dockext-{PORT}=junk; dockext-{PORT}={session}", f"dockext-{PORT}={session}; dockext-{PORT}=junk",
                   f"dockext-{PORT}=1.a.\u00e9; dockext-{PORT}={session}"):  # not even with non-ASCII in it
        assert client.get("/api/extensions", headers={"Cookie": header.encode()}).status_code == 200
    assert client.get("/api/extensions", headers={"Cookie": f"dockext-{PORT}=junk"}).status_code == 401


def dashboard_routes(client) -> list[tuple[str, str, str]]:
    """(kind, method, path) of every route of the dashboard's app, path parameters filled in."""
    gate = client.app.dashboard_app  # HostRouter -> AuthGate -> the Starlette app
    found = []
    for route in gate.app.routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        if isinstance(route, WebSocketRoute):
            found.append(("websocket", "GET", path))
        elif isinstance(route, Route):
            found += [("http", method, path) for method in sorted(route.methods or ["GET"])]
        else:
            raise AssertionError(f"a kind of route this test does not know: {route!r}")
    return found


def test_every_route_in_the_route_table_needs_auth_except_the_login_page(env):
    """S3, by enumeration: a route added later without auth fails here, whatever it is."""
    client, *_ = env
    routes = dashboard_routes(client)
    assert len(routes) > 20  # the table was read
    public = {("GET", "/login"), ("HEAD", "/login"), ("POST", "/login"), ("GET", "/favicon.ico"),
              ("HEAD", "/favicon.ico")}
    for kind, method, path in routes:
        if kind == "websocket":
            with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(path, headers={"Origin": DASH}):
                pass
            assert closed.value.code == 1008, path
            continue
        r = client.request(method, path, headers={"X-Dockext": "1", "Origin": DASH})
        if (method, path) in public:
            assert r.status_code in (200, 204, 401), (method, path, r.status_code)  # POST /login: a bad token
            continue
        if path.startswith("/api/"):
            assert r.status_code == 401, (method, path, r.status_code)
            if method != "HEAD":  # no body to a HEAD
                assert r.json()["error"]["type"] == "Unauthorized", (method, path)
        else:
            assert r.status_code == 303 and r.headers["location"] == "/login", (method, path)
    # a real file behind the static route is no different; the login page and its style sheet are served
    r = client.get("/static/dashboard/index.html")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/login").status_code == 200
    assert client.get("/static/login.css").status_code == 200


@pytest.mark.parametrize("bad", ["", TOKEN[:-1], TOKEN + "x", "x" * len(TOKEN)])
def test_wrong_tokens_are_rejected(env, bad):
    client, *_ = env
    r = client.get(f"/?token={bad}")
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    r = client.post("/login", content=f"token={bad}", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401


def test_token_login_sets_a_strict_httponly_cookie_and_drops_the_token_from_the_url(env):
    client, *_ = env
    r = client.get(f"/?token={TOKEN}&x=1")
    location, _, key = r.headers["location"].partition("#dockext-key=")
    assert location == "/?x=1" and len(key) == 64  # the session's key, for the dashboard's script
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"dockext-{PORT}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Domain" not in cookie
    assert TOKEN not in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


def test_form_login(env):
    client, *_ = env
    r = client.post("/login", content=f"token={TOKEN}", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"].startswith("/#dockext-key=")
    key = r.headers["location"].partition("#dockext-key=")[2]
    assert client.get("/api/extensions", headers={"X-Dockext-Key": key}).status_code == 200


def test_the_login_page_says_why_the_dashboard_sent_the_browser_there_in_its_own_words_only(env):
    client, *_ = env
    said = client.get("/login?why=cookies").text
    assert 'role="alert"' in said and "more cookies for this site than dockext reads" in said
    for why in ("", "other", "<script>alert(1)</script>"):
        page = client.get("/login", params={"why": why}).text
        assert 'role="alert"' not in page and "script>alert" not in page


def test_logout_ends_the_session_for_good_and_only_that_one(env):
    client, *_ = env
    login(client)
    cookie, key = client.cookies.get(f"dockext-{PORT}"), client.headers["X-Dockext-Key"]
    assert client.post("/api/logout").status_code == 403  # a mutating call: the X-Dockext header (CSRF)
    r = client.post("/api/logout", headers={"X-Dockext": "1"})
    assert r.status_code == 200 and r.json() == {"loggedOut": True}
    assert r.headers["set-cookie"].startswith(f'dockext-{PORT}=""') and "Max-Age=0" in r.headers["set-cookie"]
    # a copy of the cookie and its key (what a thief would replay) opens nothing, not even a page
    client.cookies.clear()
    copied = {"Cookie": f"dockext-{PORT}={cookie}", "X-Dockext-Key": key}
    assert client.get("/api/extensions", headers=copied).status_code == 401
    assert client.get("/", headers=copied).status_code == 303
    login(client)  # logging in again works, with a new session
    assert client.get("/api/extensions").status_code == 200
    assert client.cookies.get(f"dockext-{PORT}") != cookie


def test_the_session_cookie_alone_opens_pages_but_no_api(env):
    """Found in a security review: a cookie is sent to every port of its host, so a process listening on another
    port of dockext.localhost could be sent the dashboard's cookie (an extension's page can make the browser
    send it there) and replay it. The API also needs the session's key, which lives in the dashboard origin's
    storage (port included), and which the cookie does not give (it takes the server's secret)."""
    client, _, a, _ = env
    login(client)
    key = client.headers.pop("X-Dockext-Key")
    assert client.get("/").status_code == 200  # the page itself: its script holds the key
    assert client.get("/api/extensions").status_code == 401
    assert client.get("/api/extensions", headers={"X-Dockext-Key": "0" * 64}).status_code == 401
    assert client.get("/api/extensions", params={"key": key}).status_code == 200  # EventSource, WebSocket
    assert client.get("/api/extensions", headers={"X-Dockext-Key": key}).status_code == 200
    assert client.get(f"/api/extensions/{a.key}/icon").status_code != 401  # an <img>: the cookie suffices
    other = client.cookies.get(f"dockext-{PORT}")
    client.cookies.clear()
    login(client)  # another session: its own key; the first key does not open it
    assert other != client.cookies.get(f"dockext-{PORT}")
    assert client.get("/api/extensions", headers={"X-Dockext-Key": key}).status_code == 401


def test_mutations_need_the_csrf_header_and_a_same_origin(env):
    client, state, a, _ = env
    login(client)
    assert client.post("/api/ui-instances", json={"extension": a.key}).status_code == 403
    r = client.post("/api/ui-instances", json={"extension": a.key},
                    headers={"X-Dockext": "1", "Origin": "http://evil.test"})
    assert r.status_code == 403
    r = client.post("/api/ui-instances", json={"extension": a.key},
                    headers={"X-Dockext": "1", "Origin": ext_url(state, a)})
    assert r.status_code == 403  # an extension origin cannot drive the dashboard API either
    assert state.instances == {}


def test_extension_list(env):
    client, *_ = env
    login(client)
    data = client.get("/api/extensions").json()
    assert [e["key"] for e in data] == ["acme_a", "acme_b"]
    assert data[0]["ui"] == {"title": "Acme"} and data[0]["host"] == {"binaries": ["kubectl"]}


def test_ui_instance_serves_files_on_its_own_origin_only(env):
    client, state, a, b = env
    login(client)
    inst = open_ui(client, a, "?code=abc&state=1")
    origin = ext_url(state, a)
    assert inst["origin"] == origin
    assert inst["url"].startswith(origin + "/i/") and inst["url"].endswith("/index.html?code=abc&state=1")
    path = inst["url"][len(origin):]
    page = client.get(origin + path)
    assert page.status_code == 200
    cap = path.split("/")[2]
    # the SDK is injected first thing in <head>, before any page script
    assert f'<head><script src="/i/{cap}/__dockext__/ddclient.js"></script><title>' in page.text
    csp = page.headers["content-security-policy"]
    assert csp.startswith("frame-ancestors ") and DASH in csp.split() and "*" not in csp
    assert client.get(f"{origin}/i/{cap}/assets/app.js").text == "console.log('app')"
    # the same capability on another extension's origin is worthless
    assert client.get(f"{ext_url(state, b)}/i/{cap}/index.html").status_code == 404
    # the dashboard cookie does not open extension files without a capability
    assert client.get(f"{origin}/i/wrong/index.html").status_code == 404
    # the capability as it is, not percent-encoded: what follows it is cut from the raw path (security review)
    encoded = f"/i/%{ord(cap[0]):02X}{cap[1:]}/assets/app.js"
    assert client.get(origin + encoded).status_code == 404
    # closing the instance kills the capability
    assert client.delete(f"/api/ui-instances/{inst['instance']}", headers={"X-Dockext": "1"}).status_code == 204
    assert client.get(origin + path).status_code == 404


def test_sdk_config_is_chosen_by_the_server(env):
    client, state, a, _ = env
    login(client)
    inst = open_ui(client, a)
    origin = ext_url(state, a)
    cap = inst["url"][len(origin):].split("/")[2]
    js = client.get(f"{origin}/i/{cap}/__dockext__/ddclient.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert f'"image": "{a.image}"' in js.text
    assert f'"dashboardOrigin": "{DASH}"' in js.text
    assert "__ddMuiV5Themes" in js.text and "ddClient" in js.text


@pytest.mark.parametrize(
    "path", ["../extension.json", "%2e%2e/extension.json", "..%2fextension.json", "assets/../../extension.json",
             "index.html%00", "assets%5c..%5c..%5cextension.json", "../ui-evil/x"],
)
def test_static_serving_never_leaves_the_ui_root(env, path):
    client, state, a, _ = env
    login(client)
    inst = open_ui(client, a)
    origin = ext_url(state, a)
    cap = inst["url"][len(origin):].split("/")[2]
    r = client.get(f"{origin}/i/{cap}/{path}")
    assert r.status_code == 404
    assert "schema" not in r.text


def test_a_symlink_planted_after_install_is_not_followed(env, tmp_path):
    client, state, a, _ = env
    login(client)
    os.symlink("/etc/passwd", tmp_path / "extensions" / a.key / "ui" / "passwd")
    inst = open_ui(client, a)
    origin = ext_url(state, a)
    cap = inst["url"][len(origin):].split("/")[2]
    assert client.get(f"{origin}/i/{cap}/passwd").status_code == 404


def test_exec_policy_refusals_come_back_as_errors(env):
    client, state, a, _ = env
    login(client)
    inst = open_ui(client, a)
    origin = ext_url(state, a)
    cap = inst["url"][len(origin):].split("/")[2]
    url = f"{origin}/i/{cap}/__dockext__/exec"
    for body in [
        {"cli": "host", "cmd": "../../bin/sh", "args": ["-c", "id"]},
        {"cli": "host", "cmd": "/bin/sh", "args": []},
        {"cli": "host", "cmd": "sh", "args": []},
        {"cli": "docker", "cmd": "-H", "args": ["unix:///tmp/evil.sock", "ps"]},
        {"cli": "docker", "cmd": "--context", "args": ["x", "ps"]},
        {"cli": "docker", "cmd": "ps", "args": [], "options": {"env": {"DOCKER_HOST": "unix:///tmp/evil"}}},
        {"cli": "host", "cmd": "kubectl", "args": [], "options": {"env": {"LD_PRELOAD": "/tmp/evil.so"}}},
    ]:
        r = client.post(url, json=body, headers={"X-Dockext": "1"})
        assert r.status_code == 403, body
        assert r.json()["error"]["type"] == "ExecRefused"
    assert client.post(url, json={"cli": "host", "cmd": "kubectl", "args": []}).status_code == 403  # no header


def test_host_binary_runs_with_its_output(env):
    client, state, a, _ = env
    login(client)
    inst = open_ui(client, a)
    origin = ext_url(state, a)
    cap = inst["url"][len(origin):].split("/")[2]
    r = client.post(f"{origin}/i/{cap}/__dockext__/exec", json={"cli": "host", "cmd": "kubectl", "args": []},
                    headers={"X-Dockext": "1"})
    assert r.status_code == 200
    assert r.json() == {"cmd": "kubectl", "code": 0, "stdout": "hi\n", "stderr": "", "killed": False,
                        "signal": None}


@BOTH_WAYS
def test_proxy_to_a_dead_backend_is_a_clear_502(env):
    client, state, a, _ = env
    login(client)
    inst = open_ui(client, a)
    origin = ext_url(state, a)
    cap = inst["url"][len(origin):].split("/")[2]
    r = client.get(f"{origin}/i/{cap}/__dockext__/vm/hello")
    assert r.status_code == 502
    assert r.headers["x-dockext-proxy-error"] == "1"
    assert "ENOENT" in r.json()["error"]["message"]


def test_removed_extension_disappears_and_its_origin_closes(env, tmp_path):
    client, state, a, _ = env
    login(client)
    inst = open_ui(client, a)
    pool = state.backend_pool(a)
    assert pool is not None and state.backend_pool(a) is pool  # one per backend socket
    (tmp_path / "extensions" / a.key / "extension.json").unlink()
    assert state.refresh()
    assert [e["key"] for e in client.get("/api/extensions").json()] == ["acme_b"]
    assert client.get(inst["url"]).status_code == 403  # the host name is no longer known
    assert state.instances == {}
    # (the two fake records share one backend socket name: its pool goes with the last of them)
    (tmp_path / "extensions" / "acme_b" / "extension.json").unlink()
    assert state.refresh()
    assert state._pools == {}  # its connections are closed with it


@pytest.fixture
def backend(env, tmp_path):
    _, _, a, _ = env
    rec = RecordingBackend(tmp_path / "gs" / a.vm.gs_key / a.vm.socket)
    yield rec
    rec.close()


@pytest.mark.parametrize("env", ["served"], indirect=True)
@pytest.mark.parametrize("path", ["/poll", "/p%6Fll"])  # the shortcut's way, and the ASGI way (percent-encoded)
def test_a_browser_that_leaves_before_the_answer_closes_the_backends_connection(env, backend, path):
    """Found by a bug hunt: a long poll through vm.service kept its backend connection (and the handler) until
    the backend answered or 300 s passed, though the browser had left; only an answer already streaming was ended.
    The backend now sees the browser leave at once, both ways."""
    client, state, a, _ = env
    login(client)
    origin = urllib.parse.urlsplit(cap_base(client, state, a) + "/__dockext__/vm")
    with socket.create_connection(("127.0.0.1", client._transport.port)) as page:
        page.sendall(f"GET {origin.path}{path} HTTP/1.1\r\nHost: {origin.netloc}\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while not backend.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [p for _, p, _, _ in backend.seen] == [path]
    assert backend.poll_left.wait(3), "the backend still waits to answer a browser that has gone"
    assert client.taken == ([f"{origin.path}/poll"] if path == "/poll" else [])


def cap_base(client, state, rec):
    inst = open_ui(client, rec)
    origin = ext_url(state, rec)
    return origin + "/i/" + inst["url"][len(origin):].split("/")[2]


@BOTH_WAYS
def test_proxy_keeps_every_request_on_the_callers_own_socket(env, backend):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    for path in ["/hello?x=1", "//evil.test/x", "/http://127.0.0.1:22/", "/%2e%2e/other"]:
        r = client.get(f"{base}/__dockext__/vm{path}")
        assert r.status_code == 200
    # all four reached this extension's own socket (http.server itself folds a leading "//" into "/")
    assert [p for _, p, _, _ in backend.seen] == ["/hello?x=1", "/evil.test/x", "/http://127.0.0.1:22/",
                                                  "/%2e%2e/other"]
    if hasattr(client, "taken"):  # the real server answered the plain ones past ASGI, the encoded one through it
        assert [t.split("/vm", 1)[1] for t in client.taken] == ["/hello?x=1", "//evil.test/x", "/http://127.0.0.1:22/"]


@BOTH_WAYS
def test_proxy_never_forwards_the_dashboard_cookie_or_hop_by_hop_headers(env, backend):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.post(f"{base}/__dockext__/vm/echo", json={"n": 1},
                    headers={"X-Custom": "kept", "Connection": "keep-alive, X-Custom2", "X-Custom2": "hop",
                             "Referer": DASH})
    assert r.status_code == 200
    method, path, headers, body = backend.seen[-1]
    lower = {k.lower(): v for k, v in headers.items()}
    assert (method, path, json.loads(body)) == ("POST", "/echo", {"n": 1})
    assert lower["x-custom"] == "kept"
    assert "x-custom2" not in lower  # named by Connection: hop-by-hop
    assert "cookie" not in lower and "referer" not in lower and "x-dockext" not in lower
    assert TOKEN not in json.dumps(headers)


@BOTH_WAYS
def test_proxy_streams_an_answer_without_length_and_sets_the_origins_policy(env, backend):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.get(f"{base}/__dockext__/vm/stream")
    assert (r.status_code, r.text) == (200, "data: 0\n\ndata: 1\n\ndata: 2\n\n")
    assert r.headers["content-type"] == "text/event-stream"
    assert len(r.headers.get_list("date")) == (1 if hasattr(client, "taken") else 0)  # the server's alone
    # the backend's CSP is replaced by the extension origin's own; the hardening headers are there
    [csp] = r.headers.get_list("content-security-policy")
    assert csp == f"frame-ancestors http://127.0.0.1:{PORT} {DASH} http://localhost:{PORT}"  # the backend's own is gone
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-resource-policy"] == "same-origin"


@BOTH_WAYS
def test_an_answer_of_known_length_is_passed_on_whole_or_not_at_all(env, backend):
    """http.server writes an answer's head and body apart: the proxy reads a short answer whole and sends it with
    its length; one the backend breaks off is a clear 502, not a truncated 200."""
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.get(f"{base}/__dockext__/vm/hello")
    assert r.status_code == 200 and r.json() == {"path": "/hello"}
    assert r.headers["content-length"] == str(len(r.content)) and "transfer-encoding" not in r.headers
    # one Date, the server's own (the backend's would make it "<backend's>, <dockext's>" to fetch); the ASGI app
    # alone writes none
    assert len(r.headers.get_list("date")) == (1 if hasattr(client, "taken") else 0)
    r = client.get(f"{base}/__dockext__/vm/short")
    assert r.status_code == 502 and r.headers["x-dockext-proxy-error"] == "1"
    assert r.json()["error"]["message"].startswith(f"the backend of {a.title} broke off its answer: ")
    state.backend_pool(a).answer_timeout = 0.5
    r = client.get(f"{base}/__dockext__/vm/stall")
    assert r.status_code == 502
    assert r.json()["error"]["message"] == f"the backend of {a.title} did not finish its answer within 0.5 s"
    if hasattr(client, "taken"):
        assert [t.rsplit("/", 1)[1] for t in client.taken] == ["hello", "short", "stall"]


@pytest.mark.parametrize("env", ["served"], indirect=True)
def test_a_browser_leaving_a_streamed_answer_ends_the_backends_answer_too(env, backend):
    """The answer streams through uvicorn's cycle once the shortcut hands it over: when the browser goes, the
    backend's connection is closed, and the backend sees it (within its 20 s of events)."""
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    path = base.split(f":{PORT}", 1)[1]
    with socket.create_connection(("127.0.0.1", client._transport.port), timeout=10) as c:  # ToServer's port
        c.sendall(f"GET {path}/__dockext__/vm/endless HTTP/1.1\r\nHost: {a.origin_slug}.dockext.localhost:{PORT}"
                  "\r\n\r\n".encode())
        got = b""
        while b"data: 1\n" not in got:
            got += c.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in got
    assert backend.endless_ended.wait(10)
    assert any(t.endswith("/vm/endless") for t in client.taken)


@BOTH_WAYS
def test_proxy_head_keeps_the_announced_length_and_204_has_none(env, backend):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.head(f"{base}/__dockext__/vm/hello")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len(json.dumps({"path": "/hello"}))
    assert backend.seen[-1][0] == "HEAD"
    r = client.delete(f"{base}/__dockext__/vm/empty")
    assert (r.status_code, r.content) == (204, b"")
    assert "content-length" not in r.headers


@BOTH_WAYS
def test_proxy_refuses_a_body_over_the_limit_without_reaching_the_backend(env, backend, monkeypatch):
    from dockext.server import vmproxy

    monkeypatch.setattr(vmproxy, "MAX_BODY", 1000)
    client, state, a, _ = env
    login(client)
    r = client.post(f"{cap_base(client, state, a)}/__dockext__/vm/echo", content=b"x" * 1001)
    assert r.status_code == 413 and r.json()["error"]["type"] == "TooLarge"
    assert backend.seen == []


@pytest.mark.parametrize("env", ["served"], indirect=True)
def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(env, backend, monkeypatch):
    """Found by a bug hunt: the announced length was not looked at, so each connection could make the server hold
    up to the limit (64 MiB) before its 413."""
    from dockext.server import vmproxy

    monkeypatch.setattr(vmproxy, "MAX_BODY", 1000)
    client, state, a, _ = env
    login(client)
    origin = urllib.parse.urlsplit(cap_base(client, state, a))
    with socket.create_connection(("127.0.0.1", client._transport.port), timeout=10) as page:
        page.sendall(f"POST {origin.path}/__dockext__/vm/echo HTTP/1.1\r\nHost: {origin.netloc}\r\n"
                     "Content-Length: 5000\r\n\r\n".encode())  # and not a byte of the body
        assert page.recv(65536).startswith(b"HTTP/1.1 413 ")
    assert backend.seen == []


@BOTH_WAYS
def test_json_nested_too_deeply_is_a_bad_request_not_a_server_error(env):
    """Found by a security review: ``[[[[...`` (50 KB) made the parser raise RecursionError, not a ValueError,
    and every route reading JSON answered 500 with a traceback in the log."""
    client, state, a, _ = env
    login(client)
    deep = "[" * 50_000
    base = cap_base(client, state, a)
    r = client.post(f"{base}/__dockext__/exec", content=deep, headers={"X-Dockext": "1"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequest"
    r = client.get(f"{base}/__dockext__/docker/containers", params={"options": "[" * 5_000},  # a URL's worth
                   headers={"X-Dockext": "1"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidOptions"
    r = client.post("/api/ui-instances", content=deep, headers={"X-Dockext": "1"})  # the dashboard's own
    assert r.status_code == 400, r.text


def test_no_cors_for_foreign_origins(env):
    client, state, a, _ = env
    login(client)
    for url in ["/api/extensions", f"{ext_url(state, a)}/i/x/__dockext__/exec"]:
        r = client.options(url, headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-credentials" not in r.headers


def test_a_simple_cross_site_form_post_changes_nothing(env):
    client, state, _, _ = env
    login(client)
    r = client.post("/api/ui-instances", content="extension=acme_a",
                    headers={"Content-Type": "text/plain", "Origin": "http://evil.test"})
    assert r.status_code == 403
    assert state.instances == {}


def test_errors_carry_no_traceback_or_host_paths(env, tmp_path):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.post(f"{base}/__dockext__/exec", content=b"{not json", headers={"X-Dockext": "1"})
    assert r.status_code == 400
    assert "Traceback" not in r.text and str(tmp_path) not in r.text


@BOTH_WAYS
def test_backend_cookies_reach_the_browser_intact_and_the_proxy_keeps_none(env, backend):
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.get(f"{base}/__dockext__/vm/cookie")
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    client.cookies.clear()
    login(client)
    client.get(f"{base}/__dockext__/vm/after")
    _, path, headers, _ = backend.seen[-1]
    assert path == "/after" and "Cookie" not in headers and "cookie" not in headers


def test_permissions_are_changed_through_the_dashboard_api_only_with_its_csrf_guard(env):
    client, state, a, _ = env
    login(client)
    url = f"/api/extensions/{a.key}/permissions"
    assert client.put(url, json={"docker": False}).status_code == 403  # no X-Dockext: a cross-site form
    headers = {"X-Dockext": "1"}
    assert client.put(url, json={"docker": False}, headers={**headers, "Origin": ext_url(state, a)}).status_code == 403
    for bad in ({}, {"docker": "no"}, {"wifi": False}, ["docker"]):
        assert client.put(url, json=bad, headers=headers).status_code == 400, bad
    assert client.put("/api/extensions/nope/permissions", json={"docker": False}, headers=headers).status_code == 404
    r = client.put(url, json={"docker": False}, headers=headers)
    grants = {"docker": False, "host": True, "web": True, "engine": True, "system": True, "network": True}
    assert r.status_code == 200 and r.json() == {"permissions": grants, "recreated": False}
    [listed] = [e for e in client.get("/api/extensions").json() if e["key"] == a.key]
    assert listed["permissions"] == grants


@BOTH_WAYS
def test_no_service_worker_script_is_served_not_even_by_the_backend(env, backend):
    """S16: the request a browser makes for a worker's script is refused on every path of an extension origin,
    the proxied backend's included, and a backend cannot widen a worker's scope to the whole origin."""
    client, state, a, _ = env
    login(client)
    base = cap_base(client, state, a)
    r = client.get(f"{base}/__dockext__/vm/sw.js", headers={"Service-Worker": "script"})
    assert r.status_code == 403 and "Service workers are not supported" in r.text
    assert backend.seen == []  # it never reached the backend
    r = client.get(f"{base}/__dockext__/vm/sw.js")
    assert r.status_code == 200 and "service-worker-allowed" not in r.headers
    if hasattr(client, "taken"):  # the worker's request was left to the ASGI app, which refused it
        assert [t.rsplit("/", 1)[1] for t in client.taken] == ["sw.js"]
    assert client.get(f"{base}/index.html", headers={"Service-Worker": "script"}).status_code == 403


def test_marketplace_jobs_take_deny_only_for_installs_and_only_backend_grants(env):
    client, _, _, _ = env
    login(client)
    headers = {"X-Dockext": "1"}
    for bad in (
        {"action": "install", "image": "acme/x:1", "deny": ["docker"]},  # a UI grant: not this option's
        {"action": "install", "image": "acme/x:1", "deny": "engine"},
        {"action": "update", "image": "acme/x:1", "deny": ["engine"]},  # an update keeps the grants it has
    ):
        r = client.post("/api/marketplace/jobs", json=bad, headers=headers)
        assert r.status_code == 400 and '"deny"?' in r.json()["error"]["message"], bad
    assert client.post("/api/marketplace/jobs", json={"action": "install", "image": "acme/x:1", "deny": ["engine"]}
                       ).status_code == 403  # no X-Dockext: the usual CSRF guard comes first


def test_marketplace_jobs_take_forget_only_for_removals_and_only_as_a_boolean(env):
    client, _, _, _ = env
    login(client)
    headers = {"X-Dockext": "1"}
    for bad in (
        {"action": "install", "image": "acme/x:1", "forget": True},
        {"action": "update", "image": "acme/x:1", "forget": True},
        {"action": "remove", "image": "acme/x", "forget": "yes"},
        {"action": "remove", "image": "acme/x", "forget": 1},
    ):
        r = client.post("/api/marketplace/jobs", json=bad, headers=headers)
        assert r.status_code == 400 and '"forget"?: true | false (remove only)' in r.json()["error"]["message"], bad


def test_an_icon_is_served_with_its_policy_and_a_missing_one_is_not_found(env):
    """The icon of an installed extension, as its type, never able to run script (an SVG is extension
    content); an icon file deleted behind dockext's back is a 404 (the dashboard shows its placeholder), not a
    server error."""
    client, state, a, _ = env
    login(client)
    d = state.layout.extension_dir(a.key)
    Store(state.layout).write(make_record(a.key, icon="icon.svg"))
    (d / "icon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    state.refresh()
    r = client.get(f"/api/extensions/{a.key}/icon")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "sandbox" in r.headers["content-security-policy"] and "default-src 'none'" in r.headers[
        "content-security-policy"]
    (d / "icon.svg").unlink()
    assert client.get(f"/api/extensions/{a.key}/icon").status_code == 404
    assert client.get("/api/extensions/acme_nope/icon").status_code == 404
