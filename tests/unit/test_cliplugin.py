"""The Docker CLI plugin's protocol parts (the real Docker CLI runs it in tests/engine/test_cliplugin.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from dockext import cliplugin
from dockext.errors import DockextError


def test_metadata_is_one_json_object_the_docker_cli_accepts(capsys) -> None:
    cliplugin.main(["docker-cli-plugin-metadata"])
    meta = json.loads(capsys.readouterr().out)
    assert meta["SchemaVersion"] == "0.1.0" and meta["Vendor"] == "dockext"
    assert meta["ShortDescription"] and meta["Version"]


def test_the_script_passes_every_argument_whole_to_the_python_it_names(tmp_path) -> None:
    python = tmp_path / "odd dir 'x'" / "python"
    python.parent.mkdir()
    python.write_text('#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n')
    python.chmod(0o755)
    plugin = tmp_path / "docker-extension"
    plugin.write_text(cliplugin.script(str(python)))
    plugin.chmod(0o755)
    out = subprocess.run([str(plugin), "extension", "install", "a b", "$HOME"], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines() == ["[-m]", "[dockext.cliplugin]", "[extension]", "[install]", "[a b]", "[$HOME]"]


def test_dockers_global_options_before_the_command_select_the_engine_or_are_refused() -> None:
    assert cliplugin.docker_globals(["-H", "unix:///x.sock", "--log-level", "debug", "-D"]) == {
        "DOCKER_HOST": "unix:///x.sock"
    }
    assert cliplugin.docker_globals(["--host=tcp://127.0.0.1:2375", "--config", "/c"]) == {
        "DOCKER_HOST": "tcp://127.0.0.1:2375", "DOCKER_CONFIG": "/c",
    }
    # a context: read by dockext as the CLI would (it wins over $DOCKER_HOST); "default" is $DOCKER_HOST or the socket
    assert cliplugin.docker_globals(["--context", "remote"]) == {"DOCKER_CONTEXT": "remote", "DOCKER_HOST": None}
    # "default" is named, not unset: unset, docker's current context (another engine, after `docker context use`)
    # would be used (found in a review)
    assert cliplugin.docker_globals(["-c=default"]) == {"DOCKER_CONTEXT": "default"}
    assert cliplugin.docker_globals(["--context", "default"]) == {"DOCKER_CONTEXT": "default"}
    # TLS: the switches, and certificate files that sit in one directory under their usual names
    assert cliplugin.docker_globals(["-H", "tcp://e:2376", "--tlsverify", "--tlscacert", "/certs/ca.pem",
                                     "--tlscert=/certs/cert.pem", "--tlskey", "/certs/key.pem"]) == {
        "DOCKER_HOST": "tcp://e:2376", "DOCKER_TLS": "1", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs",
    }
    # as in the CLI: --tlsverify=false still speaks TLS, it only does not verify
    assert cliplugin.docker_globals(["--tlsverify=false"]) == {"DOCKER_TLS": "1", "DOCKER_TLS_VERIFY": None}
    for refused, why in (
        (["-H", "tcp://x", "--context", "remote"], "not both"),
        (["--tlscacert", "/a/ca.pem", "--tlscert", "/b/cert.pem"], "one directory"),
        (["--tlscacert", "/a/my-ca.crt"], "one directory"),
        (["--bogus"], "unknown docker option"),
        (["-H"], "needs a value"),
    ):
        with pytest.raises(DockextError, match=why):
            cliplugin.docker_globals(refused)
    assert cliplugin._command_index(["--config", "extension", "extension", "ls"]) == 2
    assert cliplugin._command_index(["ls"]) is None


def test_options_are_read_as_the_docker_cli_reads_them(tmp_path) -> None:
    """Found in a review: pflag's forms (-Xvalue, bundles) were refused, Go's booleans (=t) read as false (so
    --tlsverify=t did not verify), a second -H silently won, and certificate files reached through links gave the
    links' target directory (where ca.pem and the others are not)."""
    assert cliplugin.docker_globals(["-Hunix:///x.sock", "-ldebug"]) == {"DOCKER_HOST": "unix:///x.sock"}
    assert cliplugin.docker_globals(["-DH", "unix:///x.sock"]) == {"DOCKER_HOST": "unix:///x.sock"}
    assert cliplugin.docker_globals(["-cprod"]) == {"DOCKER_CONTEXT": "prod", "DOCKER_HOST": None}
    for given, verify in (("t", "1"), ("T", "1"), ("TRUE", "1"), ("1", "1"), ("f", None), ("0", None),
                          ("False", None)):
        assert cliplugin.docker_globals([f"--tlsverify={given}"]) == {"DOCKER_TLS": "1", "DOCKER_TLS_VERIFY": verify}
    assert cliplugin.docker_globals(["--tls=t"]) == {"DOCKER_TLS": "1"}
    for refused, why in ((["--tlsverify=yes"], "true or false"), (["-H", "unix:///a", "-H", "unix:///b"], "only one"),
                         (["-Hunix:///a", "--host=unix:///b"], "only one"), (["-Dx"], "unknown docker option"),
                         (["-DH"], "needs a value")):
        with pytest.raises(DockextError, match=why):
            cliplugin.docker_globals(refused)
    assert cliplugin._command_index(["-DH", "unix:///x", "extension", "ls"]) == 2
    assert cliplugin._command_index(["-Hunix:///x", "-D", "extension", "ls"]) == 2
    assert cliplugin._command_index(["-H=unix:///x", "extension"]) == 1
    certs, store = tmp_path / "certs", tmp_path / "store"
    certs.mkdir()
    store.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (store / f"real-{name}").write_text("x")
        (certs / name).symlink_to(store / f"real-{name}")
    assert cliplugin.docker_globals([f"--tlscacert={certs}/ca.pem", "--tlscert", f"{certs}/cert.pem",
                                     "--tlskey", f"{certs}/key.pem"])["DOCKER_CERT_PATH"] == str(certs)


def test_docker_extension_uninstall_is_rm_as_docker_desktops_docs_use_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dockext import cli

    monkeypatch.setattr(cli, "unwind_on_termination", lambda: None)  # pytest's own signal handlers stay
    monkeypatch.setenv("DOCKEXT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SystemExit) as done:
        cliplugin.main(["extension", "--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    assert "Usage: docker extension" in listed
    assert any(line.split()[:1] == ["uninstall"] and "rm" in line for line in listed.splitlines()), listed
    with pytest.raises(SystemExit) as done:
        cliplugin.main(["extension", "uninstall", "acme/ext"])
    assert done.value.code == 1
    assert "extension acme/ext is not installed" in capsys.readouterr().err
