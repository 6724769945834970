"""dockext as an ordinary user, with a backend that keeps files of its own in ``/run/guest-services``.

A backend runs as root, so a directory it makes there is ``root 0755``, and the files in it are root's: dockext,
as an ordinary user, cannot delete them. Every update of such an extension failed, and so did the rollback
("[Errno 17] File exists: '<home>/gs/<key>'", then "restoring ... failed too"), which left it broken; ``rm`` left
the directory behind. The helper now empties what dockext cannot (``sockperm clean``, in a one-off container).
"""

from __future__ import annotations

import grp
import io
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from dockext.paths import Layout
from tests.support.images import TEST_LABEL
from tests.support.unpriv import ensure_unprivileged

pytestmark = pytest.mark.engine
REPO = Path(__file__).resolve().parents[2]
REPO_NAME = "dockext-gsfiles/vm-image"
KEY = "dockext-gsfiles_vm-image"
# the vm-image backend, after making a directory of its own with a file in it
CMD = '["sh", "-c", "mkdir -p /run/guest-services/state && date > /run/guest-services/state/started && ' \
      'exec python3 -u /app/server.py"]'


@pytest.fixture(scope="module")
def versions(fixture_image, docker_client: docker.DockerClient):
    base = fixture_image("vm-image")
    refs = []
    for version in ("1.0.0", "2.0.0"):
        dockerfile = f'FROM {base}\nCMD {CMD}\nLABEL {TEST_LABEL}=1 version={version}\n'.encode()
        ref = f"{REPO_NAME}:{version}"
        docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=ref, rm=True)
        refs.append(ref)
    return refs


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def user_dockext() -> Iterator[tuple[Path, Run]]:
    """A dockext home of the ordinary user (removed afterwards), and ``run(*args)``: dockext as that user."""
    user = ensure_unprivileged(REPO)
    home = user.home / f"gsfiles-{secrets.token_hex(4)}"
    home.mkdir()
    os.chown(home, user.uid, user.gid)
    env = {"HOME": str(user.home), "DOCKEXT_HOME": str(home), "PATH": os.environ["PATH"], "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(user.dockext), *args], env=env, capture_output=True, text=True, timeout=300,
                              check=False, user=user.uid, group=user.gid,
                              extra_groups=[grp.getgrnam("docker").gr_gid])

    try:
        yield home, run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_an_ordinary_user_updates_and_removes_a_backend_that_keeps_root_files(versions, docker_client, user_dockext):
    home, as_user = user_dockext
    v1, v2 = versions
    try:
        out = as_user("install", "-f", v1)
        assert out.returncode == 0, out.stdout + out.stderr
        gs_key = json.loads((home / "extensions" / KEY / "extension.json").read_text())["vm"]["gs_key"]
        state = home / "gs" / gs_key / "state"
        assert state.stat().st_uid == 0 and (state / "started").stat().st_uid == 0  # the backend's, as root
        (state / "left-by-1.0.0").write_text("")

        out = as_user("update", "-f", v2)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f'Extension "VM Image" updated to {v2}' in out.stdout
        assert "Could not empty" not in out.stdout
        # a fresh directory, as Docker Desktop gives a backend at each start: what the old one left is gone
        assert sorted(p.name for p in state.iterdir()) == ["started"]
        ls = as_user("ls")
        assert "Running(1)" in ls.stdout, ls.stdout + ls.stderr

        out = as_user("rm", v2)
        assert out.returncode == 0, out.stdout + out.stderr
        assert list((home / "gs").iterdir()) == []
        assert docker_client.containers.list(all=True, filters={"label": "dockext.helper=clean"}) == []
    finally:
        as_user("rm", "--forget", KEY)


def test_forgetting_such_an_extension_leaves_its_running_backends_files_and_says_so(versions, docker_client,
                                                                                   user_dockext):
    """`rm --forget` leaves the backend where it runs (on another engine, as a rule): its files are not the
    helper's to empty, and what the user cannot remove is named. Once no container mounts it, the directory goes
    at the next recovery."""
    home, as_user = user_dockext
    project = f"{KEY}-desktop-extension"
    try:
        out = as_user("install", "-f", versions[0])
        assert out.returncode == 0, out.stdout + out.stderr
        out = as_user("rm", "--forget", KEY)
        assert out.returncode == 0, out.stdout + out.stderr
        [state] = (home / "gs").glob("*/state")
        assert f"Left {state.parent}: its backend made files there as another user" in out.stdout, out.stdout
        assert (state / "started").is_file()  # the running backend's file, untouched
        running = docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
        assert sorted(c.labels["com.docker.compose.service"] for c in running) == ["dockext-sockperm", "service"]

        # a clean container of this home that a killed dockext left behind
        owner = Layout(home).owner
        left = docker_client.containers.create(versions[0], labels={"dockext.copy": owner, TEST_LABEL: "1"})
        # installed again, the extension takes over its backend (in a new directory), and the next command's
        # recovery removes the old directory, no longer mounted, with the helper, and the left container
        out = as_user("install", "-f", versions[0])
        assert out.returncode == 0, out.stdout + out.stderr
        assert state.parent.exists()  # still mounted while the install began: left then
        out = as_user("rm", versions[0])
        assert out.returncode == 0, out.stdout + out.stderr
        assert list((home / "gs").iterdir()) == []
        with pytest.raises(docker.errors.NotFound):
            left.reload()
    finally:
        for container in docker_client.containers.list(all=True,
                                                       filters={"label": f"com.docker.compose.project={project}"}):
            container.remove(force=True)
        for network in docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"}):
            network.remove()
