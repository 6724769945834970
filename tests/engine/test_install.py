"""Install, list and remove real extension images against the real engine, registry and Compose."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dockext.paths import Layout
from tests.support.backends import get_over_socket
from tests.support.cli import run_dockext
from tests.support.procs import wait_until

pytestmark = pytest.mark.engine


def labelled(docker_client, label):
    return docker_client.containers.list(all=True, filters={"label": label})


def ls_json(home, env=None):
    return json.loads(run_dockext("ls", "--format", "json", home=home, env=env).stdout)


def record(home, key):
    return json.loads((home / "extensions" / key / "extension.json").read_text())


def assert_nothing_left(home, docker_client, key, project=None):
    assert not (home / "extensions" / key).exists()
    assert list((home / "staging").iterdir()) == [] if (home / "staging").exists() else True
    assert labelled(docker_client, f"dockext.extension={key}") == []
    assert labelled(docker_client, f"dockext.copy={Layout(Path(home).absolute()).owner}") == []  # this home's own
    if project:
        assert labelled(docker_client, f"com.docker.compose.project={project}") == []
    gs = home / "gs"
    assert not gs.exists() or list(gs.iterdir()) == []


@contextlib.contextmanager
def occupied_on_the_host(port: int):
    """Listen on 127.0.0.1:port in the engine's network namespace (where docker-proxy binds published
    ports), which is not the tests' own when they run in a namespace of their own (tests/conftest.py)."""
    host_ns = os.environ.get("DOCKEXT_TEST_HOST_NETNS")
    enter = ["nsenter", f"--net={host_ns}"] if host_ns else []
    code = (
        "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); print('ready', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen([*enter, sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.stdin.close()
        proc.wait(10)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_ui_only_extension_installs_lists_and_leaves_nothing_on_rm(home, fixture_image, docker_client):
    ref = fixture_image("ui-only")
    out = run_dockext("install", "-f", ref, home=home)
    assert 'Extracting metadata and files for the extension "dockext-test/ui-only:1.0.0"' in out.stdout
    assert 'Extension UI tab "UI Only" added.' in out.stdout
    assert "installed successfully" in out.stdout
    d = home / "extensions" / "dockext-test_ui-only"
    assert (d / "ui" / "index.html").is_file()
    assert (d / "ui" / "app.js").is_file()
    assert (d / "icon.svg").read_bytes().lstrip().startswith(b"<")
    assert json.loads((d / "metadata.json").read_text())["ui"]["dashboard-tab"]["title"] == "UI Only"
    rec = record(home, "dockext-test_ui-only")
    assert rec["image"] == "dockext-test/ui-only:1.0.0" and rec["vm"] is None
    assert ls_json(home) == [
        {
            "id": "dockext-test/ui-only",
            "provider": "dockext tests",
            "version": "1.0.0",
            "ui": "1 tab(UI Only)",
            "vm": "-",
            "host": "-",
            "image": "dockext-test/ui-only:1.0.0",
            "title": rec["title"],
            "backend_engine": None,  # no backend: on no engine
        }
    ]
    table = run_dockext("ls", home=home).stdout.splitlines()
    assert table[0].split() == ["ID", "PROVIDER", "VERSION", "UI", "VM", "HOST"]
    assert table[1].split()[:3] == ["dockext-test/ui-only", "dockext", "tests"]
    again = run_dockext("install", "-f", ref, home=home, check=False)
    assert again.returncode == 1 and "already installed" in again.stderr
    assert "To install it again, remove it first with: dockext rm dockext-test/ui-only" in again.stderr
    newer = fixture_image("ui-only", tag="2.0.0")  # another version: the hint is update (found by a bug hunt)
    other = run_dockext("install", "-f", newer, home=home, check=False)
    assert other.returncode == 1 and f"Install {newer} in its place with: dockext update {newer}" in other.stderr
    # developer settings go with the extension, as its grants do: installed again, it must not load a dev server
    run_dockext("dev", "ui-source", ref, "http://localhost:3000", home=home)
    out = run_dockext("rm", "dockext-test/ui-only:1.0.0", home=home)
    assert "removed" in out.stdout
    assert ls_json(home) == []
    assert json.loads((home / "dev.json").read_text())["extensions"] == {}
    assert_nothing_left(home, docker_client, "dockext-test_ui-only")


def test_vm_image_backend_runs_with_the_rewritten_compose_and_answers_on_its_socket(
    home, fixture_image, docker_client
):
    ref = fixture_image("vm-image")
    key, project = "dockext-test_vm-image", "dockext-test_vm-image-desktop-extension"
    out = run_dockext("install", "-f", ref, home=home)
    assert "Starting service in Desktop VM" in out.stdout
    try:
        rec = record(home, key)
        assert rec["vm"]["project"] == project
        [ctr] = labelled(docker_client, f"com.docker.compose.project={project}")
        assert ctr.name == f"{project}-service"
        assert ctr.status == "running"
        labels = ctr.labels
        assert labels["com.docker.desktop.extension"] == "true"
        assert labels["com.docker.desktop.extension.name"] == rec["title"]
        assert ctr.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
        assert ref in ctr.image.tags
        gs = home / "gs" / rec["vm"]["gs_key"]
        assert any(
            m["Source"] == str(gs) and m["Destination"] == "/run/guest-services" for m in ctr.attrs["Mounts"]
        )
        status, body = get_over_socket(gs / "backend.sock", "/hello")
        assert (status, json.loads(body)["message"]) == (200, "hello from vm-image")
        [row] = ls_json(home)
        assert row["vm"] == "Running(1)"
        # as in Docker Desktop, the backend reaches this machine as host.docker.internal: here the engine's
        # host-gateway, the default bridge's gateway (resolved from /etc/hosts: no traffic); an engine whose bridge
        # took an existing docker0 reports only the subnet, whose first address is the gateway then
        ipam = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
        gateway = ipam.get("Gateway") or str(ipaddress.ip_network(ipam["Subnet"])[1])
        resolve = "import socket; print(socket.gethostbyname('host.docker.internal'))"
        code, out = ctr.exec_run(["python3", "-c", resolve])
        assert (code, out.decode().strip()) == (0, gateway)
    finally:
        run_dockext("rm", ref, home=home)
    assert_nothing_left(home, docker_client, key, project)


def test_compose_backend_with_two_services_and_the_raw_engine_socket(home, fixture_image, docker_client):
    ref = fixture_image("compose")
    key, project = "dockext-test_compose", "dockext-test_compose-desktop-extension"
    run_dockext("install", "-f", ref, home=home)
    try:
        ctrs = {
            c.labels["com.docker.compose.service"]: c
            for c in labelled(docker_client, f"com.docker.compose.project={project}")
        }
        assert set(ctrs) == {"server", "helper"}
        assert ctrs["server"].name == f"{project}-service"  # first in the file, though not alphabetically
        for c in ctrs.values():
            assert c.labels["com.docker.desktop.extension"] == "true"
            assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
        mounts = {m["Destination"]: m for m in ctrs["server"].attrs["Mounts"]}
        assert mounts["/var/run/docker.sock"]["Source"] == "/var/run/docker.sock"
        assert mounts["/data"]["Type"] == "volume"
        rec = record(home, key)
        assert rec["vm"]["first_service"] == "server"
        sock = home / "gs" / rec["vm"]["gs_key"] / "compose.sock"
        status, body = get_over_socket(sock, "/engine")
        assert status == 200 and json.loads(body)["apiVersion"] == docker_client.version()["ApiVersion"]
        # Compose starts the helper, not its server: on a loaded machine its Python may still be starting
        peer: list[tuple[int, str]] = []
        assert wait_until(lambda: peer.append(get_over_socket(sock, "/peer")) or peer[-1][0] == 200, timeout=60), peer
        assert json.loads(peer[-1][1])["peer"].strip() == "helper says hi"
    finally:
        run_dockext("rm", ref, home=home)
    assert_nothing_left(home, docker_client, key, project)
    volume = f"{project}_data"
    assert docker_client.volumes.get(volume)  # named volumes outlive rm, as in Docker Desktop
    docker_client.volumes.get(volume).remove()


def test_host_binaries_for_linux_are_copied_with_their_mode(home, fixture_image, docker_client):
    ref = fixture_image("host-binary")
    run_dockext("install", "-f", ref, home=home)
    host = home / "extensions" / "dockext-test_host-binary" / "host"
    assert sorted(p.name for p in host.iterdir()) == ["hello.sh"]
    mode = (host / "hello.sh").stat().st_mode
    assert mode & stat.S_IXUSR and not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)
    assert ls_json(home)[0]["host"] == "1 binarie(s)"
    run_dockext("rm", ref, home=home)
    assert_nothing_left(home, docker_client, "dockext-test_host-binary")


def test_install_pulls_from_a_registry_with_progress(home, fixture_image, push_fixture, docker_client):
    remote = push_fixture(fixture_image("ui-only"))
    assert remote.startswith("127.0.0.1:5000/")
    out = run_dockext("install", "-f", remote, home=home)
    assert f"Image not available locally, pulling {remote}" in out.stdout
    [row] = ls_json(home)
    assert row["id"] == remote.rsplit(":", 1)[0]
    run_dockext("rm", remote, home=home)
    assert ls_json(home) == []


def test_unknown_image_and_unknown_extension_are_clear_errors(home):
    out = run_dockext("install", "-f", "127.0.0.1:5000/dockext-test/nope:9.9.9", home=home, check=False)
    assert out.returncode == 1
    assert "Error: cannot pull 127.0.0.1:5000/dockext-test/nope:9.9.9" in out.stderr
    assert "Check the image name and tag" in out.stderr
    out = run_dockext("rm", "dockext-test/never-installed", home=home, check=False)
    assert out.returncode == 1
    assert "extension dockext-test/never-installed is not installed" in out.stderr


def test_a_pull_from_loopback_by_an_engine_elsewhere_says_why_it_cannot_work(home):
    """The engine is told to be elsewhere (DOCKEXT_REMOTE_ENGINE=1: a socket forwarded from another machine):
    its pull of a loopback registry fails, and the message says that loopback is the engine's own."""
    out = run_dockext("install", "-f", "127.0.0.1:5000/dockext-test/nope:9.9.9", home=home, check=False,
                      env={"DOCKEXT_REMOTE_ENGINE": "1"})
    assert out.returncode == 1
    assert "Error: cannot pull 127.0.0.1:5000/dockext-test/nope:9.9.9" in out.stderr
    assert "127.0.0.1:5000 is a loopback address, and the engine at unix://" in out.stderr
    assert "pulls from its own machine, not this one" in out.stderr
    assert ls_json(home) == []


@pytest.mark.parametrize(
    "fixture, message",
    [
        ("bad-no-metadata", "metadata.json: the image has no /metadata.json"),
        ("bad-json", "metadata.json: is not valid JSON"),
        ("bad-missing-root", "ui.dashboard-tab.root: /ui does not exist in the image"),
        ("bad-root-symlink", 'UI root /ui is a symlink to "/etc", which leaves it'),
        ("bad-binary-dotdot", "host.binaries[0].linux[0].path"),
    ],
)
def test_broken_extensions_are_refused_with_the_field_named_and_nothing_left(
    home, fixture_image, docker_client, fixture, message
):
    ref = fixture_image(fixture)
    out = run_dockext("install", "-f", ref, home=home, check=False)
    assert out.returncode == 1, out.stdout
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert_nothing_left(home, docker_client, f"dockext-test_{fixture}")
    assert ls_json(home) == []


def test_compose_failure_rolls_back_every_container(home, fixture_image, docker_client):
    ref = fixture_image("bad-compose")
    project = "dockext-test_bad-compose-desktop-extension"
    # a volume kept from an earlier install of the same extension: a failed install must not take it
    kept = docker_client.volumes.create(f"{project}_kept", labels={"com.docker.compose.project": project})
    with occupied_on_the_host(47999):
        out = run_dockext("install", "-f", ref, home=home, check=False)
    assert out.returncode == 1
    assert "starting the backend (docker compose up) failed" in out.stderr
    assert "47999" in out.stderr
    assert "Removing extension" in out.stdout
    assert_nothing_left(home, docker_client, "dockext-test_bad-compose", project)
    left = docker_client.volumes.list(filters={"label": f"com.docker.compose.project={project}"})
    assert [v.name for v in left] == [kept.name]
    kept.remove()


def test_backend_that_never_creates_its_socket_is_rolled_back(home, fixture_image, docker_client):
    ref = fixture_image("bad-no-socket")
    out = run_dockext("install", "-f", ref, home=home, check=False, env={"DOCKEXT_BACKEND_TIMEOUT": "4"})
    assert out.returncode == 1
    assert "did not expose its socket backend.sock within 4 s" in out.stderr
    assert "another kernel" not in out.stderr  # the engine is this machine's (tests/unit/test_backend_wait_hint.py)
    assert_nothing_left(
        home, docker_client, "dockext-test_bad-no-socket", "dockext-test_bad-no-socket-desktop-extension"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs takes root (CI runs as root)")
def test_a_full_disk_during_install_is_a_clear_error_and_leaves_nothing(tmp_path, fixture_image, docker_client):
    """R9: dockext's home on a 16 KiB tmpfs, an extension whose UI does not fit: an error a person can act on
    (no traceback), the install undone, and the same install working once there is room."""
    ref = fixture_image("conformance-v1")  # before the mount: a failure here must not leave it mounted
    key, project = "dockext-test_conformance-v1", "dockext-test_conformance-v1-desktop-extension"
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], check=True)
    try:
        home = full / "home"
        out = run_dockext("install", "-f", ref, home=home, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        assert "No space left on device (the operation was undone)" in out.stderr
        assert f"Free some space where dockext keeps its files ({home}" in out.stderr
        assert_nothing_left(home, docker_client, key, project)
        assert ls_json(home) == []
    finally:
        subprocess.run(["umount", str(full)], check=True)
    roomy = tmp_path / "roomy"
    run_dockext("install", "-f", ref, home=roomy)
    run_dockext("rm", ref, home=roomy)
    assert_nothing_left(roomy, docker_client, key, project)


def test_a_file_over_its_limit_is_refused_at_once_and_its_copy_container_goes(home, docker_client, tmp_path):
    """Found in a security review: reading stopped at the limit, but the engine's answer stayed open, so the
    engine waited to write the rest and the copy container's removal waited with it, for the client's 300 s,
    with the lock held. The answer is now closed as soon as reading stops."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with open(ctx / "metadata.json", "wb") as f:  # 64 MB: far more than the engine's socket buffers hold
        f.write(b'{"ui": {}, "x": "' + os.urandom(32 << 20).hex().encode() + b'"}')
    (ctx / "Dockerfile").write_text(
        'FROM dockext-test/pybase\nCOPY metadata.json /\nLABEL dockext.test=1 '
        'com.docker.desktop.extension.api.version=">= 0.3.3" org.opencontainers.image.title="Big"\n')
    ref = "dockext-test/big-metadata:1.0.0"
    docker_client.images.build(path=str(ctx), tag=ref, rm=True)
    try:
        out = run_dockext("install", "-f", ref, home=home, check=False, timeout=120)
        assert out.returncode == 1, out.stdout
        assert "exceeds the limit of 4194304 bytes" in out.stderr, out.stderr
        assert_nothing_left(home, docker_client, "dockext-test_big-metadata")  # its copy container included
    finally:
        docker_client.images.remove(ref, force=True)
