"""`dockext init`, then what a developer does next: build the project, validate it, install it, call its backend."""

from __future__ import annotations

import contextlib
import json

import docker.errors
import pytest

from tests.support.backends import get_over_socket
from tests.support.cli import run_dockext
from tests.support.images import PYBASE, TEST_LABEL, ensure_pybase

pytestmark = pytest.mark.engine

#: Every character that needs escaping somewhere: JSON, HTML, a Dockerfile LABEL ($ would expand), a shell.
ODD_NAME = 'Tom\'s "Hello" <Ext> & $HOME \\ tool'
DESCRIPTION = 'Says hello & lists "containers"'
REPOSITORY = "dockext-init/hello-ext"
KEY = "dockext-init_hello-ext"
PROJECT = f"{KEY}-desktop-extension"


def backend_containers(docker_client):
    return docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})


def test_the_generated_project_builds_with_docker_build_validates_installs_and_its_backend_answers(
    tmp_path, docker_client
):
    home = tmp_path / "home"
    project = tmp_path / "hello-ext"
    out = run_dockext("init", str(project), "--name", ODD_NAME, "--description", DESCRIPTION,
                      "--repository", REPOSITORY, home=home)
    assert f"Created the extension {json.dumps(ODD_NAME)} in {project}" in out.stdout
    assert not home.exists()  # init installs nothing

    ref = f"{REPOSITORY}:1.0.0"
    ensure_pybase(docker_client)
    docker_client.images.build(path=str(project), tag=ref, buildargs={"BASE_IMAGE": PYBASE},
                               labels={TEST_LABEL: "1"}, rm=True, forcerm=True)
    try:
        labels = docker_client.images.get(ref).labels
        assert labels["org.opencontainers.image.title"] == ODD_NAME  # the Dockerfile's quoting survived the build
        assert labels["org.opencontainers.image.description"] == DESCRIPTION
        assert labels["org.opencontainers.image.vendor"] == "dockext-init"

        for flags in ([], ["--sdk-compatibility"]):
            checked = run_dockext("validate", *flags, ref, home=home)
            lines = checked.stdout.splitlines()
            assert "Checked image labels" in lines and "Checked metadata.json" in lines
            assert "Checked the files metadata.json names" in lines
            assert any(line.startswith("Checked extension is compatible with API version 0.4.2") for line in lines)
            assert "Errors" not in checked.stdout and "Warnings" not in checked.stdout
            assert lines[-1] == f'The extension image "{ref}" is valid.'

        installed = run_dockext("install", "-f", ref, home=home)
        assert f'Extension UI tab "{ODD_NAME}" added.' in installed.stdout
        try:
            ext = home / "extensions" / KEY
            assert sorted(p.name for p in (ext / "ui").iterdir()) == ["app.js", "index.html", "style.css"]
            assert (ext / "ui" / "app.js").read_text() == (project / "ui" / "app.js").read_text()
            assert (ext / "icon.svg").read_bytes() == (project / "icon.svg").read_bytes()
            [row] = json.loads(run_dockext("ls", "--format", "json", home=home).stdout)
            assert (row["id"], row["provider"], row["version"]) == (REPOSITORY, "dockext-init", "1.0.0")
            assert (row["ui"], row["vm"], row["host"]) == (f"1 tab({ODD_NAME})", "Running(1)", "-")
            record = json.loads((ext / "extension.json").read_text())
            sock = home / "gs" / record["vm"]["gs_key"] / "backend.sock"
            status, body = get_over_socket(sock, "/hello")
            assert (status, json.loads(body)) == (200, {"message": "Hello from the backend!"})
        finally:
            removed = run_dockext("rm", ref, home=home, check=False)
        assert removed.returncode == 0, removed.stderr
        assert f'Extension "{ODD_NAME}" removed' in removed.stdout
        assert not (home / "extensions" / KEY).exists()
        assert backend_containers(docker_client) == []
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(ref, force=True)
