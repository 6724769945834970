"""Registries that ask for a login: the Marketplace lists them, and extensions install from them, with the login
``docker login`` saved (in config.json, as an identity token, or in a credential helper); without one, or with a
wrong one, every command says so and how to log in. And registries the engine takes as insecure (loopback ones,
daemon.json's ``insecure-registries``), which dockext reads as the engine does.

Real parts: the distribution registry (the one on 127.0.0.1:5000, started again on another loopback port behind
htpasswd or token auth, tests/support/authregistry.py), the real ``docker login`` and ``docker push``, the real
engine pulling for ``dockext install``. Each test's Docker CLI configuration is a directory of its own
(``DOCKER_CONFIG``), as ``docker --config`` gives one."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket as socket_module
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from dockext.engine import Engine
from tests.support.authregistry import PASSWORD, USER, AuthRegistry, auth_registry
from tests.support.cli import run_dockext
from tests.support.extraengine import engine_process

pytestmark = pytest.mark.engine

NS = "acme"


def docker_cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "--config", str(config), *args], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)


def login(config: Path, registry: AuthRegistry) -> subprocess.CompletedProcess[str]:
    return docker_cli(config, "login", "-u", USER, "--password-stdin", registry.address, stdin=PASSWORD + "\n")


@pytest.fixture(scope="module", params=["basic", "token"])
def private(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            fixture_image: Callable[..., str],
            docker_client: docker.DockerClient) -> Iterator[tuple[AuthRegistry, str]]:
    """A registry of ``kind`` (htpasswd or token auth) holding the ui-only fixture as acme/ui-only:1.0.0."""
    directory = tmp_path_factory.mktemp(f"registry-{request.param}")
    with auth_registry(directory, request.param) as registry:
        config = directory / "pusher"
        done = login(config, registry)
        assert done.returncode == 0, done.stderr
        ref = f"{registry.address}/{NS}/ui-only:1.0.0"
        docker_client.images.get(fixture_image("ui-only")).tag(ref)
        pushed = docker_cli(config, "push", ref)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        docker_client.images.remove(ref)  # the tag only: an install has to pull
        yield registry, ref


@pytest.fixture
def cleanup(docker_client: docker.DockerClient, private: tuple[AuthRegistry, str]) -> Iterator[None]:
    """The pulled image goes after each test (the fixture has no backend: nothing else is left)."""
    yield
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(private[1])


def dockext(*args: str, home: Path, config: Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_dockext(*args, home=home, check=check, env={"DOCKER_CONFIG": str(config), **(env or {})})


def listed(home: Path, config: Path, env: dict[str, str] | None = None) -> tuple[list[dict[str, object]], str]:
    """What ``marketplace ls`` lists, and what it says on stderr (exit 1 when a source failed: checked)."""
    out = dockext("marketplace", "ls", "--format", "json", home=home, config=config, env=env, check=False)
    assert out.returncode == (1 if out.stderr else 0), out.stderr
    return json.loads(out.stdout)["extensions"], out.stderr


def test_without_a_login_the_source_and_the_install_say_how_to_log_in(tmp_path, private, cleanup):
    registry, ref = private
    home, config = tmp_path / "home", tmp_path / "docker"
    config.mkdir()
    dockext("marketplace", "add", f"{registry.address}/{NS}", home=home, config=config)

    entries, errors = listed(home, config)
    assert entries == []
    if registry.kind == "basic":
        assert f"{registry.address} asks for a login to read the catalog (Basic)" in errors
    else:  # an anonymous token is granted, and then nothing with it
        assert f"{registry.address} refused anonymous access to the catalog (401)" in errors
    assert f"docker login {registry.address}" in errors

    failed = dockext("install", ref, home=home, config=config, check=False)
    assert failed.returncode == 1
    assert f"cannot pull {ref}" in failed.stderr
    assert f"{registry.address} needs a login: docker login {registry.address}" in failed.stderr
    assert "ui-only" not in dockext("ls", home=home, config=config).stdout


def test_with_the_login_docker_saved_it_lists_and_installs(tmp_path, private, cleanup, docker_client):
    registry, ref = private
    home, config = tmp_path / "home", tmp_path / "docker"
    assert login(config, registry).returncode == 0
    saved = json.loads((config / "config.json").read_text())["auths"][registry.address]
    if registry.kind == "token":  # as with Docker Hub: the CLI keeps an identity token, not the password
        assert saved["identitytoken"]
        assert base64.b64decode(saved["auth"]).decode() == f"{USER}:"
    else:
        assert set(saved) == {"auth"}
    dockext("marketplace", "add", f"{registry.address}/{NS}", home=home, config=config)

    entries, errors = listed(home, config)
    assert errors == ""
    assert [(e["image"], e["version"], e["title"]) for e in entries] == [
        (f"{registry.address}/{NS}/ui-only", "1.0.0", "UI Only")]
    if registry.kind == "token":  # dockext traded the identity token for its tokens, as the engine does
        ours = [r for r in registry.token_requests() if r.get("client_id") == "dockext"]
        assert ours and all(r["grant"] == "refresh_token" and r["granted"] for r in ours)
        assert {"registry:catalog:*", f"repository:{NS}/ui-only:pull"} <= {s for r in ours for s in r["scopes"]}

    done = dockext("install", ref, home=home, config=config)
    assert 'Extension "UI Only" installed successfully' in done.stdout
    [row] = [line for line in dockext("ls", home=home, config=config).stdout.splitlines() if "ui-only" in line]
    assert row.split()[0] == f"{registry.address}/{NS}/ui-only"
    dockext("rm", ref, home=home, config=config)

    # the same through the Docker CLI plugin, the configuration given as `docker --config DIR`
    plugin_config = tmp_path / "plugin-config"
    assert login(plugin_config, registry).returncode == 0
    run_dockext("plugin", "install", home=home, env={"DOCKER_CONFIG": str(plugin_config)})
    docker_client.images.remove(ref)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    installed = subprocess.run(["docker", "--config", str(plugin_config), "extension", "install", "-f", ref],
                               capture_output=True, text=True, timeout=300, check=False,
                               env={**env, "DOCKEXT_HOME": str(home), "NO_COLOR": "1"})
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert 'Extension "UI Only" installed successfully' in installed.stdout + installed.stderr
    dockext("rm", ref, home=home, config=config)


def test_a_wrong_saved_login_is_named_as_refused(tmp_path, private, cleanup):
    registry, ref = private
    home, config = tmp_path / "home", tmp_path / "docker"
    config.mkdir()
    if registry.kind == "token":  # an identity token the token service does not know (revoked, say)
        entry = {"identitytoken": "revoked-" + PASSWORD}
    else:
        entry = {"auth": base64.b64encode(f"{USER}:not-{PASSWORD}".encode()).decode()}
    (config / "config.json").write_text(json.dumps({"auths": {registry.address: entry}}))
    dockext("marketplace", "add", f"{registry.address}/{NS}", home=home, config=config)
    entries, errors = listed(home, config)
    assert entries == []
    where = config / "config.json"
    if registry.kind == "token":
        assert f"the token service of {registry.address} refused the saved identity token (from {where}): 401" in errors
    else:
        assert f'{registry.address} refused the login of "{USER}" (from {where}) access to the catalog (401)' in errors
    assert "Log in again" in errors
    assert PASSWORD not in errors

    failed = dockext("install", ref, home=home, config=config, check=False)
    assert failed.returncode == 1
    assert f"cannot pull {ref}" in failed.stderr
    assert f"{registry.address} refused " in failed.stderr and f"(from {where})" in failed.stderr


def test_a_login_kept_by_a_credential_helper_is_used_and_a_missing_helper_is_named(tmp_path, private, cleanup):
    registry, ref = private
    home, config, bin_dir = tmp_path / "home", tmp_path / "docker", tmp_path / "bin"
    config.mkdir()
    bin_dir.mkdir()
    if registry.kind == "token":  # what `docker login` gave: the helper keeps it as Docker's does
        scratch = tmp_path / "scratch"
        assert login(scratch, registry).returncode == 0
        username, secret = "<token>", json.loads((scratch / "config.json").read_text())["auths"][
            registry.address]["identitytoken"]
    else:
        username, secret = USER, PASSWORD
    asked = tmp_path / "asked"
    helper = bin_dir / "docker-credential-dockexttest"
    helper.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
echo "$server" >> {asked}
if [ "$server" = "{registry.address}" ]; then
  printf '{{"ServerURL":"%s","Username":"{username}","Secret":"{secret}"}}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
""")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    (config / "config.json").write_text(json.dumps({"credHelpers": {registry.address: "dockexttest"}}))
    path = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    dockext("marketplace", "add", f"{registry.address}/{NS}", home=home, config=config)

    entries, errors = listed(home, config, env=path)
    assert errors == ""
    assert [e["image"] for e in entries] == [f"{registry.address}/{NS}/ui-only"]
    assert registry.address in asked.read_text().split()

    done = dockext("install", ref, home=home, config=config, env=path)  # the engine's pull: the same helper
    assert 'Extension "UI Only" installed successfully' in done.stdout
    dockext("rm", ref, home=home, config=config, env=path)

    entries, errors = listed(home, config)  # the helper is not on PATH any more
    assert entries == []
    assert f"the login saved for {registry.address} cannot be read from its credential helper" in errors
    assert "docker-credential-dockexttest" in errors


def test_a_loopback_registry_in_https_with_an_untrusted_certificate_is_read_and_pulled(
        tmp_path, fixture_image, docker_client):
    """Loopback registries are insecure for the engine (https unverified first, then http): dockext reads them the
    same way, so a registry serving only TLS, with a certificate nothing trusts, lists and installs (the one on
    127.0.0.1:5000, in plain http, is the other half, in every Marketplace test)."""
    with auth_registry(tmp_path / "registry", "basic", tls=True) as registry:
        config, home = tmp_path / "docker", tmp_path / "home"
        assert login(config, registry).returncode == 0
        ref = f"{registry.address}/{NS}/ui-only:1.0.0"
        docker_client.images.get(fixture_image("ui-only")).tag(ref)
        try:
            pushed = docker_cli(config, "push", ref)
            assert pushed.returncode == 0, pushed.stdout + pushed.stderr
            docker_client.images.remove(ref)
            dockext("marketplace", "add", f"{registry.address}/{NS}", home=home, config=config)
            entries, errors = listed(home, config)
            assert errors == ""
            assert [(e["image"], e["title"]) for e in entries] == [(f"{registry.address}/{NS}/ui-only", "UI Only")]
            done = dockext("install", ref, home=home, config=config)
            assert 'Extension "UI Only" installed successfully' in done.stdout
            dockext("rm", ref, home=home, config=config)
        finally:
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(ref)


def test_the_registries_an_engine_is_told_are_insecure_are_read_from_it(tmp_path, monkeypatch):
    """A dockerd of the test's own, started with two --insecure-registry options: what dockext learns from it."""
    monkeypatch.setattr(socket_module, "getaddrinfo", lambda *a, **k: [])  # no name is looked up in DNS
    root = Path(tempfile.mkdtemp(prefix="dxi-", dir="/run"))  # short: containerd's socket path has a limit
    socket = root / "docker.sock"
    argv = ["dockerd", f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", f"--pidfile={root / 'pid'}",
            "-H", f"unix://{socket}", "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--insecure-registry=registry.dockext.test:5443", "--insecure-registry=10.99.0.0/16"]
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        # a network and a mount namespace of its own: what it mounts goes with it, even if it dies
        cleanup.enter_context(engine_process(["unshare", "-n", "-m", "--", *argv], socket=socket,
                                             log=tmp_path / "dockerd.log", what="dockerd --insecure-registry"))
        insecure = Engine(f"unix://{socket}").insecure_registries()
        assert insecure is not None
        assert insecure.covers("registry.dockext.test:5443")
        assert not insecure.covers("registry.dockext.test:5444")
        assert insecure.covers("10.99.1.2:5000") and not insecure.covers("10.98.1.2:5000")
        assert insecure.covers("127.0.0.1:5000")  # Docker's own
    assert Engine(f"unix://{socket}").insecure_registries() is None  # stopped: nothing is insecure but loopback
