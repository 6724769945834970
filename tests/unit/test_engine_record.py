"""Which engine an extension's backend was made on, decided without an engine (stubs): installer checks,
crash recovery, and the server's vm calls. The real engine proves the same in tests/engine/test_other_engine.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dockext.errors import EngineUnavailable, OtherEngine
from dockext.installer import PENDING_FILE, Installer
from dockext.paths import Layout
from dockext.store import Store
from tests.support.aio import run

from .test_store import make_record


class StubEngine:
    def __init__(self, identity: str | Exception) -> None:
        self._identity = identity
        self.target = type("T", (), {"describe": lambda self: "tcp://here:2376"})()

    def identity(self) -> str:
        if isinstance(self._identity, Exception):
            raise self._identity
        return self._identity

    def gc_one_off_containers(self, owner: str) -> None:
        pass


class StubCompose:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def down(self, project: str, path: Path) -> None:
        self.calls.append(("down", project))


def record_on(engine: str | None):
    rec = make_record()
    assert rec.vm is not None
    return dataclasses.replace(rec, vm=dataclasses.replace(rec.vm, engine=engine, engine_at="tcp://there:2376"))


def installer(tmp_path: Path, identity: str | Exception) -> tuple[Installer, StubCompose]:
    compose = StubCompose()
    inst = Installer(Layout(tmp_path), engine=StubEngine(identity), compose=compose)  # type: ignore[arg-type]
    inst.layout.ensure()
    return inst, compose


@pytest.mark.parametrize(
    ("made_on", "here", "refused"),
    [("ENGINE-A", "ENGINE-B", True), ("ENGINE-A", "ENGINE-A", False),
     (None, "ENGINE-B", False),  # an older record: not checked
     ("ENGINE-A", "", False),  # an engine that gives no ID: cannot tell, not refused
     ("ENGINE-A", EngineUnavailable("down"), False)],  # unreachable: the operation says so itself
)
def test_check_engine(tmp_path, made_on, here, refused):
    inst, _ = installer(tmp_path, here)
    if refused:
        with pytest.raises(OtherEngine, match=r"the backend of acme/acme_ext is on another engine \(tcp://there:2376\)"):
            inst.check_engine(record_on(made_on))
    else:
        inst.check_engine(record_on(made_on))


def test_recovery_leaves_an_interrupted_install_made_on_another_engine_alone(tmp_path):
    """Found in review: recovery ran compose down on whatever engine dockext reached, orphaning the backend."""
    inst, compose = installer(tmp_path, "ENGINE-B")
    target = inst.layout.extension_dir("acme_ext")
    target.mkdir(parents=True)
    (target / PENDING_FILE).write_text(json.dumps(record_on("ENGINE-A").to_json()))
    assert inst._recover_locked() == []
    assert compose.calls == [] and (target / PENDING_FILE).exists()
    # pointed at the engine it was made on, the same recovery finishes it
    inst.engine = StubEngine("ENGINE-A")  # type: ignore[assignment]
    assert inst._recover_locked() == ["acme_ext"]
    assert compose.calls == [("down", "acme_ext-desktop-extension")] and not target.exists()


def test_a_record_written_before_the_engine_was_recorded_still_reads(tmp_path):
    store = Store(Layout(tmp_path))
    store.layout.ensure()
    (tmp_path / "extensions" / "acme_ext").mkdir()
    data = make_record().to_json()
    del data["vm"]["engine"], data["vm"]["engine_at"]
    (tmp_path / "extensions" / "acme_ext" / "extension.json").write_text(json.dumps(data))
    rec = store.read("acme_ext")
    assert rec.vm is not None and rec.vm.engine is None


def test_the_servers_vm_calls_refuse_a_backend_made_on_another_engine(tmp_path):
    """Found in review: vm.service and vm.cli.exec went to this server's engine whatever the record said."""
    from starlette.testclient import TestClient

    from dockext.server import HostState, create_app

    from .test_server import DASH, PORT, TOKEN, ext_url, install_fake, login, open_ui

    rec = install_fake(tmp_path, "acme_a")
    store = Store(Layout(tmp_path))
    store.write(dataclasses.replace(rec, vm=dataclasses.replace(rec.vm, engine="ENGINE-A", engine_at="tcp://there")))
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN)
    state._engine_id = "ENGINE-B"  # this server's engine, as GET /info would say
    with TestClient(create_app(state), base_url=DASH, follow_redirects=False) as client:
        login(client)
        inst = open_ui(client, rec)
        origin = ext_url(state, rec)
        cap = inst["url"][len(origin):].split("/")[2]
        r = client.get(f"{origin}/i/{cap}/__dockext__/vm/hello")
        assert r.status_code == 409 and r.json()["error"]["type"] == "OtherEngine"
        assert "is on another engine (tcp://there)" in r.json()["error"]["message"]
        r = client.post(f"{origin}/i/{cap}/__dockext__/exec", headers={"X-Dockext": "1", "Origin": origin},
                        json={"cli": "vm", "cmd": "ls", "args": []})
        assert r.status_code == 409 and r.json()["error"]["type"] == "OtherEngine"


def test_a_server_started_before_its_engine_checks_backends_once_the_engine_answers(tmp_path, monkeypatch):
    """Found in a later read: an engine that did not answer the first question left the ID unknown for the
    server's life, and with it every backend counted as this engine's."""
    import asyncio

    from dockext.server import HostState
    from dockext.server import state as state_module

    from .test_server import PORT, TOKEN

    monkeypatch.setattr(state_module, "ENGINE_ID_RETRY", 0.0)
    rec = record_on("ENGINE-A")
    engine = StubEngine(EngineUnavailable("cannot reach the Docker engine"))
    state = HostState(Layout(tmp_path), port=PORT, token=TOKEN, engine=engine)  # type: ignore[arg-type]
    state.check_engine(rec)  # unknown: counted as the same engine, as before

    async def watch_until_asked() -> None:
        task = asyncio.create_task(state.watch(interval=0.01))
        await asyncio.sleep(0.05)
        engine._identity = "ENGINE-B"  # the engine comes up: another than the backend's
        for _ in range(200):
            await asyncio.sleep(0.01)
            if state._engine_id:
                break
        task.cancel()

    run(watch_until_asked())  # not asyncio.run: a browser test may have left Playwright's loop running here
    with pytest.raises(OtherEngine, match="is on another engine"):
        state.check_engine(rec)


def vm_on(engine: str, at: str):
    rec = make_record()
    assert rec.vm is not None
    return dataclasses.replace(rec.vm, engine=engine, engine_at=at)


PODMAN = "podman:box:/var/lib/containers/storage"


@pytest.mark.parametrize(("made_on", "made_at", "here", "here_at", "elsewhere"), [
    (PODMAN, "unix:///run/podman/podman.sock", PODMAN, "unix:///run/podman/podman.sock", False),
    # the machine was renamed: the same storage at the same address
    (PODMAN, "unix:///run/podman/podman.sock", "podman:newname:/var/lib/containers/storage",
     "unix:///run/podman/podman.sock (from DOCKER_HOST)", False),
    # another machine of the same name and storage root, reached elsewhere: cannot be told apart (same ID)
    (PODMAN, "unix:///run/podman/podman.sock", PODMAN, "ssh://me@far", False),
    # a renamed machine, reached elsewhere too; and another storage root (a rootless Podman) anywhere
    (PODMAN, "unix:///run/podman/podman.sock", "podman:newname:/var/lib/containers/storage", "ssh://me@far", True),
    (PODMAN, "unix:///run/podman/podman.sock", "podman:box:/home/me/.local/share/containers/storage",
     "unix:///run/podman/podman.sock", True),
    # an older dockext's record on Podman (one of the random IDs Podman answered then) cannot be told from a Docker
    # engine's record found at the same address (Podman serving docker.sock): both elsewhere, never run on here
    ("b2e55a7c-e745-4ae6-8d54-bc2f45d08529", "unix:///run/podman/podman.sock (from DOCKER_HOST)", PODMAN,
     "unix:///run/podman/podman.sock (from context podman)", True),
    ("ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP", "unix:///var/run/docker.sock", PODMAN,
     "unix:///var/run/docker.sock", True),
    # Docker engines: their IDs decide
    ("ENGINE-A", "unix:///var/run/docker.sock", "ENGINE-B", "unix:///var/run/docker.sock", True),
    (PODMAN, "unix:///run/podman/podman.sock", "ENGINE-B", "unix:///run/podman/podman.sock", True),
])
def test_which_engine_a_backend_is_on(made_on, made_at, here, here_at, elsewhere):
    assert vm_on(made_on, made_at).elsewhere(here, here_at) is elsewhere


def test_an_engine_replaced_at_the_same_address_is_said_so():
    vm = vm_on("ENGINE-A", "unix:///var/run/docker.sock")
    assert vm.elsewhere_message("acme/ext", "unix:///var/run/docker.sock (from DOCKER_HOST)") == (
        "the backend of acme/ext was made on the engine that was at unix:///var/run/docker.sock then (ID ENGINE-A), "
        "and another answers there now: the engine was reinstalled or replaced")
    assert vm.elsewhere_message("acme/ext", "tcp://there:2376") == (
        "the backend of acme/ext is on another engine (unix:///var/run/docker.sock), not the one dockext reaches now "
        "(tcp://there:2376)")
