"""Model-based test of install, update, rm and kill -9 at every crash point, in any order (reference R20).

A Hypothesis ``RuleBasedStateMachine`` drives the real CLI against the real engine and Compose, with a model
that is only "which version is installed" (plus what must survive: the UI's origin and a file in the named
volume). Each example starts with one version installed. Rules: install, update (between
1.0.0 and 2.0.0 of the two-service compose fixture, to the same version: a repair, or to a version whose backend
never answers: rolled back), rm, any of those killed at
one of its crash points (``DOCKEXT_CRASH_AT``, src/dockext/crashpoint.py), and recovery by ``dockext ls``.
After a crash the state on disk is left as the kill left it: the next rule is either ``ls`` or another
command, which must recover first by itself.

After every step, unless a crash is waiting for its recovery (reference B2's invariants):

* nothing of an operation is left: no staging or trash directory, no ``.next-``/``.prev-`` directory, no copy
  container of this home, one guest-services directory per installed backend;
* ``ls`` is truthful: the model's version or nothing, listed with both services running;
* the containers labelled with the extension are its two services, running the recorded image, and its backend
  answers on its socket;
* the file written into its named volume is still there, and the UI's origin is the one it had since install;
* and, even right after a crash: never two backends (two ``server`` containers) at once.

Engine restarts are left to tests/engine/test_engine_restart.py. Derandomised and sized for CI (8 examples of
up to 8 steps, about 50 commands: 105 s on a 2-core machine); ``DOCKEXT_LIFECYCLE_EXAMPLES`` and
``DOCKEXT_LIFECYCLE_STEPS`` run it longer, ``DOCKEXT_LIFECYCLE_SHRINK=1`` also shrinks a failure (slow with a
real engine: each try runs commands).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dockext.crashpoint import POINTS
from dockext.paths import Layout
from tests.support.backends import UnixHTTPConnection
from tests.support.cli import run_dockext
from tests.support.images import build_fixture

pytestmark = pytest.mark.engine

PREFIX = "dockext-lcm"  # names of its own: another session may use the same engine meanwhile
NAME = f"{PREFIX}/compose"
KEY = f"{PREFIX}_compose"
PROJECT = f"{KEY}-desktop-extension"
VOLUME = f"{PROJECT}_data"
VERSIONS = ("1.0.0", "2.0.0")
BROKEN = "3.0.0"  # the bad-no-socket fixture under this name: its backend never creates its socket
SLOW_TO_FAIL = {"DOCKEXT_BACKEND_TIMEOUT": "3"}
EXAMPLES = int(os.environ.get("DOCKEXT_LIFECYCLE_EXAMPLES", "8"))
STEPS = int(os.environ.get("DOCKEXT_LIFECYCLE_STEPS", "8"))


@functools.cache
def _client() -> Any:
    return docker.from_env(timeout=120)


@functools.cache
def _images() -> dict[str, str]:
    """version -> image ref, built once (and only when their inputs changed since the last session)."""
    client = _client()
    refs = {v: build_fixture(client, "compose", tag=v, repo_prefix=PREFIX) for v in VERSIONS}
    bad = build_fixture(client, "bad-no-socket", repo_prefix=PREFIX)
    client.images.get(bad).tag(NAME, BROKEN)
    refs[BROKEN] = f"{NAME}:{BROKEN}"
    return refs


def _labelled(label: str) -> list[Any]:
    return list(_client().containers.list(all=True, filters={"label": label}))


def _get(sock: Path, url: str) -> tuple[int, str]:
    conn = UnixHTTPConnection(str(sock))
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _server() -> Any:
    [ctr] = [c for c in _labelled(f"com.docker.compose.project={PROJECT}")
             if c.labels["com.docker.compose.service"] == "server"]
    return ctr


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.images = _images()
        self.home = Path(tempfile.mkdtemp(prefix="dxlcm-")) / "home"  # short: sun_path is 108 bytes
        self.owner_label = f"dockext.copy={self._owner()}"
        # the model
        self.version: str | None = None  # installed (committed) version
        self.dirty = False  # a crash left its state for the next command to recover
        self.slug: str | None = None  # the UI's origin since the extension was installed
        self.marker: str | None = None  # what the file in its named volume holds
        self.steps: list[str] = []
        self._drop_volume()  # every example starts without the volume (teardown removes it too)

    def _owner(self) -> str:
        return Layout(self.home).owner

    # -- running the CLI -------------------------------------------------------------------------------
    def _dockext(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
        self.steps.append(" ".join(args) + (f"  {env}" if env else ""))
        return run_dockext(*args, home=self.home, env=env, check=check, timeout=180)

    def _ls(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self._dockext("ls", "--format", "json").stdout)
        return rows

    def _record(self) -> dict[str, Any]:
        rec: dict[str, Any] = json.loads((self.home / "extensions" / KEY / "extension.json").read_text())
        return rec

    def _settled(self) -> None:
        """The state is clean again: note the origin of a new install, and write the volume's file once."""
        self.dirty = False
        if self.version is None:
            self.slug = None
            return
        if self.slug is None:
            self.slug = self._record()["origin_slug"]
        if self.marker is None:
            value = uuid.uuid4().hex
            code = f"open('/data/marker', 'w').write({value!r})"
            result = _server().exec_run(["python3", "-c", code], user="root")
            assert result.exit_code == 0, result.output
            self.marker = value

    # -- rules -----------------------------------------------------------------------------------------
    @initialize(version=st.sampled_from(VERSIONS))
    def installed_to_begin_with(self, version: str) -> None:
        """Each example starts installed: otherwise most of the few steps went to installs killed one by one."""
        self.install(version)

    @precondition(lambda self: self.version is None)
    @rule(version=st.sampled_from(VERSIONS))
    def install(self, version: str) -> None:
        out = self._dockext("install", "-f", self.images[version])
        assert "installed successfully" in out.stdout
        self.version = version
        self._settled()

    @precondition(lambda self: self.version is not None)
    @rule(version=st.sampled_from((*VERSIONS, BROKEN)))
    def update(self, version: str) -> None:
        """To the other version, to the same one (a repair), or to one whose backend never answers (rolled back)."""
        assert self.version is not None
        ref = self.images[version]
        if version == BROKEN:
            out = self._dockext("update", "-f", ref, env=SLOW_TO_FAIL, check=False)
            assert out.returncode == 1, out.stdout + out.stderr
            assert f"and {self.images[self.version]} was restored" in out.stderr, out.stderr
        else:
            out = self._dockext("update", "-f", ref)
            assert f'Extension "Compose Backend" updated to {ref}' in out.stdout, out.stdout
            self.version = version
        self._settled()

    @precondition(lambda self: self.version is not None)
    @rule()
    def rm(self) -> None:
        out = self._dockext("rm", NAME)
        assert 'Extension "Compose Backend" removed' in out.stdout, out.stdout
        self.version = self.slug = None
        self._settled()

    def _crash(self, op: str, step: str, *args: str) -> None:
        out = self._dockext(*args, env={"DOCKEXT_CRASH_AT": f"{op}:{step}"}, check=False)
        assert out.returncode == -9, f"{op}:{step} was never reached ({out.returncode}): {out.stdout}{out.stderr}"
        self.dirty = True

    @precondition(lambda self: self.version is None)
    @rule(step=st.sampled_from(POINTS["install"]), version=st.sampled_from(VERSIONS))
    def install_killed(self, step: str, version: str) -> None:
        self._crash("install", step, "install", "-f", self.images[version])
        if step == "committed":
            self.version = version
            self.slug = None  # a new install: a new origin

    @precondition(lambda self: self.version is not None)
    @rule(step=st.sampled_from(POINTS["update"]), version=st.sampled_from(VERSIONS))
    def update_killed(self, step: str, version: str) -> None:
        self._crash("update", step, "update", "-f", self.images[version])
        if POINTS["update"].index(step) >= POINTS["update"].index("committed"):
            self.version = version

    @precondition(lambda self: self.version is not None)
    @rule(step=st.sampled_from(POINTS["rm"]))
    def rm_killed(self, step: str) -> None:
        self._crash("rm", step, "rm", NAME)
        self.version = None  # the tombstone is down: the next command finishes the removal
        self.slug = None

    @precondition(lambda self: self.dirty)
    @rule()
    def recover_with_ls(self) -> None:
        """Only the leftover directories are looked at before: `ls` is the command that recovers."""
        self._ls()
        self._settled()

    # -- invariants ------------------------------------------------------------------------------------
    @invariant()
    def never_two_backends(self) -> None:
        servers = [c for c in _labelled(f"com.docker.compose.project={PROJECT}")
                   if c.labels.get("com.docker.compose.service") == "server"]
        assert len(servers) <= 1, [c.name for c in servers]

    @precondition(lambda self: not self.dirty)
    @invariant()
    def nothing_of_an_operation_is_left(self) -> None:
        """Looked at before `ls` runs (which would clean up): the command itself left nothing behind."""
        extensions = self.home / "extensions"
        names = sorted(p.name for p in extensions.iterdir()) if extensions.exists() else []
        assert names == ([KEY] if self.version else []), names
        staging = self.home / "staging"
        assert not staging.exists() or list(staging.iterdir()) == []
        gs = self.home / "gs"
        expected = [self._record()["vm"]["gs_key"]] if self.version else []
        assert (sorted(p.name for p in gs.iterdir()) if gs.exists() else []) == expected
        assert _labelled(self.owner_label) == []  # no copy container left

    @precondition(lambda self: not self.dirty)
    @invariant()
    def ls_is_truthful_and_the_backend_answers(self) -> None:
        rows = self._ls()
        labelled = _labelled(f"dockext.extension={KEY}")
        project = _labelled(f"com.docker.compose.project={PROJECT}")
        if self.version is None:
            assert rows == []
            assert labelled == [] and project == [], [c.name for c in project]
            assert not (self.home / "gs").exists() or list((self.home / "gs").iterdir()) == []
            return
        ref = self.images[self.version]
        [row] = rows
        assert (row["image"], row["version"], row["vm"]) == (ref, self.version, "Running(2)"), row
        rec = self._record()
        assert rec["image"] == ref
        assert rec["image_id"] == _client().images.get(ref).id
        assert rec["origin_slug"] == self.slug  # the same origin through updates: localStorage survives
        assert sorted(c.labels["com.docker.compose.service"] for c in project) == ["helper", "server"]
        assert {c.id for c in labelled} == {c.id for c in project}
        assert {c.image.id for c in project} == {rec["image_id"]}
        assert all(c.status == "running" for c in project), [(c.name, c.status) for c in project]
        status, body = _get(self.home / "gs" / rec["vm"]["gs_key"] / "compose.sock", "/whoami")
        assert status == 200 and json.loads(body) == {"hostname": "compose-api"}
        read = _server().exec_run(["python3", "-c", "print(open('/data/marker').read())"])
        assert read.output.decode().strip() == self.marker, read.output

    # -- teardown --------------------------------------------------------------------------------------
    def teardown(self) -> None:
        print(f"example of {len(self.steps)} commands:", *self.steps, sep="\n  dockext ")  # shown on failure
        try:
            run_dockext("ls", home=self.home, check=False)  # finishes what a last crash left
            if (self.home / "extensions" / KEY / "extension.json").exists():
                run_dockext("rm", NAME, home=self.home, check=False)
            assert _labelled(f"com.docker.compose.project={PROJECT}") == []
            assert _labelled(f"dockext.extension={KEY}") == []
            assert _labelled(self.owner_label) == []
        finally:
            for ctr in _labelled(f"com.docker.compose.project={PROJECT}"):  # only if the assertion failed
                ctr.remove(force=True)
            self._drop_volume()
            shutil.rmtree(self.home.parent, ignore_errors=True)

    @staticmethod
    def _drop_volume() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            _client().volumes.get(VOLUME).remove(force=True)


_phases = [Phase.explicit, Phase.generate]
if os.environ.get("DOCKEXT_LIFECYCLE_SHRINK") == "1":
    _phases.append(Phase.shrink)

LifecycleMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    derandomize=True,  # the same sequences on every run: a CI failure is reproduced by running it again
    database=None,
    deadline=None,
    phases=_phases,
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
)
TestLifecycle = LifecycleMachine.TestCase


def teardown_module() -> None:
    """The BROKEN tag is this module's own name for the bad-no-socket image."""
    if _images.cache_info().currsize:
        with contextlib.suppress(docker.errors.ImageNotFound):
            _client().images.remove(f"{NAME}:{BROKEN}")
