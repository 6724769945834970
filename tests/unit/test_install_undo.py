"""The undo of a failed install when the engine does not answer (reference R5; the real engine's case, dockerd
restarted or killed under `compose up`, is tests/engine/test_engine_restart.py): it tries again while the engine
is away for a while, and past that leaves the files to the next command's recovery rather than orphaning what
compose made. Either way the volumes the install made go, and one it found stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockext import installer as installer_module
from dockext.errors import ComposeError, EngineError, EngineUnavailable
from dockext.installer import INSTALL_FILE, PENDING_FILE, Installer
from dockext.paths import Layout
from dockext.store import RECORD_FILE, Store

from .test_reliability_cases import KEY, PROJECT, StubEngine, extension_files, make_record


class Engine(StubEngine):
    """Answers a ping unless its compose has more failing `down`s to give (the engine not back yet)."""

    compose: EngineGoesAway | None = None

    def ping(self) -> None:
        if self.compose is not None and 0 < self.compose.downs <= self.compose.failing_downs:
            raise EngineUnavailable("cannot reach the Docker engine")


class Steps:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, message: str) -> None:
        self.lines.append(message)

    def pull(self, event: object) -> None:
        pass


class EngineGoesAway:
    """Compose whose `up` makes a volume and then loses the engine; its `down` fails ``failing_downs`` times
    (the engine not back yet), then works."""

    def __init__(self, engine: StubEngine, failing_downs: int, error: Exception | None = None) -> None:
        self.engine = engine
        self.failing_downs = failing_downs
        self.error = error or EngineError("the Docker engine is not running")
        self.downs = 0
        if isinstance(engine, Engine):
            engine.compose = self

    def up(self, project: str, path: Path, env: dict[str, str]) -> None:
        self.engine.volumes.add(f"{project}_data")
        raise ComposeError("starting the backend (docker compose up) failed: Cannot connect to the Docker daemon")

    def down(self, project: str, path: Path | None = None) -> None:
        self.downs += 1
        if self.downs <= self.failing_downs:
            raise self.error


def failed_install(home: Path, failing_downs: int, *, engine_answers: bool = False,
                   ) -> tuple[Installer, StubEngine, EngineGoesAway, Steps]:
    engine = Engine(volumes={f"{PROJECT}_kept"})  # left by an earlier rm, with its data
    compose = EngineGoesAway(engine, failing_downs)
    if engine_answers:  # compose fails for a reason of its own
        engine.compose = None
        compose.error = ComposeError("removing the backend (docker compose down) failed: no such service: x")
    steps = Steps()
    inst = Installer(Layout(home), engine=engine, compose=compose, reporter=steps)  # type: ignore[arg-type]
    inst.layout.ensure()
    stage = inst.layout.staging / f"{KEY}.0001"
    record = make_record()
    extension_files(stage, PENDING_FILE, record.to_json())
    with pytest.raises(ComposeError):
        inst._activate(record, stage)
    return inst, engine, compose, steps


def test_an_engine_back_within_the_wait_is_undone_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer_module, "ENGINE_BACK_WAIT", 30.0)
    inst, engine, compose, steps = failed_install(tmp_path, failing_downs=2)
    assert compose.downs == 3
    assert not inst.layout.extension_dir(KEY).exists()
    assert engine.volumes == {f"{PROJECT}_kept"} and engine.removed == {f"{PROJECT}_data"}
    assert "Removing extension (install failed)" in steps.lines
    assert not any("next dockext command" in line for line in steps.lines)
    assert not inst.needs_recovery()


def test_an_engine_away_longer_leaves_the_undo_to_the_next_command(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer_module, "ENGINE_BACK_WAIT", 0.3)
    inst, engine, compose, steps = failed_install(tmp_path, failing_downs=1000)
    target = inst.layout.extension_dir(KEY)
    # the files are kept, not listed: deleted, they would orphan the containers, network and volume compose made
    assert (target / PENDING_FILE).exists() and not (target / RECORD_FILE).exists()
    assert json.loads((target / INSTALL_FILE).read_bytes()) == {"volumes_before": [f"{PROJECT}_kept"]}
    assert Store(inst.layout).records() == []
    assert steps.lines[-1] == "The Docker engine does not answer: the next dockext command finishes removing it"
    assert engine.removed == set()
    assert inst.needs_recovery()
    assert inst._recover_locked() == []  # the engine still away: left for the next time
    assert target.exists()

    compose.failing_downs = 0  # the engine is back
    assert inst._recover_locked() == [KEY]
    assert not target.exists() and list(inst.layout.guest_services.iterdir()) == []
    assert engine.volumes == {f"{PROJECT}_kept"} and engine.removed == {f"{PROJECT}_data"}
    assert not inst.needs_recovery()


def test_a_compose_failure_while_the_engine_answers_is_not_waited_for_nor_called_the_engines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a bug hunt: any failure of `compose down` was tried for 15 s and then said to be "The Docker
    engine does not answer", while the engine answered."""
    monkeypatch.setattr(installer_module, "ENGINE_BACK_WAIT", 30.0)
    inst, _, compose, steps = failed_install(tmp_path, failing_downs=1000, engine_answers=True)
    assert compose.downs == 4  # tried once more (each time by its file, then by its project), not for 30 s
    assert steps.lines[-1] == ("Could not remove its backend (removing the backend (docker compose down) failed: no "
                               "such service: x): the next dockext command tries again")
    assert (inst.layout.extension_dir(KEY) / PENDING_FILE).exists() and Store(inst.layout).records() == []


def test_an_interrupted_removal_keeps_every_volume(tmp_path: Path) -> None:
    """An rm's tombstone (no install journal): recovery finishes the removal, and named volumes stay, as rm's do."""
    engine = StubEngine(volumes={f"{PROJECT}_data"})
    compose = EngineGoesAway(engine, failing_downs=0)
    inst = Installer(Layout(tmp_path), engine=engine, compose=compose)  # type: ignore[arg-type]
    inst.layout.ensure()
    extension_files(inst.layout.extension_dir(KEY), PENDING_FILE, make_record().to_json())
    assert inst._recover_locked() == [KEY]
    assert compose.downs == 1 and engine.removed == set()


def test_rm_drops_an_install_journal_a_crash_left_before_its_tombstone(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An install killed between its commit and the deletion of its journal leaves `install.json` in an installed
    extension. Were it there beside an rm's tombstone, recovering that rm would delete the extension's volumes."""
    engine = Engine(volumes={f"{PROJECT}_data"})
    compose = EngineGoesAway(engine, failing_downs=0)
    inst = Installer(Layout(tmp_path), engine=engine, compose=compose)  # type: ignore[arg-type]
    inst.layout.ensure()
    target = inst.layout.extension_dir(KEY)
    extension_files(target, RECORD_FILE, make_record().to_json())
    (target / INSTALL_FILE).write_text(json.dumps({"volumes_before": []}))
    at_tombstone: list[bool] = []

    def reached(point: str) -> None:
        if point == "rm:tombstoned":
            at_tombstone.append((target / INSTALL_FILE).exists())

    monkeypatch.setattr(installer_module.crashpoint, "reached", reached)
    inst.remove("acme/ext")
    assert at_tombstone == [False]
    assert engine.removed == set()


class RejectsTheFile(EngineGoesAway):
    """Compose that cannot read the project's file (a key it does not know): `down -f` fails, `down -p` works."""

    def __init__(self, engine: StubEngine) -> None:
        super().__init__(engine, failing_downs=0)
        self.calls: list[Path | None] = []

    def down(self, project: str, path: Path | None = None) -> None:
        self.calls.append(path)
        if path is not None:
            raise ComposeError("stopping the backend (docker compose down) failed: additional property not allowed")


def test_recovery_of_an_install_whose_compose_file_compose_rejects_goes_by_the_project(tmp_path: Path) -> None:
    """An install killed after `compose up` of a file compose rejects: the next command's recovery does not stay
    stuck on `down -f` (it would fail at every command); it takes the project down by its labels, and removes the
    volume the install made."""
    engine = StubEngine(volumes={f"{PROJECT}_kept", f"{PROJECT}_data"})
    compose = RejectsTheFile(engine)
    inst = Installer(Layout(tmp_path), engine=engine, compose=compose)  # type: ignore[arg-type]
    inst.layout.ensure()
    target = inst.layout.extension_dir(KEY)
    extension_files(target, PENDING_FILE, make_record().to_json())
    (target / INSTALL_FILE).write_text(json.dumps({"volumes_before": [f"{PROJECT}_kept"]}))
    assert inst.needs_recovery()
    assert inst._recover_locked() == [KEY]
    assert compose.calls == [target / "vm" / "docker-compose.yaml", None]
    assert not target.exists() and engine.removed == {f"{PROJECT}_data"}
    assert not inst.needs_recovery()
