"""Reliability cases of the reference (security-reliability.md B6) that need no engine: R7, R8, R22.

* R7: a record write that fails at any of its steps (ENOSPC at the temp file, the write, the fsync, the chmod or
  the rename) leaves the old record byte-identical and readable, and no temp file.
* R8 (its primitive): strace of ``atomic_write`` shows the data fsynced before the rename and the directory
  fsynced after it, before the call returns (the whole install, update and removal: tests/engine/test_durability.py).
* R22: state written by an older dockext with an interrupted transaction in it is recovered by this one; a record
  of a newer schema is refused by install, update and rm with a message that says so, and left as it is.

The engine and Compose are stubs that record what they are asked (as tests/unit/test_engine_record.py does).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dockext.errors import StateError
from dockext.installer import PENDING_FILE, UPDATE_FILE, Installer
from dockext.paths import Layout
from dockext.store import PREV_PREFIX, RECORD_FILE, SCHEMA_VERSION, Record, Store, UiInfo, VmInfo

KEY = "acme_ext"
PROJECT = f"{KEY}-desktop-extension"


def make_record(image: str = "acme/ext:1.0", *, socket: str | None = None, gs_key: str = "deadbeef") -> Record:
    return Record(
        key=KEY, id="acme/ext", image=image, image_id="sha256:" + "1" * 64, version=image.rsplit(":", 1)[1],
        title="Acme", provider="Acme Inc.", origin_slug="acme-ext-abc123", installed_at=1.0,
        ui=UiInfo(title="Acme", src="index.html"),
        vm=VmInfo(project=PROJECT, first_service="api", container=f"{PROJECT}-service", socket=socket,
                  gs_key=gs_key),
    )


def older_shape(record: Record) -> dict[str, Any]:
    """The record as an older dockext wrote it: schema 1, and from before its optional fields were added."""
    data = {**record.to_json(), "schema": 1}
    for name in ("labels", "metadata", "icon", "host_binaries"):
        data.pop(name)
    for name in ("sockperm", "relay", "withheld", "engine", "engine_at", "policy"):
        data["vm"].pop(name)
    return data


class StubEngine:
    def __init__(self, volumes: set[str] | None = None) -> None:
        self.volumes = set(volumes or ())
        self.removed: set[str] = set()
        self.mounted: set[str] = set()  # the mount sources of backend containers
        self.target = type("T", (), {"describe": lambda self: "unix:///var/run/docker.sock"})()

    def identity(self) -> str:
        return "ENGINE-A"

    def ping(self) -> None:
        pass

    def gc_one_off_containers(self, owner: str) -> None:
        pass

    def project_volumes(self, project: str) -> set[str]:
        return set(self.volumes)

    def backend_mount_sources(self) -> set[str]:
        return set(self.mounted)

    def remove_volumes(self, names: set[str]) -> None:
        self.removed |= names
        self.volumes -= names


class StubCompose:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []  # (up|down, project, the compose file's directory)

    def down(self, project: str, path: Path | None = None) -> None:
        self.calls.append(("down", project, path.parent.parent.name if path else ""))

    def up(self, project: str, path: Path, env: dict[str, str]) -> None:
        self.calls.append(("up", project, path.parent.parent.name))


def installer(home: Path, engine: StubEngine | None = None) -> tuple[Installer, StubCompose]:
    compose = StubCompose()
    inst = Installer(Layout(home), engine=engine or StubEngine(), compose=compose)  # type: ignore[arg-type]
    inst.layout.ensure()
    return inst, compose


def extension_files(directory: Path, record_name: str, record: dict[str, Any]) -> None:
    (directory / "vm").mkdir(parents=True)
    (directory / "vm" / "docker-compose.yaml").write_text("services: {}\n")
    (directory / "ui").mkdir()
    (directory / "ui" / "index.html").write_text("<p>hi</p>")
    (directory / record_name).write_text(json.dumps(record))


# -- R22 ----------------------------------------------------------------------------------------------
def test_an_install_interrupted_under_an_older_dockext_is_taken_down_and_deleted(tmp_path: Path) -> None:
    """R22: the older dockext was killed after `compose up` (install:backend-started); this one recovers it."""
    inst, compose = installer(tmp_path)
    target = inst.layout.extension_dir(KEY)
    extension_files(target, PENDING_FILE, older_shape(make_record()))
    (inst.layout.guest_services / "deadbeef").mkdir()
    assert inst.needs_recovery()
    assert inst._recover_locked() == [KEY]
    assert compose.calls == [("down", PROJECT, KEY)]
    assert not target.exists() and list(inst.layout.guest_services.iterdir()) == []
    assert list(inst.layout.extensions.iterdir()) == [] and list(inst.layout.staging.iterdir()) == []
    assert not inst.needs_recovery()


def test_an_update_interrupted_under_an_older_dockext_brings_the_old_version_back(tmp_path: Path) -> None:
    """R22: the older dockext was killed after swapping in the new version (update:new-started); this one takes
    the new backend down, removes only the volumes the update created, and starts the old version again."""
    engine = StubEngine(volumes={f"{PROJECT}_data", f"{PROJECT}_new"})
    inst, compose = installer(tmp_path, engine)
    old, new = make_record("acme/ext:1.0"), make_record("acme/ext:2.0")
    prev = inst.layout.extensions / f"{PREV_PREFIX}{KEY}"
    target = inst.layout.extension_dir(KEY)
    extension_files(prev, RECORD_FILE, older_shape(old))
    extension_files(target, PENDING_FILE, older_shape(new))
    (target / UPDATE_FILE).write_text(json.dumps({"from": old.image, "volumes_before": [f"{PROJECT}_data"]}))
    assert inst._recover_locked() == [KEY]
    # the new one down (from where it was), then the old one down and up again from where it lay
    assert compose.calls == [("down", PROJECT, KEY), ("down", PROJECT, f"{PREV_PREFIX}{KEY}"),
                             ("up", PROJECT, f"{PREV_PREFIX}{KEY}")]
    assert engine.removed == {f"{PROJECT}_new"}  # the old version's volume stays
    assert Store(inst.layout).read(KEY) == dataclasses.replace(old, labels={}, metadata={})
    assert sorted(p.name for p in inst.layout.extensions.iterdir()) == [KEY]
    assert list(inst.layout.staging.iterdir()) == []
    assert not inst.needs_recovery()


@pytest.mark.parametrize("command", ["install", "update", "rm"])
def test_a_record_of_a_newer_dockext_is_refused_with_a_clear_message_and_left_alone(
    tmp_path: Path, command: str
) -> None:
    """R22 ("refuse newer"): nothing is touched, and the message says to upgrade dockext."""
    inst, compose = installer(tmp_path)
    target = inst.layout.extension_dir(KEY)
    newer = {**make_record().to_json(), "schema": SCHEMA_VERSION + 1, "something_new": {"x": 1}}
    extension_files(target, RECORD_FILE, newer)
    before = (target / RECORD_FILE).read_bytes()
    with pytest.raises(StateError) as raised:
        if command == "install":
            inst.install("acme/ext:2.0")
        elif command == "update":
            inst.update("acme/ext:2.0")
        else:
            inst.remove("acme/ext")
    assert (f"extension record has schema {SCHEMA_VERSION + 1}, this dockext understands up to {SCHEMA_VERSION}"
            in raised.value.message)
    assert "newer dockext: upgrade dockext" in (raised.value.hint or "")
    assert (target / RECORD_FILE).read_bytes() == before
    assert compose.calls == []


@pytest.mark.parametrize("left", ["install", "rm", "update"])
def test_an_interrupted_operation_of_a_newer_dockext_is_left_to_it(tmp_path: Path, left: str) -> None:
    """R22: a newer dockext killed during an install (after `compose up`), a removal (tombstoned) or an update
    (the new version swapped in) left records this one cannot read. Recovery touches none of it (no compose
    call, every file in place), says so, and an install or removal of that extension is refused."""
    inst, compose = installer(tmp_path)
    target = inst.layout.extension_dir(KEY)
    newer = {**make_record().to_json(), "schema": SCHEMA_VERSION + 1}
    if left == "update":
        extension_files(inst.layout.extensions / f"{PREV_PREFIX}{KEY}", RECORD_FILE, newer)
    extension_files(target, PENDING_FILE, newer)
    (inst.layout.guest_services / "deadbeef").mkdir()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert inst.needs_recovery()
    assert inst._recover_locked() == [] and inst.newer == [KEY]
    assert compose.calls == []
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    for attempt in (lambda: inst.install("acme/ext:2.0"), lambda: inst.remove("acme/ext")):
        with pytest.raises(StateError, match="left by a newer dockext") as raised:
            attempt()
        assert raised.value.hint == "Upgrade dockext: the newer version finishes it."
    assert compose.calls == []


def test_the_grants_of_an_install_that_never_finished_are_forgotten(tmp_path: Path) -> None:
    """`install --deny engine` killed before it could roll back leaves its grant; the next recovery drops it,
    so a later install of that extension does not inherit a choice nobody made for it. The grants of installed
    extensions stay."""
    from dockext import permissions

    inst, _ = installer(tmp_path)
    extension_files(inst.layout.extension_dir("acme_kept"), RECORD_FILE,
                    {**make_record().to_json(), "key": "acme_kept"})
    permissions.set_grants_locked(inst.layout, "acme_kept", system=False)
    permissions.set_grants_locked(inst.layout, KEY, engine=False)  # the install was killed at install:staged
    (inst.layout.staging / f"{KEY}.1234abcd").mkdir()
    inst._recover_locked()
    assert permissions.load(inst.layout) == {"acme_kept": permissions.Grants(system=False)}


# -- R7 -----------------------------------------------------------------------------------------------
class _FullDisk:
    """``os.fdopen``'s file whose writes fail with ENOSPC (the descriptor is closed as the real file would)."""

    def __init__(self, fd: int, *args: Any, **kwargs: Any) -> None:
        self._fd = fd

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("step", ["mkstemp", "write", "fsync", "chmod", "replace"])
def test_a_record_write_failing_at_any_step_leaves_the_old_record_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """R7, for the record itself (Store.write): each step of the atomic write fails in turn."""
    store = Store(Layout(tmp_path))
    store.layout.ensure()
    store.layout.extension_dir(KEY).mkdir()
    store.write(make_record("acme/ext:1.0"))
    path = store.record_path(KEY)
    before = path.read_bytes()
    target: Any = {"mkstemp": tempfile, "write": os, "fsync": os, "chmod": os, "replace": os}[step]
    monkeypatch.setattr(target, "fdopen" if step == "write" else step, _FullDisk if step == "write" else _fail)
    with pytest.raises(OSError) as raised:
        store.write(make_record("acme/ext:2.0"))
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert store.read(KEY).image == "acme/ext:1.0"
    assert sorted(p.name for p in path.parent.iterdir()) == [RECORD_FILE]  # no temp file left


# -- R8 -----------------------------------------------------------------------------------------------
_WRITER = """
import sys
from pathlib import Path
from dockext.store import atomic_write
atomic_write(Path(sys.argv[1]), b'{"new": true}')
sys.stdout.write("DONE\\n"); sys.stdout.flush()
"""


def test_atomic_write_fsyncs_the_data_before_the_rename_and_the_directory_before_it_returns(tmp_path: Path) -> None:
    """R8 (ALICE-style), for the primitive every record and journal goes through."""
    d = tmp_path / "d"
    d.mkdir()
    target = d / "extension.json"
    target.write_bytes(b"{}")
    trace = tmp_path / "trace"
    proc = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-o", str(trace), "-e", "trace=write,fsync,fdatasync,rename,renameat,renameat2",
         sys.executable, "-c", _WRITER, str(target)],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 0 and proc.stdout == "DONE\n", proc.stderr
    events = []
    for line in trace.read_text().splitlines():
        call = line.split(None, 1)[1] if line[:1].isdigit() else line
        if str(d) in call and call.startswith(("write(", "fsync(", "fdatasync(", "rename")):
            events.append(call.split("(", 1)[0] + (" dir" if f"<{d}>" in call else ""))
        elif call.startswith("write(1") and "DONE" in call:
            events.append("reported")
    assert [e for e in events if e.startswith("rename")] != [], events
    # the temp file's data, its fsync, the rename, the directory's fsync; only then does the caller go on
    assert events[-5:] == ["write", "fsync", events[-3], "fsync dir", "reported"], events
    assert events[-3].startswith("rename")
    assert target.read_bytes() == b'{"new": true}'


def test_a_backend_restricted_by_an_older_policy_is_recreated_when_its_grants_are_set_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrade: a backend made while `system` was denied, by a dockext whose rules did not cover published
    ports yet (no `policy` in its record, no `networkPorts` in requested.json), runs with its ports open to the
    network. Setting a grant again recreates it under today's rules; once recreated, setting it again does
    nothing more."""
    from dockext import backendpolicy, permissions

    inst, _ = installer(tmp_path)
    old = dataclasses.replace(make_record(), vm=dataclasses.replace(make_record().vm, withheld=("system",)))
    data = old.to_json()
    del data["vm"]["policy"]
    extension_files(inst.layout.extension_dir(KEY), RECORD_FILE, data)
    asked = permissions.requested({"services": {"web": {"image": "x", "ports": ["8080:8080"], "privileged": True}}})
    recorded = {k: v for k, v in asked.to_json().items() if k not in ("networkPorts", "network")}
    (inst.layout.extension_dir(KEY) / permissions.REQUESTED_FILE).write_text(json.dumps(recorded))
    permissions.set_grants(inst.layout, KEY, system=False)
    recreated: list[str] = []

    def reapply(key: str) -> Record:
        recreated.append(key)
        record = Store(inst.layout).read(key)
        Store(inst.layout).write(dataclasses.replace(
            record, vm=dataclasses.replace(record.vm, policy=backendpolicy.POLICY)))  # type: ignore[arg-type]
        return record

    monkeypatch.setattr(inst, "reapply", reapply)
    assert Store(inst.layout).read(KEY).vm.policy == 0  # type: ignore[union-attr]
    # a UI grant is not a reason to recreate the backend
    assert inst.set_permissions(KEY, docker=False) == (permissions.Grants(docker=False, system=False), False)
    assert recreated == []
    assert inst.set_permissions(KEY, system=False) == (permissions.Grants(docker=False, system=False), True)
    assert inst.set_permissions(KEY, system=False) == (permissions.Grants(docker=False, system=False), False)
    assert recreated == [KEY]


def test_permissions_ls_says_which_backends_older_rules_restricted(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same upgrade, as the user sees it: `dockext permissions` names the backend and the command that
    applies today's rules; a backend made by today's rules, or with every grant allowed, is not named."""
    from click.testing import CliRunner

    from dockext import backendpolicy, permissions
    from dockext.cli import cli

    layout = Layout(tmp_path / "home")
    layout.ensure()
    for key, policy, denied in (("acme_old", 0, True), ("acme_new", backendpolicy.POLICY, True),
                                ("acme_open", 0, False)):
        record = dataclasses.replace(make_record(), key=key, id=key.replace("_", "/"))
        record = dataclasses.replace(record, vm=dataclasses.replace(record.vm, policy=policy))  # type: ignore[arg-type]
        layout.extension_dir(key).mkdir()
        Store(layout).write(record)
        if denied:
            permissions.set_grants(layout, key, system=False)
    monkeypatch.setenv("DOCKEXT_HOME", str(layout.root))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(cli, ["permissions"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "rules cover less" in line]
    assert notes == ["acme/old: its backend was restricted by an older dockext, whose rules cover less than "
                     "today's; apply them with `dockext permissions set acme/old system=deny`."]


def test_a_failed_syncfs_fails_the_operation_and_a_missing_one_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R8: syncfs reports writeback errors (EIO): dockext must not go on to say the files are installed. A
    kernel without syncfs (ENOSYS) gets sync(2) instead."""
    import ctypes

    from dockext import store

    class Libc:
        def __init__(self, code: int) -> None:
            self.code = code

        def syncfs(self, fd: int) -> int:
            ctypes.set_errno(self.code)
            return -1

    monkeypatch.setattr(store, "_libc", lambda: Libc(errno.EIO))
    with pytest.raises(OSError) as raised:
        store.sync_tree(tmp_path)
    assert raised.value.errno == errno.EIO and raised.value.filename == str(tmp_path)
    synced: list[bool] = []
    monkeypatch.setattr(store, "_libc", lambda: Libc(errno.ENOSYS))
    monkeypatch.setattr(os, "sync", lambda: synced.append(True))
    store.sync_tree(tmp_path)
    assert synced == [True]


def test_recovery_removes_the_guest_services_dirs_no_record_names_unless_a_container_mounts_them(tmp_path):
    """An rm that could not empty its dir, an `rm --forget`, a crash before the pending record: the dir was left
    for good. The engine-level proof (an ordinary user's dockext, root's files, the helper):
    tests/engine/test_unpriv_backend_files.py."""
    engine = StubEngine()
    inst, _ = installer(tmp_path, engine)
    extension_files(inst.layout.extension_dir(KEY), RECORD_FILE, make_record(gs_key="named").to_json())
    for name in ("named", "orphan", "mounted"):
        (inst.layout.guest_services / name / "sub").mkdir(parents=True)
    engine.mounted = {str(inst.layout.guest_services / "mounted" / "sub"), "/elsewhere"}
    (inst.layout.guest_services / "orphan" / "sub" / "backend.sock").write_text("")

    (inst.layout.extension_dir(KEY) / RECORD_FILE).write_text("{")  # a record that cannot be read: all stay
    inst._recover_locked()
    assert sorted(os.listdir(inst.layout.guest_services)) == ["mounted", "named", "orphan"]

    (inst.layout.extension_dir(KEY) / RECORD_FILE).write_text(json.dumps(make_record(gs_key="named").to_json()))
    inst._recover_locked()
    assert sorted(os.listdir(inst.layout.guest_services)) == ["mounted", "named"]


@pytest.mark.parametrize("content", ["{garbage", "[]", "null", "0", '"text"'])
def test_rm_of_an_extension_whose_record_cannot_be_read_removes_it_by_its_name(tmp_path, content):
    """Found by a bug hunt: `ls` skipped it, and `rm` and `rm --forget` both failed on the record, so nothing
    could remove it. Its backend goes by the project name dockext gives every backend (compose's labels). JSON
    that is not an object (a second bug hunt) is unreadable the same way, not a crash of `ls` and `rm`."""
    inst, compose = installer(tmp_path)
    target = inst.layout.extension_dir(KEY)
    extension_files(target, RECORD_FILE, make_record().to_json())
    (target / RECORD_FILE).write_text(content)
    with pytest.raises(StateError) as info:
        Store(inst.layout).read(KEY)
    assert info.value.hint == f"`dockext rm {KEY}` removes the extension all the same."
    assert Store(inst.layout).records() == []  # `ls` goes on
    assert inst.remove(KEY) is None
    assert compose.calls == [("down", PROJECT, "")]
    assert not target.exists() and Store(inst.layout).keys() == []

    extension_files(target, RECORD_FILE, {"schema": 1})  # and --forget: the files only
    compose.calls.clear()
    assert inst.remove(KEY, forget=True) is None
    assert compose.calls == [] and not target.exists()


def test_a_failed_install_says_why_even_when_the_grants_file_is_unreadable(tmp_path):
    """Found by a bug hunt: the install's clean-up (dropping the new extension's grants) read permissions.json,
    and an unreadable one replaced the real reason (here: an icon the image does not have) with its own."""
    import contextlib as _contextlib

    from dockext import permissions
    from dockext.errors import MetadataError

    class Files:
        def read(self, path, what, limit=4 << 20):
            return json.dumps({"icon": "/icon.svg", "ui": {"dashboard-tab": {"title": "X", "root": "/ui",
                                                                            "src": "index.html"}}}).encode()

        def copy_file(self, *a, **k):
            return False  # not in the image

        def copy_tree(self, *a, **k):
            return False

    class Engine(StubEngine):
        socket_path = "/var/run/docker.sock"

        def find_image(self, ref):
            return {"Id": "sha256:" + "1" * 64, "Config": {"Labels": {}}}

        @_contextlib.contextmanager
        def image_files(self, image_id, owner):
            yield Files()

    inst, _ = installer(tmp_path, Engine())
    (inst.layout.root / permissions.FILE).write_text("{not json")
    with pytest.raises(MetadataError, match=r"icon: /icon\.svg does not exist in the image"):
        inst.install("acme/ext:1.0")
    assert Store(inst.layout).keys() == []
