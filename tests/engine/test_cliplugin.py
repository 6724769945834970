"""``docker extension ...`` through the real Docker CLI, with dockext installed as its plugin."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from dockext import cliplugin
from tests.support.cli import run_dockext

pytestmark = pytest.mark.engine


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A user with their own Docker CLI config dir and dockext home (what `docker` passes on to the plugin)."""
    return {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config"), "DOCKEXT_HOME": str(tmp_path / "home"),
            "NO_COLOR": "1", "COLUMNS": "200"}


def docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def test_docker_extension_installs_lists_updates_and_removes_through_dockext(env, fixture_image,
                                                                           docker_client) -> None:
    home = Path(env["DOCKEXT_HOME"])
    run_dockext("plugin", "install", home=home, env=env)
    plugin = Path(env["DOCKER_CONFIG"]) / "cli-plugins" / "docker-extension"
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755

    listed = docker(env, "--help")  # the CLI asked the plugin for its metadata and accepted it
    assert any(line.split()[:1] == ["extension*"] and "Manages Docker extensions (dockext)" in line
               for line in listed.stdout.splitlines()), listed.stdout

    # an extension with a backend: the Docker CLI's DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND, passed on to
    # docker-compose, made every `compose up` fail ("unknown shorthand flag: 'p' in -p")
    ref = fixture_image("vm-image")
    installed = docker(env, "extension", "install", "-f", ref)
    assert installed.returncode == 0, installed.stderr
    assert "installed successfully" in installed.stdout + installed.stderr
    ls = docker(env, "extension", "ls")
    assert ls.returncode == 0 and ls.stdout.split("\n")[0].split() == ["ID", "PROVIDER", "VERSION", "UI", "VM", "HOST"]
    assert any(line.startswith("dockext-test/vm-image ") and "Running(1)" in line
               for line in ls.stdout.splitlines()), ls.stdout
    assert json.loads(run_dockext("ls", "--format", "json", home=home, env=env).stdout)[0]["image"] == ref

    newer = fixture_image("vm-image", tag="2.0.0")
    updated = docker(env, "extension", "update", "-f", newer)
    assert updated.returncode == 0, updated.stderr
    assert f'Extension "VM Image" updated to {newer}' in updated.stdout
    assert json.loads(run_dockext("ls", "--format", "json", home=home, env=env).stdout)[0]["version"] == "2.0.0"

    removed = docker(env, "extension", "rm", ref)
    assert removed.returncode == 0, removed.stderr
    assert "dockext-test/vm-image" not in docker(env, "extension", "ls").stdout
    assert docker_client.containers.list(all=True, filters={"label": "com.docker.compose.project="
                                                            "dockext-test_vm-image-desktop-extension"}) == []

    # docker's own global options reach dockext: -H selects the engine, so does --context (a missing one is named;
    # contexts that exist: tests/e2e/test_remote_engine.py)
    elsewhere = docker(env, "-H", "unix:///nonexistent/docker.sock", "extension", "install", "-f", ref)
    assert elsewhere.returncode == 1 and "unix:///nonexistent/docker.sock" in elsewhere.stderr, elsewhere.stderr
    context = docker(env, "--context", "remote", "extension", "ls")
    assert context.returncode == 1 and "context 'remote' does not exist" in context.stderr, context.stderr

    version = docker(env, "extension", "version")
    assert version.stdout.startswith("Client Version: v") and "Server API Version: 0.4.2" in version.stdout
    unknown = docker(env, "extension", "nope")
    assert unknown.returncode == 2 and "No such command 'nope'" in unknown.stderr


def test_another_programs_plugin_is_never_replaced_silently(env, tmp_path) -> None:
    home = Path(env["DOCKEXT_HOME"])
    plugin = Path(env["DOCKER_CONFIG"]) / "cli-plugins" / "docker-extension"
    plugin.parent.mkdir(parents=True)
    foreign = "#!/bin/sh\necho Docker Desktop's extension CLI\n"
    plugin.write_text(foreign)
    refused = run_dockext("plugin", "install", home=home, env=env, check=False)
    assert refused.returncode == 1 and "was not written by dockext" in refused.stderr
    assert "--force" in refused.stderr  # says how to replace it
    assert run_dockext("plugin", "rm", home=home, env=env, check=False).returncode == 1
    assert plugin.read_text() == foreign  # untouched either way

    run_dockext("plugin", "install", "--force", home=home, env=env)
    assert cliplugin.MARKER in plugin.read_text()
    run_dockext("plugin", "rm", home=home, env=env)
    assert not plugin.exists()
    assert "No docker extension plugin" in run_dockext("plugin", "rm", home=home, env=env).stdout
