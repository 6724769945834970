"""An extension's backend belongs to the engine it was created on (its ID, `GET /info`), with the real engine.

The same engine through another address (a TCP relay to its socket) is the same engine: nothing changes. An
extension recorded as made on another engine (this machine has one engine, so the record says so, as it would
after `docker context use` to another machine) is shown as Elsewhere, is not updated, removed or recreated
here (compose would find nothing, or start a second backend), and can be forgotten with `rm --forget`.
"""

from __future__ import annotations

import json

import docker
import pytest

from tests.support.cli import run_dockext
from tests.support.remote import tcp_engine
from tests.support.server import start_server
from tests.support.session import Session

from .test_install import assert_nothing_left, labelled, ls_json, record

pytestmark = pytest.mark.engine

PREFIX = "dockext-other"
KEY = f"{PREFIX}_vm-image"
PROJECT = f"{KEY}-desktop-extension"


def test_a_backend_on_another_engine_is_shown_and_left_alone_until_forgotten(
    tmp_path, fixture_image, docker_client: docker.DockerClient
):
    home = tmp_path / "home"
    ref = fixture_image("vm-image", repo_prefix=PREFIX)
    run_dockext("install", "-f", ref, home=home)
    try:
        rec = record(home, KEY)
        assert rec["vm"]["engine"] == docker_client.info()["ID"]
        assert rec["vm"]["engine_at"] == "unix:///var/run/docker.sock"
        # the same engine reached over TCP is the same engine
        with tcp_engine() as engine:
            [row] = json.loads(run_dockext("ls", "--format", "json", home=home,
                                           env={"DOCKER_HOST": engine.host}).stdout)
        assert row["vm"] == "Running(1)"

        # the record now says another engine made the backend (as after `docker context use` elsewhere)
        path = home / "extensions" / KEY / "extension.json"
        rec["vm"]["engine"], rec["vm"]["engine_at"] = "OTHR:ENGI:NE00", "tcp://build-box:2376 (TLS, from context prod)"
        path.write_text(json.dumps(rec))
        out = run_dockext("ls", home=home)
        assert "Elsewhere(0)" in out.stdout
        assert (f"{PREFIX}/vm-image: its backend is on another engine (tcp://build-box:2376 (TLS, from context "
                "prod)), not the one dockext reaches now") in out.stderr
        server = start_server(tmp_path / "home")
        try:
            with Session(server).dashboard() as dash:
                [ext] = dash.get("/api/extensions").json()
            assert ext["vm"]["elsewhere"] == "tcp://build-box:2376 (TLS, from context prod)"
        finally:
            server.stop()
        for args in (("rm", ref), ("update", "-f", ref), ("permissions", "set", ref, "engine=deny")):
            refused = run_dockext(*args, home=home, check=False)
            assert refused.returncode == 1, args
            said = " ".join(refused.stderr.split())  # as one line, however the terminal wrapped it
            assert (f"Error: the backend of {PREFIX}/vm-image is on another engine (tcp://build-box:2376 (TLS, "
                    "from context prod)), not the one dockext reaches now (unix:///var/run/docker.sock)") in said
            assert f"dockext rm --forget {PREFIX}/vm-image" in said
        [row] = ls_json(home)  # nothing changed
        assert row["version"] == "1.0.0"
        [ctr] = labelled(docker_client, f"com.docker.compose.project={PROJECT}")
        assert ctr.status == "running"

        # forgotten: dockext's files go, the backend stays where it is (here: the engine it is really on)
        out = run_dockext("rm", "--forget", ref, home=home)
        assert "Leaving its backend (dockext-other_vm-image-desktop-extension) on tcp://build-box:2376" in out.stdout
        assert ls_json(home) == []
        [ctr] = labelled(docker_client, f"com.docker.compose.project={PROJECT}")
        assert ctr.status == "running"
    finally:
        for ctr in labelled(docker_client, f"com.docker.compose.project={PROJECT}"):
            ctr.remove(force=True)
        for net in docker_client.networks.list(filters={"label": f"com.docker.compose.project={PROJECT}"}):
            net.remove()
        run_dockext("rm", ref, home=home, check=False)
    assert_nothing_left(home, docker_client, KEY, PROJECT)
