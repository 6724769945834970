"""`dockext permissions`: grants enforced by the host API and seen by the extension (real server, Chromium)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.bridge import bridge
from tests.support.cli import run_dockext
from tests.support.session import Session

from .test_dashboard import open_tab

pytestmark = [pytest.mark.engine, pytest.mark.browser]

PREFIX = "dockext-perm"
KEY = f"{PREFIX}_host-binary"
DOCKER = {"cli": "docker", "cmd": "version", "args": ["--format", "{{.Server.Version}}"]}
HOST = {"cli": "host", "cmd": "hello.sh", "args": ["John"]}

EXEC_IN_PAGE = """(cli) => (cli === "docker"
    ? window.ddClient.docker.cli.exec("version", ["--format", "x"])
    : window.ddClient.extension.host.cli.exec("hello.sh", ["John"])
  ).then(() => "ran", (e) => `${e.name}: ${e.message}`)"""


def test_denied_docker_and_host_access_is_refused_everywhere_and_allowed_again(page: Page, server, fixture_image):
    ref = fixture_image("host-binary", repo_prefix=PREFIX)
    run_dockext("install", "-f", ref, home=server.home)
    session = Session(server)
    ui = session.open_ui(KEY)
    try:
        with session.page(ui) as c:
            assert c.post(f"{ui.api}/exec", json=DOCKER).status_code == 200  # the defaults: Docker Desktop's
            assert c.post(f"{ui.api}/exec", json=HOST).json()["stdout"].startswith("Hello, John!")

        said = run_dockext("permissions", "set", ref, "docker=deny", "host=deny", home=server.home).stdout
        assert said.strip() == f"{ref}: docker denied, host denied."
        with session.page(ui) as c:  # the open UI is refused at once, no reopening needed
            for body, what in ((DOCKER, "run docker commands"), (HOST, "run the host binaries it ships")):
                r = c.post(f"{ui.api}/exec", json=body)
                assert r.status_code == 403, r.text
                assert r.json()["error"]["type"] == "PermissionDenied"
                assert f"Host Binary may not {what}" in r.json()["error"]["message"]
            r = c.get(f"{ui.api}/docker/containers")
            assert r.status_code == 403 and r.json()["error"]["type"] == "PermissionDenied"
            with c.stream("GET", f"{ui.api}/docker/images") as listed:
                assert listed.status_code == 403

        # what the page's ddClient gets, in Chromium; and the dashboard shows it
        page.goto(server.login_url)
        expect(page.locator("#ext-rows")).to_contain_text("docker: denied")
        expect(page.locator("#ext-rows")).to_contain_text("hello.sh: denied")
        open_tab(page, KEY)
        frame = page.locator("#extension-frame").element_handle().content_frame()
        assert frame.evaluate(EXEC_IN_PAGE, "docker").startswith("PermissionDenied: Host Binary may not run docker")
        assert frame.evaluate(EXEC_IN_PAGE, "host").startswith("PermissionDenied: Host Binary may not run the host")
        # nor open the Docker views: a container's terminal runs a shell in it, and the answer said whether a
        # container of that name exists (found in a security review)
        navigate = ("(id) => window.ddClient.desktopUI.navigate.viewContainerTerminal(id)"
                    ".then(() => 'opened', (e) => e.message)")
        assert frame.evaluate(navigate, "no-such-container").startswith(
            "PermissionDenied: Host Binary may not open the Docker views"), frame.evaluate(navigate, "x")
        expect(page.locator("#extension-frame")).to_have_count(1)  # still on its tab

        rows = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert rows == [{"id": f"{PREFIX}/host-binary", "docker": False, "host": False, "web": True, "engine": None,
                         "system": None, "network": None, "withheld": [],
                         "backend": ["host binaries run as you: hello.sh"]}]

        # allowed again from the dashboard's dialog (the same as `dockext permissions set`)
        page.locator("#home-button").click()
        page.get_by_role("button", name="Change the permissions of Host Binary").click()
        dialog = page.locator("dialog.dx-dialog")
        expect(dialog).to_contain_text("run hello.sh as you")
        dialog.get_by_role("checkbox", name="Docker engine").check()
        dialog.get_by_role("checkbox", name="Host binaries").check()
        dialog.get_by_role("button", name="Save").click()
        expect(page.locator("#toasts")).to_contain_text("Permissions of Host Binary saved.")
        expect(page.locator("#ext-rows")).not_to_contain_text("denied")  # the change came back as an event
        rows = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert (rows[0]["docker"], rows[0]["host"]) == (True, True)
        ui2 = open_tab(page, KEY)
        expect(ui2.locator("#host")).to_have_text("Hello, John! (2 args)")
        frame = page.locator("#extension-frame").element_handle().content_frame()
        assert frame.evaluate(EXEC_IN_PAGE, "docker") == "ran"
        assert frame.evaluate(EXEC_IN_PAGE, "host") == "ran"
    finally:
        session.close_ui(ui)
        run_dockext("permissions", "set", ref, "docker=deny", home=server.home)
        run_dockext("rm", ref, home=server.home)
    # the grants went with the extension: a new install starts from the defaults
    assert not (server.home / "permissions.json").exists() or \
        json.loads((server.home / "permissions.json").read_text())["extensions"] == {}


def test_install_says_what_the_backend_gets(tmp_path, fixture_image):
    home = tmp_path / "home"
    ref = fixture_image("compose", repo_prefix=PREFIX)
    out = run_dockext("install", "-f", ref, home=home).stdout
    try:
        assert "It gets the Docker engine's socket (full control of the engine)" in out
        table = run_dockext("permissions", home=home).stdout
        assert table.splitlines()[0].split() == [
            "ID", "DOCKER", "HOST", "WEB", "ENGINE", "SYSTEM", "NETWORK", "BACKEND", "ASKS", "FOR"]
        assert f"{PREFIX}/compose" in table and "allowed" in table and "the Docker engine's socket" in table
        wrong = run_dockext("permissions", "set", ref, "wifi=deny", home=home, check=False)
        assert wrong.returncode == 2
        assert "expected one of docker, host, web, engine, system, network =allow or =deny" in wrong.stderr
    finally:
        run_dockext("rm", ref, home=home)


def test_backend_grants_recreate_the_backend_without_and_with_the_engine_socket(page: Page, server, fixture_image,
                                                                                  docker_client):
    """The engine grant, enforced by the engine itself: installed with --deny engine, the compose backend runs
    without the socket (its /engine call fails inside the container); allowed from the CLI, then withheld again
    from the dashboard's dialog, it is recreated each time, its named volume's data kept."""
    ref = fixture_image("compose", repo_prefix=PREFIX)
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"

    def server_container():
        [ctr] = [c for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
                 if c.labels["com.docker.compose.service"] == "server"]
        return ctr

    def mounts_engine() -> bool:
        return any(m["Destination"] == "/var/run/docker.sock" for m in server_container().attrs["Mounts"])

    out = run_dockext("install", "-f", "--deny", "engine", ref, home=server.home).stdout
    try:
        assert "Withheld by your permissions (engine=deny): it asked to mount the Docker engine's socket" in out
        assert "It gets the Docker engine's socket" not in out
        assert not mounts_engine()
        server_container().exec_run(["python3", "-c", "open('/data/marker', 'w').write('kept')"])
        session = Session(server)
        ui = session.open_ui(key)
        session.wait_backend(ui, "/whoami")
        with session.page(ui) as c:
            r = c.get(f"{ui.api}/vm/engine")
            # the backend itself cannot reach the engine: no socket where it was mounted
            assert r.status_code == 502 and r.text.startswith("FileNotFoundError"), r.text
        [row] = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert (row["engine"], row["withheld"], row["system"]) == (False, ["engine"], None)

        said = run_dockext("permissions", "set", ref, "engine=allow", home=server.home).stdout
        assert "Recreating the backend of \"Compose Backend\" with its new permissions" in said
        assert said.strip().endswith("Its backend was recreated.")
        assert mounts_engine()
        assert server_container().exec_run(["python3", "-c", "print(open('/data/marker').read())"]).output == b"kept\n"
        ui = session.open_ui(key)
        session.wait_backend(ui, "/engine")
        [row] = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert (row["engine"], row["withheld"]) == (True, [])

        # withheld again from the dashboard: the dialog has the backend's grant
        page.goto(server.login_url)
        expect(page.locator("#ext-rows")).to_contain_text("engine socket")
        page.get_by_role("button", name="Change the permissions of Compose Backend").click()
        dialog = page.locator("dialog.dx-dialog")
        expect(dialog).to_contain_text("Its compose file asks for the Docker engine's socket")
        dialog.get_by_role("checkbox", name="Engine socket (backend)").uncheck()
        dialog.get_by_role("button", name="Save").click()
        expect(page.locator("#toasts")).to_contain_text("Its backend was recreated with them.", timeout=60_000)
        expect(page.locator("#ext-rows")).to_contain_text("engine socket: withheld")
        assert not mounts_engine()
        # saving again without a change recreates nothing
        unchanged = run_dockext("permissions", "set", ref, "engine=deny", home=server.home).stdout
        assert "Recreating" not in unchanged and "recreated" not in unchanged
    finally:
        run_dockext("rm", ref, home=server.home)
        docker_client.volumes.get(f"{project}_data").remove()
    assert not (server.home / "permissions.json").exists() or \
        json.loads((server.home / "permissions.json").read_text())["extensions"] == {}


def test_denied_system_publishes_the_backends_ports_on_loopback_only(page: Page, server, fixture_image,
                                                                    docker_client):
    """Compose publishes a backend's `ports` on every interface: the machine's network. Installed with
    --deny system, the engine binds them to 127.0.0.1 only, and they still answer there; allowed again, the
    backend is recreated with them as its compose file says. The dashboard's Access column says which."""
    home = server.home
    ref = fixture_image("ports", repo_prefix=PREFIX)
    project = f"{PREFIX}_ports-desktop-extension"

    def bindings() -> list[dict[str, str]]:
        [ctr] = docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
        ports = ctr.attrs["NetworkSettings"]["Ports"]
        return [*(ports["8080/tcp"] or []), *(ports["8081/tcp"] or [])]

    out = run_dockext("install", "-f", "--deny", "system", ref, home=home).stdout
    try:
        assert "Withheld by your permissions (system=deny): it asked to give its backend host access" in out
        assert "ports open to the network" not in out
        listening = bindings()
        assert len(listening) == 2 and {b["HostIp"] for b in listening} == {"127.0.0.1"}, listening
        for b in listening:  # in the host's network namespace (the tests have their own: tests/conftest.py)
            with bridge(int(b["HostPort"])):
                assert httpx.get(f"http://127.0.0.1:{b['HostPort']}/", timeout=10).text == "web says hi"
        [row] = json.loads(run_dockext("permissions", "ls", "--format", "json", home=home).stdout)
        assert (row["system"], row["withheld"]) == (False, ["system"])
        assert row["backend"] == ["ports open to the network: web 8080, web 8081/tcp"]
        page.goto(server.login_url)
        expect(page.locator("#ext-rows")).to_contain_text("ports: 127.0.0.1 only")

        said = run_dockext("permissions", "set", ref, "system=allow", home=home).stdout
        assert said.strip().endswith("Its backend was recreated.")
        everywhere = bindings()
        assert everywhere and not any(b["HostIp"].startswith("127.") for b in everywhere), everywhere
        page.reload()
        expect(page.locator("#ext-rows")).to_contain_text("network ports")
        expect(page.locator("#ext-rows")).not_to_contain_text("127.0.0.1 only")
    finally:
        run_dockext("rm", ref, home=home)


def test_denied_network_cuts_the_backend_off_but_keeps_its_services_and_socket(page: Page, server, fixture_image,
                                                                              docker_client):
    """Without the network grant, the compose backend's networks are internal: the engine drops whatever its
    containers send beyond their own subnet (read from the engine's firewall rules: nothing is sent anywhere),
    yet its two services still talk to each other and vm.service still reaches it. Allowed again from the
    dashboard's dialog, its networks lead out again."""
    ref = fixture_image("compose", repo_prefix=PREFIX)
    key, project = f"{PREFIX}_compose", f"{PREFIX}_compose-desktop-extension"

    def cut_off() -> set[bool]:
        """For each network of the project: whether the engine made it internal and drops what leaves it."""
        rules = subprocess.run(["nsenter", f"--net={os.environ['DOCKEXT_TEST_HOST_NETNS']}", "iptables", "-S",
                                "DOCKER-ISOLATION-STAGE-1"], capture_output=True, text=True, check=True).stdout
        found = set()
        for net in docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"}):
            subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
            drop = f"! -d {subnet} -i br-{net.id[:12]} -j DROP"
            found.add(net.attrs["Internal"] is True and drop in rules)
        return found

    said = run_dockext("install", "-f", "--deny", "network", ref, home=server.home).stdout
    try:
        assert "Withheld by your permissions (network=deny): it asked to let its backend reach the network" in said
        # the engine here (20.10) forwards an internal network's DNS lookups (CVE-2024-29018): the install says so
        assert "still answers the DNS lookups of a cut-off backend" in " ".join(said.split())
        assert cut_off() == {True}
        session = Session(server)
        ui = session.open_ui(key)
        session.wait_backend(ui, "/whoami")
        with session.page(ui) as c:
            assert c.get(f"{ui.api}/vm/peer").json() == {"peer": "helper says hi"}  # its own services: yes
        [row] = json.loads(run_dockext("permissions", "ls", "--format", "json", home=server.home).stdout)
        assert (row["network"], row["withheld"]) == (False, ["network"])
        said = run_dockext("permissions", "set", ref, "network=deny", home=server.home).stdout
        # not a boundary alone: it mounts the engine's socket
        assert "can still reach the network through the engine's socket" in said and "Recreating" not in said

        page.goto(server.login_url)
        expect(page.locator("#ext-rows")).to_contain_text("network: cut off")
        page.get_by_role("button", name="Change the permissions of Compose Backend").click()
        page.locator("dialog.dx-dialog").get_by_role("checkbox", name="Network (backend)").check()
        page.locator("dialog.dx-dialog").get_by_role("button", name="Save").click()
        expect(page.locator("#toasts")).to_contain_text("Its backend was recreated with them.", timeout=60_000)
        expect(page.locator("#ext-rows")).not_to_contain_text("network: cut off")
        assert cut_off() == {False}
        session.wait_backend(session.open_ui(key), "/peer")  # the recreated backend answers, its peer too
    finally:
        run_dockext("rm", ref, home=server.home)
        docker_client.volumes.get(f"{project}_data").remove()


def _ghost_image(fixture_image, docker_client, tag: str, container_name: str) -> str:
    """The compose fixture with a service that is never created (a profile) naming ``container_name``."""
    compose = (
        "services:\n"
        "  ghost:\n"
        "    image: ${DESKTOP_PLUGIN_IMAGE}\n"
        f"    container_name: {container_name}\n"
        "    profiles: [never]\n"
        "  server:\n"
        "    image: ${DESKTOP_PLUGIN_IMAGE}\n"
        '    command: ["python3", "-u", "/app/api.py"]\n'
        "    init: true\n"
        "    environment: {SOCKET: /run/guest-services/compose.sock}\n"
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", f"FROM {fixture_image('compose', repo_prefix=PREFIX)}\n"
                                          "COPY docker-compose.yaml /\nLABEL dockext.test=1\n"),
                           ("docker-compose.yaml", compose)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    context.seek(0)
    docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return tag


def test_vm_exec_runs_only_in_the_extensions_own_backend(server, fixture_image, docker_client):
    """Found in a security review: `vm.cli.exec` ran `docker exec <the first service's container_name>`, and a
    service that is never created (a profile) could name another extension's container: with every grant denied,
    one extension ran commands as root in another's backend. The container must be of the extension's project.

    Since a later review a backend cannot name another extension's container at all (it made that extension's
    install fail): such an install is refused, and the exec check is shown with a container of the user's."""
    victim = fixture_image("vm-image", repo_prefix=PREFIX)
    run_dockext("install", "-f", victim, home=server.home)
    squatter = _ghost_image(fixture_image, docker_client, f"{PREFIX}/squatter:1.0.0",
                            f"{PREFIX}_vm-image-desktop-extension-service")
    mine = f"{PREFIX}-users-own"
    evil = _ghost_image(fixture_image, docker_client, f"{PREFIX}/ghost:1.0.0", mine)
    users = docker_client.containers.run(victim, name=mine, detach=True,
                                         command=["python3", "-c", "import time; time.sleep(600)"])
    try:
        refused = run_dockext("install", "-f", squatter, home=server.home, check=False)
        assert refused.returncode != 0
        assert (f"container_name '{PREFIX}_vm-image-desktop-extension-service', the name of another extension's "
                "container") in refused.stderr, refused.stderr
        assert f"{PREFIX}_squatter" not in run_dockext("ls", home=server.home).stdout
        assert not docker_client.containers.list(all=True, filters={
            "label": "com.docker.compose.project=dockext-perm_squatter-desktop-extension"})

        run_dockext("install", "-f", evil, home=server.home)
        session = Session(server)
        ui = session.open_ui(f"{PREFIX}_ghost")
        with session.page(ui) as c:
            r = c.post(f"{ui.api}/exec", json={"cli": "vm", "cmd": "cat", "args": ["/app/greeting.txt"]})
        assert r.status_code == 403 and r.json()["error"]["type"] == "ExecRefused", r.text
        assert f"the container {mine} is not a container of Compose Backend's backend" in r.json()["error"]["message"]
        own = session.open_ui(f"{PREFIX}_vm-image")  # the victim's own exec still runs, in its container
        with session.page(own) as c:
            r = c.post(f"{own.api}/exec", json={"cli": "vm", "cmd": "cat", "args": ["/app/greeting.txt"]})
        assert r.status_code == 200 and r.json()["stdout"] == "hello from inside the backend\n", r.text
    finally:
        users.remove(force=True)
        run_dockext("rm", evil, home=server.home, check=False)
        run_dockext("rm", victim, home=server.home, check=False)
        for image in (evil, squatter):
            docker_client.images.remove(image, force=True)
