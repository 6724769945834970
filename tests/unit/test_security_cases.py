"""Security cases of reference security-reliability.md A6 that the other unit tests leave open, one request at a
time against the real app (Starlette's TestClient) or the real HTTP stack (uvicorn as ``dockext serve`` runs it).

Each test names the case it proves (S1...S37). The others are proved where their subject lives: test_server.py,
test_http_limits.py, test_streams.py, test_fsapi.py, test_argv.py, test_archive.py, test_backendpolicy.py and the
browser tests.
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from dockext.paths import Layout
from dockext.server import HostState, create_app, docker_api, run
from dockext.server.run import server_config
from dockext.store import Record, Store
from tests.support.server import listening_socket, uvicorn_in_thread

from . import test_server
from .test_store import make_record

PORT = 7683
TOKEN = "t0ken-" + "c" * 42
DASH = f"http://dockext.localhost:{PORT}"

Env = tuple[TestClient, HostState, Record, Record]


def install_fake(root: Path, key: str) -> Record:
    """An installed extension whose host binary prints its key (to tell whose process ran)."""
    return cast(Record, test_server.install_fake(root, key, says=key))


def login(client: TestClient) -> Any:
    return test_server.login(client, TOKEN)


def ext_url(rec: Record) -> str:
    return f"http://{rec.origin_slug}.dockext.localhost:{PORT}"


def open_ui(client: TestClient, rec: Record) -> dict[str, Any]:
    r = client.post("/api/ui-instances", json={"extension": rec.key}, headers={"X-Dockext": "1"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def real_server(state_for_port: Callable[[int], HostState]) -> Iterator[int]:
    """The app served by uvicorn as ``dockext serve`` configures it, on 127.0.0.1, in a thread; yields the port."""
    sock = listening_socket(64)
    port = int(sock.getsockname()[1])
    with uvicorn_in_thread(server_config(create_app(state_for_port(port))), sock):
        yield port


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    a = install_fake(tmp_path, "acme_a")
    b = install_fake(tmp_path, "acme_b")
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN)
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as client:
        yield client, state, a, b


def cap_of(client: TestClient, state: HostState, rec: Record) -> tuple[str, str]:
    """(origin, capability) of a new UI instance of ``rec``."""
    inst = open_ui(client, rec)
    origin = ext_url(rec)
    assert inst["origin"] == origin and state.instances
    return origin, inst["url"][len(origin):].split("/")[2]


def ws_refused(client: TestClient, url: str, headers: dict[str, str]) -> int:
    """The close code a WebSocket gets when the server refuses it before accepting."""
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(url, headers=headers):
        pass
    return closed.value.code


# --------------------------------------------------------------------------------------- S1: host names


@pytest.mark.parametrize("host", [f"evil.test:{PORT}", f"localhost.evil.test:{PORT}", f"unknownext.localhost:{PORT}"])
def test_s1_a_foreign_host_name_changes_nothing_even_with_every_credential(env: Env, host: str) -> None:
    """S1: a rebound name gets 403 for mutations carrying the cookie, the CSRF header and a matching Origin, and
    nothing happens (no UI instance, no grant changed); a WebSocket on that name is closed before it opens."""
    client, state, a, _ = env
    login(client)
    headers = {"Host": host, "X-Dockext": "1", "Origin": f"http://{host}"}
    r = client.post("/api/ui-instances", json={"extension": a.key}, headers=headers)
    assert r.status_code == 403 and "unknown host name" in r.text
    r = client.put(f"/api/extensions/{a.key}/permissions", json={"docker": False}, headers=headers)
    assert r.status_code == 403
    assert state.instances == {}
    listed = client.get("/api/extensions").json()
    assert all(e["permissions"]["docker"] is True for e in listed)
    assert ws_refused(client, f"ws://{host}/api/docker/containers/x/terminal", {"Origin": f"http://{host}"}) == 1008


# ---------------------------------------------------------------------------------------- S3: auth gate


def test_s3_every_path_of_an_extension_origin_needs_a_live_capability(env: Env) -> None:
    """S3 on the extension origins: without a live capability of *this* extension no path answers content, runs a
    command, reaches the backend, lists the engine or opens a stream, whatever cookie or header comes along."""
    client, state, a, b = env
    login(client)  # the dashboard cookie is sent too: it opens nothing here
    origin = ext_url(a)
    _, b_cap = cap_of(client, state, b)
    for cap in ("", "nope", b_cap):
        base = f"{origin}/i/{cap}" if cap else origin
        h = {"X-Dockext": "1", "Origin": origin}
        assert client.get(f"{base}/index.html").status_code == 404
        assert client.get(f"{base}/__dockext__/ddclient.js").status_code == 404
        r = client.post(f"{base}/__dockext__/exec", json={"cli": "host", "cmd": "kubectl", "args": []}, headers=h)
        assert r.status_code == 404 and "acme" not in r.text
        assert client.get(f"{base}/__dockext__/vm/hello", headers=h).status_code == 404
        assert client.get(f"{base}/__dockext__/docker/containers", headers=h).status_code == 404
        assert ws_refused(client, f"{base.replace('http', 'ws', 1)}/__dockext__/stream", {"Origin": origin}) == 1008


# ----------------------------------------------------------------------------------------------- S4: token


@pytest.mark.parametrize("header", [f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN[:10]}", "Bearer ", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN} ", f"Token {TOKEN}x"])
def test_s4_a_wrong_authorization_header_is_refused(env: Env, header: str) -> None:
    """S4 for scripts' Authorization header: equal length but wrong, a prefix, empty, another scheme → 401."""
    client, *_ = env
    r = client.get("/api/extensions", headers={"Authorization": header})
    if header == f"Bearer {TOKEN} ":  # trailing blanks are trimmed: this one is the right token
        assert r.status_code == 200
    else:
        assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"


def test_s4_every_way_in_compares_the_token_in_constant_time(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """S4: the URL token, the login form and the Authorization header all go through hmac.compare_digest (a
    timing measurement would be a flaky test; this proves the comparison that makes one pointless)."""
    client, *_ = env
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(x: Any, y: Any) -> bool:
        compared.append((x, y))
        return real(x, y)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = "y" * len(TOKEN)
    client.get(f"/?token={wrong}")
    client.post("/login", content=f"token={wrong}", headers={"Content-Type": "application/x-www-form-urlencoded"})
    client.get("/api/extensions", headers={"Authorization": f"Bearer {wrong}"})
    assert compared == [(wrong.encode(), TOKEN.encode())] * 3


# -------------------------------------------------------------------------------- S6: WebSocket upgrades


def test_s6_the_dashboard_terminal_socket_needs_the_dashboards_origin_even_with_the_cookie(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S6: an extension page is same-site, so the browser sends the SameSite=Strict cookie with its WebSocket to
    the dashboard; the container terminal (a root shell) still refuses it, and any foreign or missing Origin,
    before the handshake completes and before the engine is asked anything."""
    client, _state, a, _ = env
    opened: list[str] = []

    async def fake_terminal(_engine: Any, ws: WebSocket) -> None:
        opened.append(ws.headers.get("origin", ""))
        await ws.accept()
        await ws.send_json({"ready": True})
        await ws.close()

    monkeypatch.setattr(docker_api, "_terminal", fake_terminal)
    login(client)
    url = f"ws://dockext.localhost:{PORT}/api/docker/containers/abc/terminal"
    for origin in (ext_url(a), "http://evil.test", "null", f"http://dockext.localhost:{PORT + 1}"):
        assert ws_refused(client, url, {"Origin": origin}) == 1008, origin
    assert ws_refused(client, url, {}) == 1008  # no Origin: not a page of the dashboard
    assert opened == []
    with client.websocket_connect(url, headers={"Origin": DASH}) as ws:  # the dashboard itself
        assert ws.receive_json() == {"ready": True}
    assert opened == [DASH]


# ------------------------------------------------------------------------------------------------ S7: CORS


def test_s7_no_origin_gets_cors_not_even_a_same_site_extension(env: Env) -> None:
    """S7: preflights from an extension origin to the dashboard API, from one extension to another's exec, and
    from a foreign site to a backend route get no Access-Control-Allow-* answer (never ``*``)."""
    client, state, a, b = env
    login(client)
    _, b_cap = cap_of(client, state, b)
    b_origin = ext_url(b)
    cases = [
        ("/api/ui-instances", ext_url(a)),
        ("/api/fs/list?path=/", ext_url(a)),
        (f"{b_origin}/i/{b_cap}/__dockext__/exec", ext_url(a)),
        (f"{b_origin}/i/{b_cap}/__dockext__/vm/hello", "http://evil.test"),
    ]
    for url, origin in cases:
        r = client.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "x-dockext, content-type"})
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (url, dict(r.headers))


# ---------------------------------------------------------------------------------------------- S8: login


@pytest.mark.parametrize("next_", ["//evil.test", "https://evil.test", "/\\evil.test"])
def test_s8_a_next_parameter_never_leads_off_site_after_login(env: Env, next_: str) -> None:
    """S8: dockext has no ``next=``: after a token login the browser stays on the path it asked for (the
    parameter is inert query text), and the form login always lands on ``/``."""
    client, *_ = env
    r = client.get("/", params={"token": TOKEN, "next": next_})
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/?") and not location.startswith("//") and TOKEN not in location
    client.cookies.clear()
    r = client.post(f"/login?next={next_}", content=f"token={TOKEN}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"].startswith("/#dockext-key=")


def test_s8_the_session_cookie_is_host_only_for_the_whole_site_and_named_by_port(env: Env) -> None:
    """S8: ``dockext-<port>``, HttpOnly, SameSite=Strict, no Domain (host-only), Path=/, an expiry; the value is
    not the token."""
    client, *_ = env
    cookie = login(client).headers["set-cookie"]
    attrs = [p.strip().lower() for p in cookie.split(";")]
    name, _, value = cookie.split(";")[0].partition("=")
    assert name == f"dockext-{PORT}" and value and TOKEN not in value
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
    assert not [p for p in attrs if p.startswith("domain")]
    assert [p for p in attrs if p.startswith("max-age=")]


# ------------------------------------------------------------------------------------- S9: token on disk


def test_s9_the_browser_is_opened_through_a_private_file_not_a_url_with_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S9: what ``dockext serve`` hands to the browser (and so to its command line) names a 0600 file; only that
    file holds the token."""
    opened: list[str] = []

    def fake_open(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    url = f"http://dockext.localhost:{PORT}/?token={TOKEN}"
    run._open_browser(tmp_path, url)
    [given] = opened
    assert given.startswith("file://") and TOKEN not in given
    path = Path(given[len("file://"):])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TOKEN in path.read_text()


def test_s9_the_browsers_redirect_file_does_not_outlive_its_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in a review: one file holding the token was left in the home at every start. It goes once the browser
    has had time to read it, and a killed server's is removed at the next start."""
    monkeypatch.setattr(webbrowser, "open", lambda *a, **k: True)
    monkeypatch.setattr(run, "OPEN_FILE_SECONDS", 0.2)
    stale = tmp_path / "dockext-open-left.html"
    stale.write_text(TOKEN)
    os.utime(stale, (time.time() - 10, time.time() - 10))
    run._open_browser(tmp_path, f"http://dockext.localhost:{PORT}/?token={TOKEN}")
    assert not stale.exists()
    [fresh] = tmp_path.glob("dockext-open-*.html")
    deadline = time.monotonic() + 5
    while fresh.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not fresh.exists()


def test_s9_a_running_server_keeps_its_token_off_command_lines_and_in_private_files(tmp_path: Path) -> None:
    """S9: ``dockext serve`` without DOCKEXT_TOKEN makes a token; it is in ``server.json`` (0600, in a 0700 home)
    and in no process's /proc/<pid>/cmdline (the server's, or a child's)."""
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DOCKEXT_TOKEN"}
    env["DOCKEXT_HOME"] = str(home)
    proc = subprocess.Popen([sys.executable, "-m", "dockext.cli", "serve", "--no-browser", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info = home / "server.json"
        deadline = time.monotonic() + 30
        while not info.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert info.exists(), "server.json never appeared"
        token = json.loads(info.read_text())["url"].split("token=")[1]
        assert len(token) >= 32
        assert stat.S_IMODE(info.stat().st_mode) == 0o600 and stat.S_IMODE(home.stat().st_mode) & 0o077 == 0
        pids = [proc.pid] + [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        for pid in pids:
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:  # a server that ignores SIGTERM is a failure, and is not left running
            proc.kill()
            raise
    assert "dockext dashboard:" in out  # (the terminal it was started from is told, as Jupyter does)


# ------------------------------------------------------------------------- S10/S11: errors and their logs


def test_s10_s11_a_server_error_logs_no_credential_and_answers_no_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """S10 + S11 on the real stack: a request carrying the token (Authorization), the session cookie and a
    Referer with the token hits a route that fails (the record store raising an unexpected exception). The
    answer is a bare 500 without traceback or host path; the server's log says it failed, with neither the token
    nor the cookie."""
    layout = Layout(tmp_path)
    layout.ensure()
    rec = make_record("acme_a", icon="icon.svg")
    layout.extension_dir(rec.key).mkdir(parents=True)
    Store(layout).write(rec)

    class Failing(HostState):
        def record(self, key: str) -> Record | None:
            raise RuntimeError(f"reading {layout.root} failed")  # a bug: it must stay in the log, not the answer

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    keep = Keep()
    keep.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(keep)
    try:
        with real_server(lambda port: Failing(layout, port=port, token=TOKEN)) as port:
            host = f"dockext.localhost:{port}"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/?token={TOKEN}", headers={"Host": host})
            login_answer = conn.getresponse()
            login_answer.read()
            cookie = (login_answer.getheader("set-cookie") or "").split(";")[0]
            session = cookie.partition("=")[2]
            assert session
            conn.request("GET", f"/api/extensions/{rec.key}/icon", headers={
                "Host": host, "Authorization": f"Bearer {TOKEN}", "Cookie": cookie,
                "Referer": f"http://{host}/?token={TOKEN}",
            })
            r = conn.getresponse()
            body = r.read().decode()
            conn.close()
    finally:
        logging.getLogger().removeHandler(keep)
    assert r.status == 500
    assert "Traceback" not in body and str(tmp_path) not in body and TOKEN not in body
    out, err = capfd.readouterr()
    log = out + err + "\n".join(records)
    assert "Exception in ASGI application" in log  # the failure was logged...
    assert TOKEN not in log and session not in log  # ...without the credentials the request carried


def test_s11_api_errors_on_either_origin_carry_no_traceback_or_host_path(env: Env, tmp_path: Path) -> None:
    """S11: error bodies of the dashboard API and of an extension origin (bad JSON, bad shapes, refusals, unknown
    keys) are the ``{"error": {"type", "message"}}`` object, without a traceback or dockext's home path."""
    client, state, a, _ = env
    login(client)
    origin, cap = cap_of(client, state, a)
    h = {"X-Dockext": "1"}
    answers = [
        client.post("/api/ui-instances", content=b"{", headers=h),
        client.post("/api/ui-instances", json=["x"], headers=h),
        client.post("/api/ui-instances", json={"extension": "../../etc"}, headers=h),
        client.put(f"/api/extensions/{a.key}/permissions", content=b"\xff", headers=h),
        client.put("/api/settings", json={"nope": 1}, headers=h),
        client.post("/api/marketplace/jobs", json={"action": "explode"}, headers=h),
        client.post(f"{origin}/i/{cap}/__dockext__/exec", json={"cli": "host", "cmd": "../x", "args": []}, headers=h),
        client.post(f"{origin}/i/{cap}/__dockext__/exec", json={"cli": "nope"}, headers=h),
        client.post(f"{origin}/i/{cap}/__dockext__/exec", json={"cli": "host", "cmd": "kubectl", "args": [1]},
                    headers=h),
    ]
    for r in answers:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        err = r.json()["error"]
        assert set(err) == {"type", "message"} and err["message"], r.text
        assert "Traceback" not in r.text and str(tmp_path) not in r.text, r.text


# ---------------------------------------------------------------------------- S13: identity is the server's


def test_s13_a_call_runs_as_the_extension_of_its_origin_whatever_the_body_or_origin_header_says(env: Env) -> None:
    """S13: a body naming another extension, and an Origin header of another extension, change nothing: the
    command runs as the extension whose origin and capability the request came to (its own host folder)."""
    client, state, a, b = env
    login(client)
    origin, cap = cap_of(client, state, a)
    for extra in ({"extension": b.key}, {"extension": {"key": b.key}, "key": b.key, "origin": ext_url(b)}):
        r = client.post(f"{origin}/i/{cap}/__dockext__/exec",
                        json={"cli": "host", "cmd": "kubectl", "args": [], **extra},
                        headers={"X-Dockext": "1", "Origin": ext_url(b)})
        assert r.status_code == 200 and r.json()["stdout"] == "acme_a\n", r.text
    # and A's capability sent to B's origin acts as nobody
    r = client.post(f"{ext_url(b)}/i/{cap}/__dockext__/exec",
                    json={"cli": "host", "cmd": "kubectl", "args": []}, headers={"X-Dockext": "1", "Origin": origin})
    assert r.status_code == 404


# ------------------------------------------------------------------------------------- S14: frame-ancestors


def test_s14_every_answer_carries_its_framing_policy(env: Env) -> None:
    """S14: the login page and dashboard assets refuse every framer; every answer of an extension origin (a page,
    an asset, a 404, a refused exec, a refused worker script) may be framed by the dashboard only."""
    client, state, a, _ = env
    for r in (client.get("/login"), client.get("/static/login.css")):
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    login(client)
    assert "frame-ancestors 'none'" in client.get("/static/dashboard/dashboard.js").headers["content-security-policy"]
    origin, cap = cap_of(client, state, a)
    answers = [
        client.get(f"{origin}/i/{cap}/index.html"),
        client.get(f"{origin}/i/{cap}/assets/app.js"),
        client.get(f"{origin}/i/{cap}/missing.html"),
        client.get(f"{origin}/i/nope/index.html"),
        client.post(f"{origin}/i/{cap}/__dockext__/exec", json={"cli": "host", "cmd": "/bin/sh"},
                    headers={"X-Dockext": "1"}),
        client.get(f"{origin}/i/{cap}/sw.js", headers={"Service-Worker": "script"}),
    ]
    for r in answers:
        [csp] = r.headers.get_list("content-security-policy")
        sources = csp.split()
        assert sources[0] == "frame-ancestors" and DASH in sources, (r.request.url, csp)
        assert "*" not in csp and origin not in sources and "'self'" not in sources


# ----------------------------------------------------------------------------------- S17: dashboard files


@pytest.mark.parametrize("path", ["..%2fcli.py", "%2e%2e/__init__.py", "dashboard/%2e%2e/%2e%2e/cli.py",
                                  "..%5ccli.py", "dashboard%5c..%5c..%5ccli.py", "login.css%00.py",
                                  "%2e%2e/%2e%2e/dockext/cli.py"])
def test_s17_the_dashboards_static_route_never_leaves_its_folder(env: Env, path: str) -> None:
    """S17 on the dashboard's own files (the extension origins' are in test_server.py)."""
    client, *_ = env
    login(client)
    r = client.get(f"/static/{path}")
    assert r.status_code == 404, (path, r.status_code)
    assert "import" not in r.text and "[project]" not in r.text


# ------------------------------------------------------------------------------------- S30: the engine pinned


@pytest.mark.parametrize("request_", [
    {"cli": "docker", "cmd": "ps", "args": [], "options": {"env": {"DOCKER_HOST": "unix://{sock}"}}},
    {"cli": "docker", "cmd": "ps", "args": [], "options": {"env": {"docker_host": "unix://{sock}"}}},
    {"cli": "docker", "cmd": "ps", "args": [], "options": {"env": {"DOCKER_CONTEXT": "evil"}}},
    {"cli": "docker", "cmd": "ps", "args": [], "options": {"env": {"DOCKER_CONFIG": "{dir}"}}},
    {"cli": "docker", "cmd": "ps", "args": [],
     "options": {"env": {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "{dir}"}}},
    {"cli": "docker", "cmd": "-H", "args": ["unix://{sock}", "ps"]},
    {"cli": "docker", "cmd": "--host=unix://{sock}", "args": ["ps"]},
    {"cli": "docker", "cmd": "--config", "args": ["{dir}", "ps"]},
    {"cli": "docker", "cmd": "", "args": []},
    {"cli": "host", "cmd": "kubectl", "args": [], "options": {"env": {"DOCKER_HOST": "unix://{sock}"}}},
])
def test_s30_a_page_cannot_point_a_command_at_another_engine(
    env: Env, tmp_path: Path, request_: dict[str, Any]
) -> None:
    """S30 (and S29's refusals): a fake engine listening on a socket of the page's choosing is never connected to,
    over HTTP exec or the streaming socket; the request is refused as ExecRefused before anything runs."""
    client, state, a, _ = env
    login(client)
    origin, cap = cap_of(client, state, a)
    evil = tmp_path / "evil.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(evil))
    listener.listen(8)
    listener.setblocking(False)
    body = json.loads(json.dumps(request_).replace("{sock}", str(evil)).replace("{dir}", str(tmp_path)))
    try:
        r = client.post(f"{origin}/i/{cap}/__dockext__/exec", json=body, headers={"X-Dockext": "1"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "ExecRefused", r.text
        with client.websocket_connect(f"{origin.replace('http', 'ws', 1)}/i/{cap}/__dockext__/stream",
                                      headers={"Origin": origin}) as ws:
            ws.send_text(json.dumps(body))
            answer = ws.receive_json()
        assert answer["type"] == "ExecRefused" and answer["code"] == 126, answer
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected to the page's engine
    finally:
        listener.close()


# ---------------------------------------------------------------------------------------- S36: Range DoS


def test_s36_a_range_header_with_thousands_of_ranges_costs_one_answer_of_the_files_size(
    env: Env, tmp_path: Path
) -> None:
    """S36 (Starlette CVE-2025-62727 class): 10,000 ranges, overlapping or not, on an extension's file and on a
    dashboard asset get one answer no larger than the file (not a multipart of 10,000 parts); a few ranges are
    still served as ranges."""
    client, state, a, _ = env
    (tmp_path / "extensions" / a.key / "ui" / "big.js").write_bytes(b"x" * 100_000)
    login(client)
    origin, cap = cap_of(client, state, a)
    many = [",".join(["0-99999"] * 10_000), ",".join(f"{i}-{i}" for i in range(0, 20_000, 2)),
            ",".join(f"{i}-{i + 5}" for i in range(99_990, 0, -10))]
    for url, size in ((f"{origin}/i/{cap}/big.js", 100_000),
                      ("/static/dashboard/dashboard.js", len(client.get("/static/dashboard/dashboard.js").content))):
        for ranges in many:
            r = client.get(url, headers={"Range": "bytes=" + ranges})
            assert r.status_code in (200, 206, 416), r.status_code
            assert len(r.content) <= size, (url, len(r.content))
    r = client.get(f"{origin}/i/{cap}/big.js", headers={"Range": "bytes=0-9,20-29"})
    assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
    assert len(r.content) < 1000


# ------------------------------------------------------------------------ S8, S36: over the real HTTP stack


def _answer(port: int, request: bytes) -> bytes:
    """What the server says to ``request`` (sent whole; a body it announces may never come)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        return s.recv(65536)


def test_s8_a_token_login_at_a_path_with_two_slashes_stays_on_site(tmp_path: Path) -> None:
    """S8: the redirect that drops the token keeps the path asked for, but ``//evil.test/`` as a Location is
    another site (protocol-relative): it must come back with one leading slash."""
    layout = Layout(tmp_path)
    layout.ensure()
    with real_server(lambda port: HostState(layout, port=port, token=TOKEN)) as port:
        for path in ("//evil.test/", "/\\evil.test/", "///evil.test/x"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", f"{path}?token={TOKEN}", headers={"Host": f"dockext.localhost:{port}"})
            r = c.getresponse()
            location = r.getheader("location") or ""
            c.close()
            assert r.status == 303 and location.startswith("/") and not location.startswith(("//", "/\\")), \
                (path, location)


def test_s36_bodies_over_their_limit_are_refused_before_they_are_read(tmp_path: Path) -> None:
    """S36: the public login form, a JSON API of the dashboard and an extension's exec each answer 413 as soon
    as a body announces more than they read (the body never comes: a server waiting for it would not answer),
    or sends more without announcing it (chunked), and close the connection."""
    rec = install_fake(tmp_path, "acme_a")
    layout = Layout(tmp_path)
    holder: dict[str, HostState] = {}

    def make(port: int) -> HostState:
        holder["state"] = HostState(layout, port=port, token=TOKEN)
        return holder["state"]

    with real_server(make) as port:
        state = holder["state"]
        inst = state.open_instance(state.record(rec.key), f"http://dockext.localhost:{port}")
        dash = f"dockext.localhost:{port}"
        cases = [
            ("POST /login", dash, "Content-Type: application/x-www-form-urlencoded\r\n"),
            ("POST /api/ui-instances", dash, f"Authorization: Bearer {TOKEN}\r\nX-Dockext: 1\r\n"
                                             f"Origin: http://{dash}\r\nContent-Type: application/json\r\n"),
            (f"POST /i/{inst.cap}/__dockext__/exec", f"{rec.origin_slug}.dockext.localhost:{port}",
             "X-Dockext: 1\r\nContent-Type: application/json\r\n"),
        ]
        for line, host, extra in cases:
            announced = _answer(port, f"{line} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {100 << 20}\r\n\r\n"
                                .encode())
            assert announced.startswith(b"HTTP/1.1 413") and b"connection: close" in announced.lower(), \
                (line, announced[:200])
            assert b'"type":"TooLarge"' in announced.replace(b" ", b""), announced
            chunk = b"x" * (1 << 20)
            sent = _answer(port, f"{line} HTTP/1.1\r\nHost: {host}\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
                           .encode() + (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 2)
            assert sent.startswith(b"HTTP/1.1 413"), (line, sent[:200])


@pytest.mark.parametrize("path, extra", [
    ("/login", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("/api/ui-instances", {"Authorization": f"Bearer {TOKEN}", "X-Dockext": "1", "Content-Type": "application/json"}),
])
def test_s36_a_client_that_sends_its_whole_body_first_still_reads_the_413(tmp_path: Path, path: str,
                                                                          extra: dict[str, str]) -> None:
    """S36, as a browser's form post or fetch does it: the body is sent whole before the answer is read. The
    server answers 413 at once and drops the rest rather than closing on unread input (a reset the client
    would get instead of the answer)."""
    Layout(tmp_path).ensure()
    with real_server(lambda port: HostState(Layout(tmp_path), port=port, token=TOKEN)) as port:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            c.request("POST", path, body=b"x" * (8 << 20), headers={"Host": f"dockext.localhost:{port}", **extra})
            r = c.getresponse()
            assert r.status == 413 and json.loads(r.read())["error"]["type"] == "TooLarge"
        finally:
            c.close()


@pytest.mark.parametrize("token", ["hunter2", "a" * 31, "a" * 40 + " b", "a" * 40 + "&next=/x", "é" * 40])
def test_s9_a_token_fixed_by_hand_must_be_long_and_plain_or_nothing_is_served(tmp_path: Path, token: str) -> None:
    """S9: DOCKEXT_TOKEN stands for a password anyone who can reach the port may try: a short one (or one a URL
    would change) is refused with what to do, before anything listens, and is never printed."""
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "DOCKEXT_HOME": str(home), "DOCKEXT_TOKEN": token}
    out = subprocess.run([sys.executable, "-m", "dockext.cli", "serve", "--no-browser", "--port", str(port)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "DOCKEXT_TOKEN must be at least 32 characters of letters, digits and . _ ~ -" in out.stderr
    assert "secrets.token_hex(24)" in out.stderr
    assert token not in out.stdout + out.stderr
    assert not (home / "server.json").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing took the port


def test_s9_a_long_plain_token_is_taken_as_it_is() -> None:
    from dockext.server.run import login_token

    token = "A-b.c_d~" * 4
    assert login_token(token) == token
    made = login_token(None)
    assert len(made) == 48 and made != login_token("")
