"""The socket-permission sidecar: the static helper, its image, and its compose service."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import docker.errors
import pytest

from dockext import errors, sockperm
from dockext.dockerhost import DockerHost
from dockext.engine import Engine
from tests.support.images import PYBASE, TEST_LABEL, ensure_pybase

UID, GID = 54321, 54322  # no such user: the helper must work with bare numbers
CONNECT = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"


# --- pure ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "amd64"), ("amd64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64")]
)
def test_binary_path_by_machine(machine, arch):
    path = sockperm.binary_path(machine)
    assert path.name == f"sockperm-linux-{arch}"
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    e_machine = int.from_bytes(header[18:20], "little")
    assert e_machine == {"amd64": 62, "arm64": 183}[arch]  # EM_X86_64, EM_AARCH64


def test_binary_path_default_is_this_machine():
    assert sockperm.binary_path() == sockperm.binary_path(os.uname().machine)


def test_binary_path_unknown_machine_is_a_clear_error():
    with pytest.raises(errors.DockextError, match="riscv64"):
        sockperm.binary_path("riscv64")


def test_service():
    svc = sockperm.service("dockext/sockperm:abc", 1000, 1001)
    assert svc == {
        "image": "dockext/sockperm:abc",
        "command": ["/run/guest-services", "1000", "1001"],
        "network_mode": "none",
        "restart": "always",
        "read_only": True,
        "cap_drop": ["ALL"],
        "cap_add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"],
        "labels": {"dockext.helper": "sockperm"},
    }
    # on an engine with --userns-remap it runs in the host's user namespace (tests/engine/test_userns_remap.py)
    assert sockperm.service("dockext/sockperm:abc", 1000, 1001, host_userns=True) == {**svc, "userns_mode": "host"}


def test_ensure_image_without_engine_is_engine_unavailable(tmp_path):
    with pytest.raises(errors.EngineUnavailable):
        sockperm.ensure_image(Engine(DockerHost(f"unix://{tmp_path}/no.sock")))


# --- against the engine -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image(docker_client):
    return sockperm.ensure_image(Engine())


@pytest.fixture
def gs_dir():
    """A guest-services dir that uid UID can traverse (pytest's tmp_path is under a 0700 dir)."""
    d = Path(tempfile.mkdtemp(prefix="dockext-gs-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def containers(docker_client):
    started = []
    yield started
    for c in started:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def run_helper(client, image, gs_dir, containers, command=None):
    svc = sockperm.service(image, UID, GID)
    container = client.containers.run(
        svc["image"],
        command or svc["command"],
        detach=True,
        network_mode=svc["network_mode"],
        read_only=svc["read_only"],
        cap_drop=svc["cap_drop"],
        cap_add=svc["cap_add"],
        labels={**svc["labels"], TEST_LABEL: "1"},
        volumes={str(gs_dir): {"bind": "/run/guest-services", "mode": "rw"}},
    )
    containers.append(container)
    return container


def bind_socket(path: Path, umask: int = 0o022) -> socket.socket:
    """A listening socket made as root backends make theirs (root, 0777 & ~umask)."""
    s = socket.socket(socket.AF_UNIX)
    old = os.umask(umask)
    try:
        s.bind(str(path))
    finally:
        os.umask(old)
    s.listen()
    return s


def connect_as_uid(path: Path) -> subprocess.CompletedProcess[str]:
    # Debian's python: the pyenv one under /root is not readable by other users
    return subprocess.run(
        ["/usr/bin/python3", "-c", CONNECT, str(path)],
        user=UID,
        group=GID,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_owned(path: Path, timeout: float = 6.0) -> float:
    t0 = time.monotonic()
    while True:
        st = path.lstat()
        if (st.st_uid, st.st_gid) == (UID, GID) and st.st_mode & 0o600 == 0o600:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"{path} still {st.st_uid}:{st.st_gid} {oct(st.st_mode)}"
        time.sleep(0.05)


@pytest.mark.engine
def test_image_is_built_once_and_labelled(docker_client, image):
    assert image.startswith(f"{sockperm.IMAGE_REPO}:") and len(image.split(":")[1]) == 12
    img = docker_client.images.get(image)
    assert img.labels["dockext.helper"] == "sockperm"
    assert img.attrs["Config"]["Entrypoint"] == ["/sockperm"]
    t0 = time.monotonic()
    assert sockperm.ensure_image(Engine()) == image
    assert time.monotonic() - t0 < 1
    assert docker_client.images.get(image).id == img.id


@pytest.mark.engine
def test_sockets_are_given_to_the_uid(docker_client, image, gs_dir, containers):
    # before the helper runs: a socket as backends leave them, a plain file, a symlink, a socket in a subdir
    early = bind_socket(gs_dir / "early.sock")
    (gs_dir / "plain.txt").write_text("not a socket")
    (gs_dir / "sub").mkdir()
    inner = bind_socket(gs_dir / "sub" / "inner.sock")
    (gs_dir / "link.sock").symlink_to("sub/inner.sock")
    sockets = [early, inner]
    try:
        refused = connect_as_uid(gs_dir / "early.sock")
        assert refused.returncode != 0 and "PermissionError" in refused.stderr, "the test would prove nothing"

        helper = run_helper(docker_client, image, gs_dir, containers)
        wait_owned(gs_dir / "early.sock")  # the initial scan

        # a socket created later, by root in another container (inotify)
        ensure_pybase(docker_client)
        code = (
            "import os, socket, time; os.umask(0o022); s = socket.socket(socket.AF_UNIX); "
            "s.bind('/run/guest-services/backend.sock'); s.listen(); time.sleep(600)"
        )
        backend = docker_client.containers.run(
            PYBASE,
            ["python3", "-c", code],
            detach=True,
            init=True,
            labels={TEST_LABEL: "1"},
            volumes={str(gs_dir): {"bind": "/run/guest-services", "mode": "rw"}},
        )
        containers.append(backend)
        deadline = time.monotonic() + 15
        while not (gs_dir / "backend.sock").exists():
            assert time.monotonic() < deadline, backend.logs().decode()
            time.sleep(0.05)
        assert wait_owned(gs_dir / "backend.sock") < 1.5, "inotify should beat the 2 s rescan"

        # a socket without any permission bits gets owner rw
        sockets.append(bind_socket(gs_dir / "closed.sock", umask=0o777))
        wait_owned(gs_dir / "closed.sock")
        assert stat.S_IMODE((gs_dir / "closed.sock").stat().st_mode) == 0o600

        for name in ("early.sock", "backend.sock", "closed.sock"):
            result = connect_as_uid(gs_dir / name)
            assert result.returncode == 0, f"{name}: {result.stderr}"

        # untouched: not sockets, or not in the dir itself
        st = (gs_dir / "plain.txt").stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
        st = (gs_dir / "link.sock").lstat()
        assert stat.S_ISLNK(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0)
        st = (gs_dir / "sub" / "inner.sock").stat()  # what the symlink points to: not followed
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
        st = (gs_dir / "sub").stat()
        assert (st.st_uid, st.st_gid) == (0, 0)

        assert helper.logs() == b"", "silent unless something fails"
        t0 = time.monotonic()
        helper.stop(timeout=10)
        assert time.monotonic() - t0 < 2, "PID 1 must exit on SIGTERM"
        helper.reload()
        assert helper.attrs["State"]["ExitCode"] == 0
    finally:
        for s in sockets:
            s.close()


@pytest.mark.engine
@pytest.mark.parametrize(
    "args",
    [["/run/guest-services", "x", "1"], ["/run/guest-services", "1"], ["/run/guest-services", "-1", "1"]],
)
def test_bad_arguments_exit_2(docker_client, image, gs_dir, containers, args):
    helper = run_helper(docker_client, image, gs_dir, containers, command=args)
    assert helper.wait(timeout=30)["StatusCode"] == 2
    assert b"usage: sockperm DIR UID GID" in helper.logs()


# --- sockperm clean: emptying a guest-services dir dockext cannot empty itself -------------------------------


@pytest.mark.engine
def test_clean_empties_the_dir_of_what_other_users_made_and_removes_links_as_links(docker_client, image, gs_dir):
    (gs_dir / "state" / "deep").mkdir(parents=True)
    (gs_dir / "state" / "deep" / "file").write_text("x")
    (gs_dir / "top").write_text("y")
    for path in (gs_dir / "state", gs_dir / "state" / "deep", gs_dir / "state" / "deep" / "file", gs_dir / "top"):
        os.chown(path, 4242, 4242)
    (gs_dir / "state").chmod(0o700)  # not even readable by others: DAC_OVERRIDE reads it
    (gs_dir / "root").symlink_to("/")  # followed, it would lead to the container's read-only root: exit 1
    (gs_dir / "dangling").symlink_to("/nonexistent")
    sock = bind_socket(gs_dir / "backend.sock")
    try:
        sockperm.clean(Engine(), str(gs_dir), owner="test")
    finally:
        sock.close()
    assert gs_dir.is_dir() and list(gs_dir.iterdir()) == []
    assert docker_client.containers.list(all=True, filters={"label": f"{sockperm.LABEL}=clean"}) == []


@pytest.mark.engine
def test_clean_says_what_it_left_with_the_backends_names_escaped(docker_client, image, gs_dir):
    forged = 'd\x1b[2K\rExtension "x" removed\n'  # a name that would rewrite the terminal's last line
    deepest = gs_dir / forged
    for _ in range(65):
        deepest = deepest / "d"
    deepest.mkdir(parents=True)
    (gs_dir / "other").write_text("gone")
    with pytest.raises(errors.EngineError, match="more than 64 directories deep") as info:
        sockperm.clean(Engine(), str(gs_dir), owner="test")
    assert "\\x1b[2K\\x0dExtension" in info.value.message, info.value.message
    assert not any(ord(c) < 0x20 for c in info.value.message), info.value.message
    assert sorted(p.name for p in gs_dir.iterdir()) == [forged]  # the rest went
    assert docker_client.containers.list(all=True, filters={"label": f"{sockperm.LABEL}=clean"}) == []


@pytest.mark.engine
def test_clean_of_a_directory_the_engine_does_not_see_makes_nothing(docker_client, image, tmp_path):
    """A remote engine would not see this host's directory: Docker's helper container fails to start rather
    than the engine making the directory (as root, on its own machine). (Podman makes it: dockext never runs the
    helper on a remote engine.)"""
    missing = Path(tempfile.mkdtemp(prefix="dockext-gs-", dir="/tmp")) / "not" / "there"
    try:
        with pytest.raises(errors.EngineError, match="cannot empty"):
            sockperm.clean(Engine(), str(missing), owner="test")
        assert not missing.parent.exists()
    finally:
        shutil.rmtree(missing.parent.parent)
    assert docker_client.containers.list(all=True, filters={"label": f"{sockperm.LABEL}=clean"}) == []
