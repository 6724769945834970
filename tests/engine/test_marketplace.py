"""`dockext marketplace` against the real local registry (127.0.0.1:5000, distribution 2.8.2).

The registry is shared by every test, so these tests push their images under a namespace of their own and only
ever list that namespace. They run dockext in the host's network namespace, where the registry listens (the test
session has a namespace of its own: tests/conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

pytestmark = pytest.mark.engine

REGISTRY = "127.0.0.1:5000"
NS = f"dockext-mkt-{secrets.token_hex(4)}"
_pushed: dict[tuple[str, str], str] = {}


def in_host_netns() -> list[str]:
    host_ns = os.environ.get("DOCKEXT_TEST_HOST_NETNS")
    return ["nsenter", f"--net={host_ns}"] if host_ns else []


def dockext(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI, as `run_dockext` runs it, but in the network namespace of the registry."""
    env = {**os.environ, "DOCKEXT_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run([*in_host_netns(), sys.executable, "-m", "dockext.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"dockext {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def host_python(code: str) -> str:
    return subprocess.run([*in_host_netns(), sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def table(stdout: str) -> list[list[str]]:
    """The rows of the IMAGE ... INSTALLED table, cells split on runs of spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("IMAGE "))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start:] if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def _cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    """After the module: the pushed manifests are deleted from the registry, and the local images go."""
    yield
    refs = [remote.removeprefix(f"{REGISTRY}/") for remote in _pushed.values()]
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    host_python(
        "import httpx\n"
        f"for ref in {refs!r}:\n"
        "    repo, _, tag = ref.rpartition(':')\n"
        f"    url = 'http://{REGISTRY}/v2/' + repo + '/manifests/'\n"
        f"    head = httpx.head(url + tag, headers={{'Accept': {accept!r}}})\n"
        "    if head.status_code == 200:\n"
        "        httpx.delete(url + head.headers['docker-content-digest'])\n"
    )
    for image in docker_client.api.images():  # (the list alone: the SDK's models inspect each, racing removals)
        for tag in image.get("RepoTags") or []:
            if f"{NS}/" in tag:
                with contextlib.suppress(docker.errors.APIError):
                    docker_client.images.remove(tag)


@pytest.fixture
def publish(
    fixture_image: Callable[..., str], push_fixture: Callable[[str], str], docker_client: docker.DockerClient
) -> Callable[[str, str], str]:
    """``publish(name, tag)``: fixture extension ``name`` at ``tag`` in the registry under NS (once per module);
    ``name`` "plain" is an image that is not an extension. Returns the registry ref."""

    def push(name: str, tag: str) -> str:
        if (name, tag) not in _pushed:
            if name == "plain":
                local = f"{NS}/plain:{tag}"
                fixture_image("vm-image")  # builds dockext-test/pybase, which has no extension label
                docker_client.images.get("dockext-test/pybase:latest").tag(f"{NS}/plain", tag)
            else:
                local = fixture_image(name, tag=tag, repo_prefix=NS)
            _pushed[(name, tag)] = push_fixture(local)
        return _pushed[(name, tag)]

    return push


@pytest.fixture
def published(publish: Callable[[str, str], str]) -> dict[str, str]:
    return {
        "ui1": publish("ui-only", "1.0.0"),
        "ui2": publish("ui-only", "2.0.0"),
        "vm": publish("vm-image", "1.0.0"),
        "plain": publish("plain", "1.0.0"),
    }


def test_a_registry_namespace_lists_its_extensions_at_their_greatest_version(tmp_path, published):
    home = tmp_path / "home"
    out = dockext("marketplace", "add", f"{REGISTRY}/{NS}", home=home)
    assert out.stdout.strip() == f"Added the registry source {REGISTRY}/{NS}."

    ls = dockext("marketplace", "ls", home=home)
    assert ls.stderr == ""
    assert f"  {REGISTRY}/{NS}  (registry)" in ls.stdout.splitlines()
    assert table(ls.stdout) == [
        ["IMAGE", "VERSION", "TITLE", "VENDOR", "INSTALLED"],
        [f"{REGISTRY}/{NS}/ui-only", "2.0.0", "UI Only", "dockext tests", "-"],
        [f"{REGISTRY}/{NS}/vm-image", "1.0.0", "VM Image", "dockext tests", "-"],
    ]  # the "plain" repository is no extension: not listed

    doc = json.loads(dockext("marketplace", "ls", "--format", "json", home=home).stdout)
    [ui] = [e for e in doc["extensions"] if e["image"] == f"{REGISTRY}/{NS}/ui-only"]
    assert ui["versions"] == ["2.0.0", "1.0.0"]
    assert ui["description"] == "dockext test fixture: a UI and nothing else"

    again = dockext("marketplace", "add", f"{REGISTRY}/{NS}/", home=home, check=False)
    assert again.returncode == 1
    assert f"Error: the marketplace source {REGISTRY}/{NS} is already there" in again.stderr


def test_a_source_that_cannot_be_reached_is_named_and_the_others_still_list(tmp_path, published):
    home = tmp_path / "home"
    port = int(host_python("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
                           "print(s.getsockname()[1])"))
    dockext("marketplace", "add", f"127.0.0.1:{port}", home=home)
    dockext("marketplace", "add", f"{REGISTRY}/{NS}", home=home)
    ls = dockext("marketplace", "ls", home=home)
    assert ls.returncode == 0
    assert ls.stderr.strip() == f"Error: 127.0.0.1:{port}: cannot reach 127.0.0.1:{port}: connection refused"
    assert [row[:2] for row in table(ls.stdout)[1:]] == [
        [f"{REGISTRY}/{NS}/ui-only", "2.0.0"],
        [f"{REGISTRY}/{NS}/vm-image", "1.0.0"],
    ]

    removed = dockext("marketplace", "rm", f"{REGISTRY}/{NS}", home=home)
    assert removed.stdout.strip() == f"Removed the marketplace source {REGISTRY}/{NS}."
    alone = dockext("marketplace", "ls", home=home, check=False)
    assert alone.returncode == 1  # every source failed
    assert table(alone.stdout) == [["IMAGE", "VERSION", "TITLE", "VENDOR", "INSTALLED"]]


def test_only_listed_installs_what_the_list_pins_and_refuses_the_rest(tmp_path, published, docker_client):
    home = tmp_path / "home"
    listing = tmp_path / "extensions.txt"
    listing.write_text(f"# allowed here\n{REGISTRY}/{NS}/ui-only:1.0.0\n\n")
    out = dockext("marketplace", "add", "--list", str(listing), home=home)
    assert out.stdout.strip() == f"Added the list {listing} (1 image(s))."
    ls = dockext("marketplace", "ls", home=home)
    assert table(ls.stdout)[1:] == [[f"{REGISTRY}/{NS}/ui-only", "1.0.0", "UI Only", "dockext tests", "-"]]

    on = dockext("marketplace", "only-listed", "on", home=home)
    assert "Only the extensions the marketplace sources list can be installed" in on.stdout
    refused = dockext("install", "-f", published["vm"], home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"Error: {published['vm']} is not listed by the marketplace sources ({listing}), and only listed "
        "extensions may be installed",
        "Install a listed extension (dockext marketplace ls), add a source that lists it (dockext marketplace add), "
        "turn the restriction off with `dockext marketplace only-listed off`, or ask your administrator.",
    ]
    other_version = dockext("install", "-f", published["ui2"], home=home, check=False)
    assert other_version.returncode == 1
    assert "(the listed versions: 1.0.0)" in other_version.stderr
    assert not (home / "extensions").exists() or list((home / "extensions").iterdir()) == []

    installed = dockext("install", "-f", published["ui1"], home=home)
    try:
        assert "installed successfully" in installed.stdout
        ls = dockext("marketplace", "ls", home=home)
        assert table(ls.stdout)[1:] == [[f"{REGISTRY}/{NS}/ui-only", "1.0.0", "UI Only", "dockext tests", "1.0.0"]]
        update = dockext("update", "-f", published["ui2"], home=home, check=False)
        assert update.returncode == 1 and "is not listed by the marketplace sources" in update.stderr

        off = dockext("marketplace", "only-listed", "off", home=home)
        assert off.stdout.strip() == "Any extension can be installed now."
        assert "installed successfully" in dockext("install", "-f", published["vm"], home=home).stdout
    finally:
        for image in (f"{REGISTRY}/{NS}/ui-only", f"{REGISTRY}/{NS}/vm-image"):
            dockext("rm", image, home=home, check=False)
    assert json.loads(dockext("ls", "--format", "json", home=home).stdout) == []
