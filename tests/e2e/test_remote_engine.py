"""Extensions on a remote engine: ``DOCKER_HOST=tcp://...`` (here the real local dockerd behind a TCP relay,
tests/support/remote.py), with TLS, as a docker context, and over ``ssh://`` (OpenSSH's sshd on 127.0.0.1,
tests/support/sshd.py): engines whose containers cannot see dockext's files.

The backend's socket then lives in a tmpfs volume of its Compose project and dockext reaches it through an
exec of the relay helper (docs/design.md, "Remote engines"). Proven here with real Compose, real containers and
Chromium: the UI renders and its backend calls answer, the second service and vm.cli.exec work, a large body
crosses both ways intact, a stopped backend is a clear error, and removal leaves nothing but the author's
named volume. No container mounts a path of dockext's home.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_dashboard import open_tab
from tests.support.cli import run_dockext
from tests.support.remote import make_certs, tcp_engine, tls_engine
from tests.support.server import start_server
from tests.support.session import Session
from tests.support.sshd import sshd

pytestmark = [pytest.mark.engine, pytest.mark.browser]


@pytest.fixture(scope="module")
def fixture_image(fixture_image):
    """Images of this module's own names, so their Compose projects are this module's alone: scripts/test.sh runs
    it beside tests/e2e, which installs the same fixtures under tests/e2e/conftest.py's prefix."""

    def build(name: str, **kwargs):
        return fixture_image(name, repo_prefix="dockext-remote", **kwargs)

    return build


@pytest.fixture
def remote(tmp_path):
    """A dockext home and server that know the engine only as tcp://127.0.0.1:PORT."""
    with tcp_engine() as engine:
        env = {"DOCKER_HOST": engine.host}
        server = start_server(tmp_path / "home", extra_env=env)
        try:
            yield engine, server, env
        finally:
            server.stop()


def project_containers(docker_client, project):
    found = docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    return {c.labels["com.docker.compose.service"]: c for c in found}


def assert_backend_exec_and_lists_work(session: Session, ui, project: str, body: object) -> None:
    """vm.service through the relay (``body`` echoed), docker.cli.exec (the docker CLI reaches the same engine)
    and listContainers (the Engine API), from the page's side; a container's log in the dashboard's view."""
    session.wait_backend(ui)
    with session.page(ui, timeout=60) as c:
        r = c.post(f"{ui.api}/vm/echo", json={"body": body})
        assert r.status_code == 200 and r.json()["received"] == {"body": body}
        r = c.post(f"{ui.api}/exec", json={"cli": "docker", "cmd": "ps", "args": ["--format", "{{.Names}}"]})
        assert r.status_code == 200 and f"{project}-service" in r.json()["stdout"].split(), r.text
        r = c.get(f"{ui.api}/docker/containers")
        assert r.status_code == 200 and any(f"/{project}-service" in x["Names"] for x in r.json())
    with session.dashboard() as dash:  # the dashboard's own views: the backend's log, streamed from the engine
        r = dash.get(f"/api/docker/containers/{project}-service/logs", params={"follow": "0", "tail": "all"})
        assert r.status_code == 200 and "listening on /run/guest-services/backend.sock" in r.text, r.text[:500]


def test_a_compose_backend_on_a_remote_engine_answers_its_ui_through_the_relay(page: Page, remote, fixture_image,
                                                                                docker_client):
    engine, server, env = remote
    ref = fixture_image("compose")
    key, project = "dockext-remote_compose", "dockext-remote_compose-desktop-extension"
    before = engine.connections
    out = run_dockext("install", "-f", ref, home=server.home, env=env)
    assert "VM service started" in out.stdout
    assert engine.connections > before  # everything went through tcp://, not the local socket
    try:
        record = json.loads((server.home / "extensions" / key / "extension.json").read_text())
        assert record["vm"]["relay"] == f"{project}-dockext-relay"
        ctrs = project_containers(docker_client, project)
        assert set(ctrs) == {"server", "helper", "dockext-relay"}
        assert all(c.status == "running" for c in ctrs.values())
        gs_volume = f"{project}_dockext-guest-services"
        for name, c in ctrs.items():
            mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
            assert mounts["/run/guest-services"]["Type"] == "volume", name
            assert mounts["/run/guest-services"]["Name"] == gs_volume, name
            # nothing of this host's dockext home is (or could be) mounted on the engine's host
            assert not any(str(server.home) in (m.get("Source") or "") for m in c.attrs["Mounts"]), name
        relay = ctrs["dockext-relay"].attrs["HostConfig"]
        assert relay["NetworkMode"] == "none" and relay["ReadonlyRootfs"] and relay["CapDrop"] == ["ALL"]
        assert not list((server.home / "gs").iterdir())  # no socket directory on this host

        page.goto(server.login_url)
        expect(page.locator("#engine-name")).to_have_text(engine.host)  # the header names the engine
        assert "backends are reached through a relay" in (page.locator("#engine-pill").get_attribute("title") or "")
        ui = open_tab(page, key)
        expect(ui.locator("#engine")).to_have_text(docker_client.version()["ApiVersion"])
        expect(ui.locator("#peer")).to_have_text("helper says hi")
        expect(ui.locator("#whoami")).to_have_text("compose-api")
        expect(ui.locator("#vm-exec")).to_have_text("compose-api")  # vm.cli.exec: docker exec over tcp://
        expect(ui.locator("#status")).to_have_text("done")
    finally:
        run_dockext("rm", ref, home=server.home, env=env)
    assert project_containers(docker_client, project) == {}
    assert not docker_client.volumes.list(filters={"name": f"{project}_dockext-guest-services"})
    data = docker_client.volumes.get(f"{project}_data")  # the author's volume outlives rm, as locally
    data.remove()


def test_remote_backend_bodies_both_ways_kept_alive_connections_and_a_stopped_backend(remote, fixture_image,
                                                                                      docker_client):
    engine, server, env = remote
    ref = fixture_image("vm-image")
    key, project = "dockext-remote_vm-image", "dockext-remote_vm-image-desktop-extension"
    run_dockext("install", "-f", ref, home=server.home, env=env)
    try:
        session = Session(server)
        ui = session.open_ui(key)
        session.wait_backend(ui)
        with session.page(ui, timeout=60) as c:
            big = "x" * (3 << 20) + "end"
            r = c.post(f"{ui.api}/vm/echo", json={"big": big})
            assert r.status_code == 200 and r.json()["received"]["big"] == big
            # kept-alive: many requests reuse a few relayed connections (each one is an exec)
            before = engine.connections
            for _ in range(40):
                r = c.get(f"{ui.api}/vm/hello")
                assert r.status_code == 200 and r.json()["message"] == "hello from vm-image"
            assert engine.connections - before <= 5
            # a streamed answer the page abandons: the relay's exec ends with it (not when the backend next
            # writes, or never), and with it the backend's side of the connection
            relay = project_containers(docker_client, project)["dockext-relay"]
            with c.stream("GET", f"{ui.api}/vm/ticks") as ticks:
                lines = ticks.iter_lines()
                assert next(lines) == "tick 0" and next(lines) == "tick 1"
                assert any("connect" in " ".join(p) for p in relay.top()["Processes"] or [])
            deadline = time.monotonic() + 15
            while any("connect" in " ".join(p) for p in relay.top()["Processes"] or []):
                assert time.monotonic() < deadline, relay.top()["Processes"]
                time.sleep(0.2)
            # the backend stopped by hand (restart: always does not undo a manual stop): a clear 502
            project_containers(docker_client, project)["service"].stop(timeout=5)
            r = c.get(f"{ui.api}/vm/hello")
            assert r.status_code == 502
            message = r.json()["error"]["message"]
            assert message.startswith("the backend of ") and "cannot be reached" in message
            assert "backend.sock" in message, message
    finally:
        run_dockext("rm", ref, home=server.home, env=env)
    assert project_containers(docker_client, project) == {}


def test_a_tls_engine_reached_with_the_environments_certificates_or_a_docker_context(tmp_path, fixture_image,
                                                                                      docker_client):
    """``dockerd --tlsverify`` (a TLS relay requiring a client certificate): dockext, Compose, the relay's
    hijacked execs and every docker CLI it runs use the same certificates, from ``DOCKER_TLS_VERIFY`` +
    ``DOCKER_CERT_PATH`` or from the docker context the user switched to (the CLI's own files)."""
    certs = make_certs(tmp_path / "certs")
    ref = fixture_image("vm-image")
    key, project = "dockext-remote_vm-image", "dockext-remote_vm-image-desktop-extension"
    home = tmp_path / "home"
    with tls_engine(certs) as engine:
        # without certificates the engine is unreachable: said so, nothing installed
        plain = run_dockext("install", "-f", ref, home=home, env={"DOCKER_HOST": engine.host}, check=False)
        assert plain.returncode != 0
        assert f"cannot reach the Docker engine at {engine.host}" in plain.stderr, plain.stderr
        assert project_containers(docker_client, project) == {}

        env = {"DOCKER_HOST": engine.host, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
        run_dockext("install", "-f", ref, home=home, env=env)
        server = start_server(home, extra_env=env)
        try:
            session = Session(server)
            ui = session.open_ui(key)
            assert_backend_exec_and_lists_work(session, ui, project, body=7)  # all over TLS
        finally:
            server.stop()

        # The same engine as the user's current docker context, created and chosen with the real Docker CLI;
        # no DOCKER_HOST: dockext reads the context like the CLI does.
        cli_env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
        cli_env.pop("DOCKER_HOST", None)
        endpoint = f"host={engine.host},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"
        for args in (["context", "create", "tls-remote", "--docker", endpoint], ["context", "use", "tls-remote"]):
            subprocess.run(["docker", *args], env=cli_env, check=True, capture_output=True)
        ctx_env = {"DOCKER_CONFIG": cli_env["DOCKER_CONFIG"], "DOCKER_HOST": ""}
        before = engine.connections
        [row] = json.loads(run_dockext("ls", "--format", "json", home=home, env=ctx_env).stdout)
        assert row["vm"] == "Running(1)" and engine.connections > before
        # and through the Docker CLI plugin, naming the context on docker's command line
        run_dockext("plugin", "install", home=home, env=ctx_env)
        listed = subprocess.run(["docker", "--context", "tls-remote", "extension", "ls"], capture_output=True,
                                text=True, env={**cli_env, "DOCKEXT_HOME": str(home), "COLUMNS": "200"}, timeout=120)
        assert listed.returncode == 0 and "dockext-remote/vm-image" in listed.stdout, listed.stderr
        run_dockext("rm", ref, home=home, env=ctx_env)
    assert project_containers(docker_client, project) == {}


def test_an_engine_over_ssh_is_reached_as_the_docker_cli_reaches_it(tmp_path, fixture_image, docker_client):
    """``DOCKER_HOST=ssh://host``: dockext's connections are ``ssh host docker system dial-stdio`` (real sshd,
    real ssh), Compose and the docker CLI dial the same way, and the backend answers through the relay."""
    ref = fixture_image("vm-image")
    key, project = "dockext-remote_vm-image", "dockext-remote_vm-image-desktop-extension"
    home = tmp_path / "home"
    with sshd(tmp_path / "ssh") as ssh:
        env = ssh.env()
        # nothing listening there: ssh's own words reach the user
        dead = run_dockext("install", "-f", ref, home=home, env={**env, "DOCKER_HOST": "ssh://root@127.0.0.1:1"},
                           check=False)
        assert dead.returncode == 1, dead.stderr
        assert "cannot reach the Docker engine at ssh://root@127.0.0.1:1" in dead.stderr
        assert "ssh exited 255" in dead.stderr and "Connection refused" in dead.stderr

        run_dockext("install", "-f", ref, home=home, env=env)
        assert ssh.accepted() > 0
        server = start_server(home, extra_env=env)
        try:
            session = Session(server)
            ui = session.open_ui(key)
            assert_backend_exec_and_lists_work(session, ui, project, body="y" * (1 << 20))  # all through ssh
        finally:
            server.stop()
        run_dockext("rm", ref, home=home, env=env)
    assert project_containers(docker_client, project) == {}


def test_a_remote_backend_restarted_alone_can_listen_again_over_its_old_socket(remote, fixture_image, docker_client):
    """R13 on a remote engine: the relay keeps the sockets' tmpfs mounted, so a backend killed and restarted by
    the engine finds the socket file it left; the stale-socket fixture (like Node) cannot listen over it. The
    relay removes sockets nobody listens on, and the backend comes back."""
    _, server, env = remote
    ref = fixture_image("stale-socket")
    key, project = "dockext-remote_stale-socket", "dockext-remote_stale-socket-desktop-extension"
    run_dockext("install", "-f", ref, home=server.home, env=env)
    try:
        session = Session(server)
        ui = session.open_ui(key)
        session.wait_backend(ui)
        with session.page(ui, timeout=10) as c:
            first = c.get(f"{ui.api}/vm/hello").json()["pid"]
            backend = project_containers(docker_client, project)["service"]
            backend.exec_run(["python3", "-c", f"import os; os.kill({first}, 9)"])  # not a stop: it restarts
            deadline = time.monotonic() + 60
            while True:
                r = c.get(f"{ui.api}/vm/hello")
                if r.status_code == 200:
                    break
                assert time.monotonic() < deadline, r.text
                time.sleep(0.3)
        backend.reload()
        assert backend.attrs["RestartCount"] >= 1  # it did die and come back
    finally:
        run_dockext("rm", ref, home=server.home, env=env)
    assert project_containers(docker_client, project) == {}
