"""dockext as an ordinary user on an engine run with ``--userns-remap`` (a common hardening of servers).

There no uid inside a container is an ordinary user of the host: a backend's root is host uid 165536, and the
sockperm sidecar, which hands sockets over with chown, would give them to 165536 + the user's uid. Every install
failed ("dockext is not allowed to connect to it") until the sidecar ran in the host's user namespace on such
engines (``userns_mode: host``); the backend itself stays remapped.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.support.images import copy_image
from tests.support.server import start_server
from tests.support.session import Session
from tests.support.unpriv import ensure_unprivileged
from tests.support.usernsd import remapped_engine

pytestmark = pytest.mark.engine
REPO = Path(__file__).resolve().parents[2]
KEY = "dockext-test_vm-image"


def test_an_ordinary_user_reaches_its_backends_on_an_engine_with_userns_remap(tmp_path, fixture_image, docker_client):
    user = ensure_unprivileged(REPO)
    ref = fixture_image("vm-image")
    with remapped_engine(tmp_path / "dockerd.log") as engine:
        assert "name=userns" in engine.client.info()["SecurityOptions"]
        copy_image(docker_client, engine.client, ref)
        home = user.home / f"userns-{secrets.token_hex(4)}"
        env = user.env(DOCKER_HOST=engine.host, DOCKEXT_HOME=str(home), NO_COLOR="1")
        assert user.run(["mkdir", "-p", str(home)], env=env).returncode == 0
        server = None
        try:
            out = user.run([str(user.dockext), "install", "-f", ref], env=env, timeout=300)
            assert out.returncode == 0, out.stdout + out.stderr

            [backend] = engine.client.containers.list(filters={"label": "com.docker.compose.service=service"})
            [sidecar] = engine.client.containers.list(filters={"label": "dockext.helper=sockperm"})
            # the backend is remapped (its root is not the host's), only the sidecar runs in the host's namespace
            status = Path(f"/proc/{backend.attrs['State']['Pid']}/status").read_text()
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            assert uid >= 65536, status
            assert backend.attrs["HostConfig"]["UsernsMode"] == ""
            assert sidecar.attrs["HostConfig"]["UsernsMode"] == "host"
            sock = next((home / "gs").glob("*/backend.sock"))
            assert sock.stat().st_uid == user.uid  # handed over; the backend made it as host uid `uid`

            server = start_server(home, argv=[str(user.dockext)], user=(user.uid, user.gid, user.groups),
                                  extra_env=env)
            session = Session(server)
            ui = session.open_ui(KEY)
            session.wait_backend(ui)
            with session.page(ui) as page:
                r = page.get(f"{ui.api}/vm/hello")
            assert r.status_code == 200 and r.json()["message"] == "hello from vm-image"
        finally:
            if server is not None:
                server.stop()
            user.run([str(user.dockext), "rm", ref], env=env, timeout=300)
            shutil.rmtree(home, ignore_errors=True)
        assert engine.client.containers.list(all=True) == []
