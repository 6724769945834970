"""``dockext serve --domain NAME --tls-cert FILE --tls-key FILE``: the dashboard on ``https://NAME:PORT`` and each
extension on ``https://<slug>.NAME:PORT``, for browsers on other machines. What is checked before anything
listens, what routing and the policies become, and the real TLS stack (uvicorn as ``dockext serve`` runs it)."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dockext.errors import DockextError
from dockext.paths import Layout
from dockext.server import HostState, create_app
from dockext.server import run as server_run
from dockext.server.run import Tls, covers, dashboard_domain, server_config
from tests.support.procs import wait_until
from tests.support.server import listening_socket, uvicorn_in_thread
from tests.support.tlscert import TestCert, make_cert

from . import test_server

PORT = 7683
TOKEN = "t0ken-" + "d" * 42
NAME = "dockext.test"
DASH = f"https://{NAME}:{PORT}"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> TestCert:
    return make_cert(tmp_path_factory.mktemp("tls"), NAME, f"*.{NAME}")


@pytest.mark.parametrize(("given", "tls", "expected"), [
    (None, False, "dockext.localhost"),
    ("Dockext.Test.", True, "dockext.test"),
    ("ext.example.lan", True, "ext.example.lan"),
    ("mine.localhost", False, "mine.localhost"),  # still only this machine's browsers: no certificate needed
])
def test_the_domain_served_on(given: str | None, tls: bool, expected: str) -> None:
    assert dashboard_domain(given, tls) == expected


@pytest.mark.parametrize(("given", "tls", "says"), [
    ("dockext.test", False, "needs --tls-cert and --tls-key"),
    ("lan", True, "has one label"),
    ("10.0.0.7", True, "is an IP address"),
    ("under_score.test", True, "is not a DNS name"),
    ("-dash.test", True, "is not a DNS name"),
    ("a..test", True, "is not a DNS name"),
])
def test_a_domain_that_cannot_serve_extensions_is_refused_with_the_reason(given: str, tls: bool, says: str) -> None:
    with pytest.raises(DockextError) as caught:
        dashboard_domain(given, tls)
    assert caught.value.message.startswith(f"--domain {given} ") and says in caught.value.message


def test_certificate_files_are_checked_before_anything_listens(cert: TestCert, tmp_path: Path) -> None:
    tls = Tls.of(str(cert.cert), str(cert.key))
    assert tls is not None and tls.names() == [NAME, f"*.{NAME}"]
    assert Tls.of(None, None) is None
    with pytest.raises(DockextError, match="--tls-cert and --tls-key go together"):
        Tls.of(str(cert.cert), None)
    with pytest.raises(DockextError, match=f"cannot read {tmp_path}/missing.key: No such file"):
        Tls.of(str(cert.cert), str(tmp_path / "missing.key"))
    other = make_cert(tmp_path / "other", "other.test")
    with pytest.raises(DockextError) as caught:  # a key that is not the certificate's
        Tls.of(str(cert.cert), str(other.key))
    assert caught.value.message.startswith(f"cannot serve HTTPS with the certificate {cert.cert} and the key")
    assert "the one the certificate was made for" in (caught.value.hint or "")
    locked = make_cert(tmp_path / "locked", "locked.test", encrypted=True)
    with pytest.raises(DockextError, match="the TLS key is encrypted"):  # never a password prompt
        Tls.of(str(locked.cert), str(locked.key))


def test_which_names_a_certificate_covers() -> None:
    names = [NAME, f"*.{NAME}"]
    assert covers(names, NAME) and covers(names, f"acme-x.{NAME}")
    assert not covers(names, f"a.b.{NAME}") and not covers(names, "dockext.localhost")
    assert not covers([NAME], f"x.{NAME}") and not covers([f"*.{NAME}"], NAME)


@pytest.fixture
def patched_serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """``serve`` that binds loopback whatever it is asked (the test never listens beyond it) and does not run."""
    bound: list[socket.socket] = []
    real_bind = server_run.bind

    def on_loopback(host: str, port: int) -> socket.socket:
        bound.append(real_bind("127.0.0.1", 0))
        return bound[-1]

    monkeypatch.setattr(server_run, "bind", on_loopback)
    monkeypatch.setattr(server_run.uvicorn.Server, "run", lambda self, sockets=None: bound.append(self.config))
    yield bound
    for sock in bound:
        if isinstance(sock, socket.socket):
            sock.close()


def test_serve_prints_the_https_url_and_what_other_machines_need(
    patched_serve: list, cert: TestCert, tmp_path: Path
) -> None:
    said: list[str] = []
    server_run.serve(Layout(tmp_path / "home"), host="0.0.0.0", port=0, open_browser=False, domain=NAME,
                     tls_cert=str(cert.cert), tls_key=str(cert.key), echo=said.append)
    port = patched_serve[0].getsockname()[1]
    config = patched_serve[1]
    assert (config.ssl_certfile, config.ssl_keyfile) == (str(cert.cert), str(cert.key))  # uvicorn serves TLS
    assert said[0].startswith(f"dockext dashboard: https://{NAME}:{port}/?token=")
    notice = " ".join(said[1:])
    assert notice.startswith(f"Listening on 0.0.0.0:{port}: anyone who can reach it still needs the token.")
    assert f"{NAME} and *.{NAME} must resolve" in notice and "plain HTTP" not in notice and "Warning" not in notice


def test_serve_warns_of_a_certificate_that_browsers_will_refuse(patched_serve: list, tmp_path: Path) -> None:
    only_dashboard = make_cert(tmp_path / "certs", NAME)
    said: list[str] = []
    server_run.serve(Layout(tmp_path / "home"), port=0, open_browser=False, domain=NAME,
                     tls_cert=str(only_dashboard.cert), tls_key=str(only_dashboard.key), echo=said.append)
    assert said[1] == (f"Warning: the certificate {only_dashboard.cert} is not valid for EXTENSION.{NAME} (it names "
                       f"{NAME}): browsers will refuse the extension tabs. Make one for {NAME} and *.{NAME}.")


def test_serve_says_when_the_domain_is_served_on_loopback_only(
    patched_serve: list, cert: TestCert, tmp_path: Path
) -> None:
    said: list[str] = []
    server_run.serve(Layout(tmp_path / "home"), port=0, open_browser=False, domain=NAME,
                     tls_cert=str(cert.cert), tls_key=str(cert.key), echo=said.append)
    port = patched_serve[0].getsockname()[1]
    assert said[1:] == [f"Listening on 127.0.0.1 only: browsers on other machines cannot reach https://{NAME}:{port} "
                        "until --host names an address of this machine they can (0.0.0.0 for every interface)."]


def test_serve_refuses_a_domain_without_tls_before_listening(patched_serve: list, tmp_path: Path) -> None:
    with pytest.raises(DockextError, match="needs --tls-cert"):
        server_run.serve(Layout(tmp_path / "home"), port=0, open_browser=False, domain=NAME, echo=print)
    assert patched_serve == [] and not (tmp_path / "home" / "server.json").exists()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, HostState]]:
    test_server.install_fake(tmp_path, "acme_x")
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN, domain=NAME, tls=True)
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as client:
        yield client, state


def test_the_dashboard_and_extensions_are_served_on_the_domain_over_https(env) -> None:
    client, state = env
    r = test_server.login(client, TOKEN)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"dockext-{PORT}=") and "; secure" in cookie.lower()  # never sent over plain HTTP
    page = client.get("/")
    assert page.status_code == 200
    assert f"frame-src https://*.{NAME}:*;" in page.headers["content-security-policy"]
    r = client.post("/api/ui-instances", json={"extension": "acme_x"}, headers={"X-Dockext": "1"})
    assert r.status_code == 201, r.text
    (slug,) = state.by_slug
    origin = f"https://{slug}.{NAME}:{PORT}"
    assert r.json()["origin"] == origin and r.json()["url"].startswith(origin + "/i/")
    ui = client.get(r.json()["url"], headers={"Sec-Fetch-Dest": "iframe"})
    assert ui.status_code == 200 and "hi" in ui.text
    assert ui.headers["content-security-policy"] == (  # only the dashboard's https origins may frame it
        f"frame-ancestors https://127.0.0.1:{PORT} https://{NAME}:{PORT} https://localhost:{PORT}")
    # the default name is not served any more, and a page on a loopback name is sent to the domain
    assert client.get("/", headers={"Host": f"dockext.localhost:{PORT}"}).status_code == 403
    assert client.get(r.json()["url"].replace(NAME, "dockext.localhost")).status_code == 403
    moved = client.get("/#/x", headers={"Host": f"localhost:{PORT}"})
    assert moved.status_code == 307 and moved.headers["location"] == f"{DASH}/"


def test_a_mutating_call_must_come_from_the_https_origin(env) -> None:
    client, _ = env
    test_server.login(client, TOKEN)
    plain = client.post("/api/logout", headers={"X-Dockext": "1", "Origin": f"http://{NAME}:{PORT}"})
    assert plain.status_code == 403  # http://NAME:PORT is another origin than the one served
    assert client.post("/api/logout", headers={"X-Dockext": "1", "Origin": DASH}).status_code == 200


@pytest.mark.parametrize(("tls", "port", "name"), [(True, 443, NAME), (False, 80, "dockext.localhost")])
def test_on_the_schemes_default_port_names_go_without_it_as_browsers_send_them(
    tmp_path: Path, tls: bool, port: int, name: str
) -> None:
    """A browser leaves the default port out of ``Host`` and ``Origin`` (``https://dockext.test``); some clients
    write it anyway. Both reach the dashboard and the extension; another port is another site."""
    test_server.install_fake(tmp_path, "acme_x")
    state = HostState(Layout(tmp_path), port=port, token=TOKEN, domain=name, tls=tls)
    scheme = "https" if tls else "http"
    base = f"{scheme}://{name}"
    assert state.dashboard_url == base and set(state.dashboard_origins()) == {
        f"{scheme}://127.0.0.1", base, f"{scheme}://[::1]", f"{scheme}://localhost"}
    with TestClient(create_app(state), base_url=base, follow_redirects=False) as client:
        test_server.login(client, TOKEN)
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"Host": f"{name}:{port}"}).status_code == 200
        assert client.get("/", headers={"Host": f"{name}:7683"}).status_code == 403
        r = client.post("/api/ui-instances", json={"extension": "acme_x"}, headers={"X-Dockext": "1", "Origin": base})
        assert r.status_code == 201, r.text
        (slug,) = state.by_slug
        assert r.json()["origin"] == f"{scheme}://{slug}.{name}"
        path = r.json()["url"].removeprefix(r.json()["origin"])
        for host in (f"{slug}.{name}", f"{slug}.{name}:{port}"):
            ui = client.get(path, headers={"Host": host, "Sec-Fetch-Dest": "iframe"})
            assert ui.status_code == 200 and "hi" in ui.text
            assert f"frame-ancestors {scheme}://127.0.0.1 {base} " in ui.headers["content-security-policy"]
        for loopback in ("localhost", "[::1]", f"127.0.0.1:{port}"):
            moved = client.get("/x", headers={"Host": loopback})
            assert moved.status_code == 307 and moved.headers["location"] == f"{base}/x"


def test_the_real_server_speaks_tls_with_the_certificate_given(cert: TestCert, tmp_path: Path) -> None:
    test_server.install_fake(tmp_path, "acme_x")
    sock = listening_socket(16)
    port = int(sock.getsockname()[1])
    state = HostState(Layout(tmp_path), port=port, token=TOKEN, domain=NAME, tls=True)
    config = server_config(create_app(state), ssl_certfile=str(cert.cert), ssl_keyfile=str(cert.key))
    trusting = ssl.create_default_context(cafile=str(cert.cert))  # verifies the chain and the name
    with uvicorn_in_thread(config, sock):
        conn = http.client.HTTPSConnection(NAME, port, context=trusting, timeout=10)
        conn._create_connection = lambda address, *a, **k: socket.create_connection(("127.0.0.1", port), *a, **k)
        conn.request("GET", f"/?token={TOKEN}")
        r = conn.getresponse()
        r.read()
        assert r.status == 303 and "; secure" in (r.getheader("set-cookie") or "").lower()
        assert conn.sock is not None
        assert conn.sock.getpeercert()["subjectAltName"] == (("DNS", NAME), ("DNS", f"*.{NAME}"))
        conn.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # plain HTTP gets no page
            raw.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}:{port}\r\n\r\n".encode())
            try:
                answer = raw.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert b"HTTP/1.1" not in answer


@pytest.mark.parametrize(("url", "expected"), [
    (f"https://{NAME}", (NAME, None)), ("https://DOCKEXT.test:8443/", (NAME, 8443)),
])
def test_the_public_address_behind_a_proxy(url: str, expected: tuple[str, int | None]) -> None:
    assert server_run.public_address(url) == expected


@pytest.mark.parametrize(("url", "says"), [
    (f"http://{NAME}", "must be https://NAME or https://NAME:PORT"),
    (f"https://{NAME}/dockext/", "must be https://NAME or https://NAME:PORT"),  # a path: names are per origin
    (f"https://user@{NAME}", "must be https://NAME or https://NAME:PORT"),
    ("https://lan", "has one label"),
    (f"https://{NAME}:99999", "is not a URL"),
])
def test_a_public_url_that_cannot_serve_extensions_is_refused(url: str, says: str) -> None:
    with pytest.raises(DockextError) as caught:
        server_run.public_address(url)
    assert caught.value.message.startswith("--public-url ") and says in caught.value.message


def test_serve_behind_a_proxy_says_what_the_proxy_must_do(patched_serve: list, tmp_path: Path) -> None:
    said: list[str] = []
    server_run.serve(Layout(tmp_path / "home"), port=0, open_browser=False, public_url=f"https://{NAME}",
                     echo=said.append)
    port = patched_serve[0].getsockname()[1]
    assert patched_serve[1].ssl_certfile is None  # the proxy serves TLS
    assert said[0].startswith(f"dockext dashboard: https://{NAME}/?token=")
    notice = " ".join(said[1:])
    assert notice.startswith(f"Serving plain HTTP on 127.0.0.1:{port} for the proxy in front, which browsers open "
                             f"at https://{NAME}/ .")
    assert "pass the Host header on as the browser sent it" in notice and "WebSocket" in notice
    with pytest.raises(DockextError, match="without --domain, --tls-cert and --tls-key"):
        server_run.serve(Layout(tmp_path / "home"), port=0, open_browser=False, public_url=f"https://{NAME}",
                         domain=NAME, echo=said.append)


def test_behind_a_proxy_the_public_name_is_served_and_loopback_names_say_where_to_go(tmp_path: Path) -> None:
    test_server.install_fake(tmp_path, "acme_x")
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN, domain=NAME, tls=True, public_port=443)
    with TestClient(create_app(state), base_url=f"https://{NAME}", follow_redirects=False) as client:
        r = test_server.login(client, TOKEN)
        assert "; secure" in r.headers["set-cookie"].lower()
        assert client.get("/").status_code == 200
        r = client.post("/api/ui-instances", json={"extension": "acme_x"},
                        headers={"X-Dockext": "1", "Origin": f"https://{NAME}"})
        assert r.status_code == 201 and r.json()["origin"] == f"https://acme-x-abc123.{NAME}"
        for host in (f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"[::1]:{PORT}"):  # this server's own port
            page = client.get("/", headers={"Host": host})
            assert page.status_code == 421 and f'<a href="https://{NAME}/">' in page.text
            assert client.get("/api/extensions", headers={"Host": host}).status_code == 421  # nothing but that
        assert client.get("/", headers={"Host": "localhost"}).status_code == 403  # not a name of this server


def test_a_renewed_certificate_is_served_to_new_connections_once_both_files_make_a_pair(
    cert: TestCert, tmp_path: Path
) -> None:
    """certbot and acme.sh renew a certificate every few months by writing new files: a running server takes them
    for the connections that follow, and a half-done renewal (the certificate written, its key not yet) keeps
    the certificate in use rather than breaking every handshake."""
    live = tmp_path / "live"
    live.mkdir()
    for src, name in ((cert.cert, "cert.pem"), (cert.key, "key.pem")):
        (live / name).write_bytes(src.read_bytes())
    renewed = make_cert(tmp_path / "renewed", NAME, f"*.{NAME}")
    tls = Tls.of(str(live / "cert.pem"), str(live / "key.pem"))
    assert tls is not None
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN, domain=NAME, tls=True)
    config = server_config(create_app(state), ssl_certfile=tls.cert, ssl_keyfile=tls.key)
    config.load()
    said: list[str] = []
    state.every_watch.append(server_run.Renewals(tls, config.ssl, said.append).check)
    sock = listening_socket(16)
    port = int(sock.getsockname()[1])

    def served() -> bytes:
        anything = ssl._create_unverified_context()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                anything.wrap_socket(raw, server_hostname=NAME) as tls_sock:
            der = tls_sock.getpeercert(binary_form=True)
            assert der is not None
            return der

    def der(path: Path) -> bytes:
        return ssl.PEM_cert_to_DER_cert(path.read_text())

    def replace(path: Path, data: bytes) -> None:  # as certbot does: a new file put in place
        (path.parent / f".{path.name}.new").write_bytes(data)
        (path.parent / f".{path.name}.new").replace(path)

    with uvicorn_in_thread(config, sock):
        assert served() == der(cert.cert)
        replace(live / "cert.pem", renewed.cert.read_bytes())  # the key is still the old one
        wait_until(lambda: len(said) == 1, timeout=10)
        assert said[0].startswith("dockext: kept the certificate in use; the files changed but cannot be used yet: "
                                  f"cannot serve HTTPS with the certificate {live / 'cert.pem'}")
        assert served() == der(cert.cert)
        replace(live / "key.pem", renewed.key.read_bytes())
        wait_until(lambda: len(said) == 2, timeout=10)
        assert said[1] == f"dockext: serving the certificate {live / 'cert.pem'} as it is now (the files changed)"
        assert served() == der(renewed.cert)
