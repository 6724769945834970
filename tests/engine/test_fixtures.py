"""Smoke tests of the fixture extensions themselves: images, labels, files, and the backends' behaviour.

Other tests rely on what is checked here, so a broken fixture fails here first, with a plain message.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from tests.support.images import (
    FIXTURES_DIR,
    PYBASE,
    TEST_LABEL,
    build_fixture,
    fixture_names,
    push_fixture,
    read_image_path,
)

pytestmark = pytest.mark.engine

GOOD = ["ui-only", "vm-image", "compose", "host-binary", "streams"]
BAD = [
    "bad-no-metadata",
    "bad-json",
    "bad-missing-root",
    "bad-root-symlink",
    "bad-binary-dotdot",
    "bad-compose",
    "bad-no-socket",
]


# UI compiled by tsc from tests/conformance (tests/support/images.py); exercised by tests/e2e/test_conformance.py
COMPILED = ["conformance-v1", "conformance-v0"]
# a backend that cannot start over an old socket file, as Node's (tests/e2e/test_reliability.py, R13); a backend
# that also publishes a TCP port (tests/e2e/test_permissions.py, the system grant)
OTHER = ["stale-socket", "ports"]


def test_fixture_list_is_complete():
    assert fixture_names() == sorted(GOOD + BAD + COMPILED + OTHER)


@pytest.mark.parametrize("name", GOOD + BAD + COMPILED + OTHER)
def test_fixture_image_has_the_standard_labels(docker_client, fixture_image, name):
    labels = docker_client.images.get(fixture_image(name)).labels
    assert labels["org.opencontainers.image.title"]
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.vendor"] == "dockext tests"
    assert labels["com.docker.desktop.extension.api.version"] == ">= 0.3.3"
    assert labels["com.docker.desktop.extension.icon"].startswith("http://127.0.0.1/")
    assert json.loads(labels["com.docker.extension.screenshots"]) == []


def metadata(client, ref):
    (_, data), *_ = read_image_path(client, ref, "/metadata.json").values()
    return json.loads(data)


@pytest.mark.parametrize("name", GOOD)
def test_good_fixture_has_metadata_ui_and_icon(docker_client, fixture_image, name):
    ref = fixture_image(name)
    meta = metadata(docker_client, ref)
    assert meta == json.loads((FIXTURES_DIR / name / "metadata.json").read_text())
    tab = meta["ui"]["dashboard-tab"]
    root = "/" + tab["root"].lstrip("/")
    ui = read_image_path(docker_client, ref, root)
    names = {n.split("/", 1)[1] for n in ui if "/" in n}
    assert {tab["src"], "app.js", "style.css"} <= names
    html = ui[f"ui/{tab['src']}"][1].decode()
    assert '<script src="app.js"></script>' in html
    assert 'href="style.css"' in html
    icon = read_image_path(docker_client, ref, "/" + meta["icon"].lstrip("/"))
    assert next(iter(icon.values()))[1].startswith(b"<svg")


def test_host_binary_fixture_ships_executables_for_three_oses(docker_client, fixture_image, tmp_path):
    ref = fixture_image("host-binary")
    (binaries,) = metadata(docker_client, ref)["host"]["binaries"]
    for os_name, expected in [("linux", "hello.sh"), ("darwin", "hello.sh"), ("windows", "hello.cmd")]:
        ((path,),) = ([b["path"] for b in binaries[os_name]],)
        assert path == f"/{os_name}/{expected}"
        ((info, data),) = read_image_path(docker_client, ref, path).values()
        assert info.mode & 0o111 == 0o111, f"{path} is not executable in the image"
    # the Linux one, copied out, runs on this host as the page expects
    ((info, data),) = read_image_path(docker_client, ref, "/linux/hello.sh").values()
    script = tmp_path / "hello.sh"
    script.write_bytes(data)
    script.chmod(0o755)
    # as host.cli.exec("hello.sh", ["John Doe"]) runs it after joining and splitting: two arguments
    out = subprocess.run([str(script), "John", "Doe"], capture_output=True, text=True, check=True)
    assert out.stdout == "Hello, John! (2 args)\n"


def test_compose_fixture_ships_its_compose_file(docker_client, fixture_image):
    ref = fixture_image("compose")
    meta = metadata(docker_client, ref)
    assert meta["ui"]["dashboard-tab"]["root"] == "ui"  # relative on purpose
    assert meta["ui"]["dashboard-tab"]["backend"] == {"socket": "compose.sock"}
    ((_, data),) = read_image_path(docker_client, ref, "/docker-compose.yaml").values()
    text = data.decode()
    assert text.index("  server:") < text.index("  helper:")  # server is the first service
    assert "/var/run/docker.sock.raw:/var/run/docker.sock" in text


def test_bad_fixtures_are_bad_in_the_intended_way(docker_client, fixture_image):
    with pytest.raises(docker.errors.NotFound):
        read_image_path(docker_client, fixture_image("bad-no-metadata"), "/metadata.json")

    ((_, data),) = read_image_path(docker_client, fixture_image("bad-json"), "/metadata.json").values()
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)

    ref = fixture_image("bad-missing-root")
    assert metadata(docker_client, ref)["ui"]["dashboard-tab"]["root"] == "/ui"
    with pytest.raises(docker.errors.NotFound):
        read_image_path(docker_client, ref, "/ui")

    ref = fixture_image("bad-root-symlink")
    assert metadata(docker_client, ref)["ui"]["dashboard-tab"]["root"] == "/ui"
    ((info, _),) = read_image_path(docker_client, ref, "/ui").values()
    assert info.issym() and info.linkname == "/etc"

    ref = fixture_image("bad-binary-dotdot")
    (binaries,) = metadata(docker_client, ref)["host"]["binaries"]
    assert binaries == {"linux": [{"path": "/linux/../../etc/passwd"}]}
    assert read_image_path(docker_client, ref, "/etc/passwd")  # the bait is there

    ref = fixture_image("bad-compose")
    ((_, data),) = read_image_path(docker_client, ref, "/docker-compose.yaml").values()
    assert b'"127.0.0.1:47999:8080"' in data

    ref = fixture_image("bad-no-socket")
    assert metadata(docker_client, ref)["vm"]["exposes"]["socket"] == "backend.sock"


def test_builds_are_cached_and_tags_are_distinct_images(docker_client, fixture_image):
    ref = fixture_image("ui-only")
    image_id = docker_client.images.get(ref).id
    t0 = time.monotonic()
    assert build_fixture(docker_client, "ui-only") == ref
    assert time.monotonic() - t0 < 2
    assert docker_client.images.get(ref).id == image_id
    ref2 = fixture_image("ui-only", tag="2.0.0")
    assert ref2 == "dockext-test/ui-only:2.0.0"
    assert docker_client.images.get(ref2).id != image_id
    assert docker_client.images.get(ref2).labels["org.opencontainers.image.title"] == "UI Only"


def test_push_fixture_leaves_only_the_registry_copy(docker_client, fixture_image):
    ref = fixture_image("ui-only", repo_prefix="dockext-test-push")
    remote = push_fixture(docker_client, ref)
    assert remote == f"127.0.0.1:5000/{ref}"
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(remote)
    data = docker_client.images.get_registry_data(remote)  # the registry has it
    assert data.id.startswith("sha256:")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("name", GOOD)
def test_page_script_parses(name):
    subprocess.run(["node", "--check", str(FIXTURES_DIR / name / "ui" / "app.js")], check=True)


# --- the backends, run by hand (no dockext, no compose) -----------------------------------------------------


@pytest.fixture
def gs_dir(tmp_path):
    d = tmp_path / "gs"
    d.mkdir()
    return d


@pytest.fixture
def network(docker_client):
    net = docker_client.networks.create(f"dockext-test-{uuid.uuid4().hex[:8]}", labels={TEST_LABEL: "1"})
    yield net
    net.remove()


@pytest.fixture
def run(docker_client):
    """run(image, **kwargs) -> a started container, removed (forced) at the end of the test."""
    started = []

    def start(image, **kwargs):
        labels = {TEST_LABEL: "1", **kwargs.pop("labels", {})}
        container = docker_client.containers.run(image, detach=True, init=True, labels=labels, **kwargs)
        started.append(container)
        return container

    yield start
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


@contextlib.contextmanager
def client_for(socket_path: Path, container, timeout: float = 15) -> Iterator[httpx.Client]:
    """An HTTP client on the backend's socket, once it answers."""
    deadline = time.monotonic() + timeout
    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://backend"
    ) as client:
        while True:
            try:
                client.get("/")
                break
            except httpx.TransportError:
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    raise AssertionError(
                        f"no backend on {socket_path}: {container.logs().decode()}"
                    ) from None
                time.sleep(0.1)
        yield client


def test_vm_image_backend(docker_client, fixture_image, run, gs_dir):
    ref = fixture_image("vm-image")
    container = run(ref, volumes={str(gs_dir): {"bind": "/run/guest-services", "mode": "rw"}})
    with client_for(gs_dir / "backend.sock", container) as http:
        assert http.get("/hello").json() == {"message": "hello from vm-image"}
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = http.request(method, "/echo", json={"n": 42})
            assert r.json() == {"received": {"n": 42}, "method": method}
        r = http.get("/missing")
        assert (r.status_code, r.headers["content-type"], r.text) == (
            404,
            "text/plain; charset=utf-8",
            "no such thing",
        )
        assert http.get("/query?x=1").json() == {"query": "x=1"}
    st = (gs_dir / "backend.sock").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o755)  # as real backends leave it: the reason for sockperm
    code, out = container.exec_run(["cat", "/app/greeting.txt"])
    assert (code, out) == (0, b"hello from inside the backend\n")
    t0 = time.monotonic()
    container.stop(timeout=10)
    assert time.monotonic() - t0 < 3, "init: true should make stop fast"


def test_vm_image_backend_replaces_a_stale_socket(fixture_image, run, gs_dir):
    (gs_dir / "backend.sock").write_text("stale")
    container = run(
        fixture_image("vm-image"), volumes={str(gs_dir): {"bind": "/run/guest-services", "mode": "rw"}}
    )
    with client_for(gs_dir / "backend.sock", container) as http:
        assert http.get("/hello").status_code == 200


def test_compose_backend(docker_client, fixture_image, network, run, gs_dir):
    """The two services of the compose fixture, wired as compose would: network, DNS name, sockets."""
    ref = fixture_image("compose")
    run(
        ref,
        command=["python3", "-u", "/app/helper.py"],
        hostname="compose-helper",
        network=network.name,
        networking_config={network.name: docker_client.api.create_endpoint_config(aliases=["helper"])},
    )
    api = run(
        ref,
        hostname="compose-api",
        network=network.name,
        environment={"SOCKET": "/run/guest-services/compose.sock"},
        volumes={
            str(gs_dir): {"bind": "/run/guest-services", "mode": "rw"},
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
        },
    )
    with client_for(gs_dir / "compose.sock", api) as http:
        assert http.get("/engine").json() == {"apiVersion": docker_client.version()["ApiVersion"]}
        deadline = time.monotonic() + 10
        while (r := http.get("/peer")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the helper may still be starting
        assert r.json() == {"peer": "helper says hi"}, r.text
        assert http.get("/whoami").json() == {"hostname": "compose-api"}
        assert http.get("/nope").status_code == 404
    assert api.exec_run(["hostname"]).output == b"compose-api\n"


def test_bad_no_socket_backend_listens_elsewhere(fixture_image, run, gs_dir):
    container = run(
        fixture_image("bad-no-socket"), volumes={str(gs_dir): {"bind": "/run/guest-services", "mode": "rw"}}
    )
    deadline = time.monotonic() + 10
    while not (gs_dir / "other.sock").exists():
        assert time.monotonic() < deadline, container.logs().decode()
        time.sleep(0.1)
    assert not (gs_dir / "backend.sock").exists()


def test_pybase_has_python_and_busybox(docker_client):
    out = docker_client.containers.run(
        PYBASE,
        [
            "sh",
            "-c",
            "python3 -c 'import ssl, sqlite3, json, http.server; print(1)' && hostname >/dev/null && echo ok",
        ],
        remove=True,
        labels={TEST_LABEL: "1"},
    )
    assert out == b"1\nok\n"
