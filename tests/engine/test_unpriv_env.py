"""The unprivileged test user (tests/support/unpriv.py) can run dockext and reach the engine."""

from __future__ import annotations

import grp
import time
from pathlib import Path

import pytest

from tests.support.unpriv import USER, ensure_unprivileged

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def unpriv():
    return ensure_unprivileged(REPO)


def test_user_is_ordinary_and_in_the_docker_group(unpriv):
    assert unpriv.user == USER
    assert unpriv.uid != 0 and unpriv.gid != 0
    assert grp.getgrnam("docker").gr_gid in unpriv.groups
    out = unpriv.run(["id", "-u"])
    assert out.stdout.strip() == str(unpriv.uid)
    assert unpriv.home.is_dir() and unpriv.home.stat().st_uid == unpriv.uid


def test_user_runs_dockext(unpriv):
    if (REPO / "src" / "dockext" / "cli.py").exists():
        result = unpriv.run([str(unpriv.dockext), "--help"])
        assert result.returncode == 0, result.stderr
        assert "serve" in result.stdout
    else:  # the CLI is not written yet: the package at least imports
        result = unpriv.run([str(unpriv.python), "-c", "import dockext.errors"])
        assert result.returncode == 0, result.stderr
    # installed, not editable: the user does not depend on the repo being readable
    result = unpriv.run([str(unpriv.python), "-c", "import dockext; print(dockext.__file__)"])
    assert result.stdout.startswith("/var/tmp/dockext-unpriv/venv/"), result.stdout + result.stderr


def test_user_reaches_the_engine_through_the_docker_group(unpriv):
    result = unpriv.run(["docker", "version", "--format", "{{.Server.APIVersion}}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("1.")


def test_second_call_reuses_the_venv(unpriv):
    t0 = time.monotonic()
    assert ensure_unprivileged(REPO) == unpriv
    assert time.monotonic() - t0 < 3
