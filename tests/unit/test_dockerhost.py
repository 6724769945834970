"""Choosing the engine as the Docker CLI does (dockext/dockerhost.py): the environment, then docker contexts.

Contexts are written by the real ``docker context create`` into a temporary config directory (it does not
contact any engine), so the layout read here is the CLI's own, not a copy of it."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from dockext.dockerhost import DEFAULT_HOST, DockerHost, resolve
from dockext.errors import DockextError
from dockext.sshdial import ssh_argv
from tests.support.remote import make_certs


def docker(cfg: Path, *args: str) -> None:
    env = {**os.environ, "DOCKER_CONFIG": str(cfg)}
    env.pop("DOCKER_HOST", None)
    subprocess.run(["docker", *args], env=env, check=True, capture_output=True, timeout=60)


def test_the_environment_decides_first():
    assert resolve({"HOME": "/h"}) == DockerHost(DEFAULT_HOST)
    plain = resolve({"DOCKER_HOST": "tcp://e:2375", "DOCKER_CONTEXT": "ignored"})
    assert plain == DockerHost("tcp://e:2375", source="DOCKER_HOST")
    assert plain.cli_env() == {"DOCKER_HOST": "tcp://e:2375"}
    tls = resolve({"DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS_VERIFY": "1", "HOME": "/h"})
    assert (tls.tls, tls.verify, tls.cert_dir) == (True, True, "/h/.docker")  # the CLI's default cert dir
    tls = resolve({"DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": "/c"})
    assert (tls.tls, tls.verify, tls.cert_dir) == (True, False, "/c")
    assert tls.cli_env() == {"DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS": "1", "DOCKER_CERT_PATH": "/c"}
    # as the CLI reads it: set to anything, even 0, is on
    assert resolve({"DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS_VERIFY": "0"}).verify is True
    assert resolve({"DOCKER_HOST": "tcp://e:2375", "DOCKER_TLS_VERIFY": ""}).tls is False
    assert tls.describe() == "tcp://e:2376 (TLS, certificate not verified, from DOCKER_HOST)"


def test_every_process_gets_this_engine_and_nothing_of_the_users_choice():
    target = DockerHost("tcp://e:2376", tls=True, verify=True, cert_dir="/c")
    env = target.apply({"PATH": "/bin", "DOCKER_CONTEXT": "other", "DOCKER_HOST": "unix:///x", "DOCKER_TLS": "1",
                        "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND": "docker"})  # `docker extension`'s, for dockext
    assert env == {"PATH": "/bin", "DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"}


def test_the_current_context_of_the_cli_with_its_tls_files(tmp_path):
    certs = make_certs(tmp_path / "certs")
    cfg = tmp_path / "cfg"
    docker(cfg, "context", "create", "prod", "--docker",
           f"host=tcp://127.0.0.1:2376,ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem")
    docker(cfg, "context", "create", "insecure", "--docker", "host=tcp://10.0.0.9:2376,skip-tls-verify=true")
    docker(cfg, "context", "create", "plain", "--docker", "host=tcp://127.0.0.1:2375")
    env = {"DOCKER_CONFIG": str(cfg)}
    assert resolve(env) == DockerHost(DEFAULT_HOST)  # created, not chosen
    docker(cfg, "context", "use", "prod")
    prod = resolve(env)
    assert (prod.url, prod.tls, prod.verify, prod.source) == ("tcp://127.0.0.1:2376", True, True, "context prod")
    # the CLI copied the files into its store: read from there, under the names DOCKER_CERT_PATH wants
    assert prod.cert_dir and Path(prod.cert_dir).is_relative_to(cfg)
    assert Path(prod.ca_file or "").read_bytes() == (certs / "ca.pem").read_bytes()
    assert prod.client_cert and Path(prod.client_cert[1]).read_bytes() == (certs / "key.pem").read_bytes()
    context = prod.ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    # DOCKER_CONTEXT picks another; DOCKER_HOST still beats both
    insecure = resolve({**env, "DOCKER_CONTEXT": "insecure"})
    assert (insecure.tls, insecure.verify, insecure.cert_dir) == (True, False, None)
    assert resolve({**env, "DOCKER_CONTEXT": "plain"}).tls is False
    assert resolve({**env, "DOCKER_CONTEXT": "default"}) == DockerHost(DEFAULT_HOST)
    assert resolve({**env, "DOCKER_HOST": "unix:///s"}).url == "unix:///s"


def test_a_missing_or_broken_context_is_a_clear_error(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    with pytest.raises(DockextError, match="the docker context 'gone' does not exist") as err:
        resolve({"DOCKER_CONFIG": str(cfg)})
    assert "docker context use default" in (err.value.hint or "")
    (cfg / "config.json").write_text("{not json")
    with pytest.raises(DockextError, match="cannot read the Docker CLI's configuration"):
        resolve({"DOCKER_CONFIG": str(cfg)})


def test_unreadable_tls_files_are_named(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(DockextError, match=f"cannot load the TLS files in {tmp_path}"):
        DockerHost("tcp://e:2376", tls=True, verify=True, cert_dir=str(tmp_path)).ssl_context()


def test_ssh_addresses_become_the_clis_own_ssh_command():
    argv = ssh_argv("ssh://me@build-box:2222")
    assert argv[1:] == ["-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T", "-l", "me", "-p", "2222", "--",
                        "build-box", "docker", "system", "dial-stdio"]
    assert ssh_argv("ssh://build-box")[-5:] == ["--", "build-box", "docker", "system", "dial-stdio"]
    # percent-decoded, as Go's URL parser gives them to ssh (found in a review)
    argv = ssh_argv("ssh://ad%40corp.example@[fe80::1%25eth0]")
    assert argv[argv.index("-l") + 1] == "ad@corp.example" and argv[-4] == "fe80::1%eth0"
    for bad in ("ssh://me@box/var/run/docker.sock", "ssh://me:secret@box", "ssh://", "tcp://box"):
        with pytest.raises(DockextError):
            ssh_argv(bad)


def test_a_port_that_is_no_number_is_named():
    from dockext.server.engine_http import endpoint

    with pytest.raises(DockextError, match="the port is not a number"):
        ssh_argv("ssh://box:abc")
    with pytest.raises(DockextError, match="the port is not a number"):
        endpoint("tcp://box:99999")


@pytest.mark.parametrize("host", ["tcp://[::1", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:abc"])
def test_an_address_no_client_can_use_is_named_not_a_traceback(host):
    """Found in a review: these reached the Docker SDK and came out as ValueError tracebacks of every command."""
    with pytest.raises(DockextError, match=r"is not one a client can use") as err:
        resolve({"DOCKER_HOST": host})
    assert host in err.value.message and "DOCKER_HOST" in err.value.message


@pytest.mark.parametrize("config", ["[1]", "null", '{"proxies": 5}'])
def test_a_cli_configuration_of_another_shape_does_not_stop_the_engine_client(tmp_path, monkeypatch, config):
    """config.json is read for a pull's login alone (the docker SDK, used before, read it to make its client and
    failed with a traceback): the client reaches the engine, or says it cannot, whatever shape the file has, and a
    pull's login lookup names the file when it is not a JSON object."""
    from dockext.engine import Engine
    from dockext.errors import EngineUnavailable, RegistryError
    from dockext.logins import login_for

    (tmp_path / "config.json").write_text(config)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    engine = Engine(DockerHost(f"unix://{tmp_path}/no-engine.sock"))
    with pytest.raises(EngineUnavailable, match="cannot reach the Docker engine") as err:
        engine.ping()
    assert "no-engine.sock" in err.value.message
    if config.startswith("{"):
        assert login_for("127.0.0.1:5000") is None
    else:
        with pytest.raises(RegistryError, match="is not a JSON object") as refused:
            login_for("127.0.0.1:5000")
        assert str(tmp_path / "config.json") in refused.value.message
