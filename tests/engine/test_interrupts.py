"""Ctrl-C, SIGTERM or SIGHUP during an install or an update, and two installs at once (reference R6, R10): real
engine, real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import run_dockext

from .test_install import assert_nothing_left, get_over_socket, labelled, ls_json, record

pytestmark = pytest.mark.engine

PREFIX = "dockext-sig"
KEY = f"{PREFIX}_vm-image"
PROJECT = f"{KEY}-desktop-extension"


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def start(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dockext.cli", *args], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DOCKEXT_HOME": str(home), "NO_COLOR": "1", **env},
    )


def read_until(proc: subprocess.Popen[str], text: str) -> list[str]:
    """The output lines up to the first one containing ``text`` (the command is then at that step)."""
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never printed: {seen} {proc.stderr.read() if proc.stderr else ''}")


#: what the CLI says for each signal: Ctrl-C (SIGINT) is Python's KeyboardInterrupt; SIGTERM and SIGHUP (a
#: closed terminal) unwind the same way (cli.unwind_on_termination)
SIGNALS = [(signal.SIGTERM, "Stopped by SIGTERM."), (signal.SIGINT, "Interrupted."),
           (signal.SIGHUP, "Stopped by SIGHUP.")]


@pytest.mark.parametrize("sig, said", SIGNALS, ids=[s.name for s, _ in SIGNALS])
def test_a_signal_during_an_install_rolls_it_back_at_once(home, fixture_image, docker_client, sig, said):
    ref = fixture_image("vm-image", repo_prefix=PREFIX)
    proc = start(home, "install", "-f", ref, DOCKEXT_BACKEND_TIMEOUT="120")
    read_until(proc, "Starting service in Desktop VM")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Removing extension (install failed)" in out
    assert said in err
    assert ls_json(home) == []
    assert_nothing_left(home, docker_client, KEY, PROJECT)  # undone then, not left to the next command


@pytest.mark.parametrize("sig, said", SIGNALS, ids=[s.name for s, _ in SIGNALS])
def test_a_signal_during_an_update_brings_the_old_version_back(home, fixture_image, docker_client, sig, said):
    v1 = fixture_image("vm-image", repo_prefix=PREFIX)
    slow = f"{PREFIX}/vm-image:9.0.0"  # a backend that never creates its socket: the update waits for it
    docker_client.images.get(fixture_image("bad-no-socket", repo_prefix=PREFIX)).tag(slow)
    run_dockext("install", "-f", v1, home=home)
    try:
        proc = start(home, "update", "-f", slow, DOCKEXT_BACKEND_TIMEOUT="120")
        read_until(proc, "Starting service in Desktop VM")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 128 + sig, err
        assert f"Update failed: restoring {v1}" in out and said in err
        [row] = ls_json(home)
        assert row["image"] == v1
        [ctr] = labelled(docker_client, f"com.docker.compose.project={PROJECT}")
        assert ctr.image.id == docker_client.images.get(v1).id and ctr.status == "running"
        status, _ = get_over_socket(home / "gs" / record(home, KEY)["vm"]["gs_key"] / "backend.sock", "/hello")
        assert status == 200
        assert sorted(p.name for p in (home / "extensions").iterdir()) == [KEY]
    finally:
        run_dockext("rm", KEY, home=home, check=False)
        docker_client.images.remove(slow)
    assert_nothing_left(home, docker_client, KEY, PROJECT)


def test_two_installs_of_one_extension_at_once_give_one_install_and_a_clear_refusal(home, fixture_image, docker_client):
    ref = fixture_image("vm-image", repo_prefix=PREFIX)
    procs = [start(home, "install", "-f", ref) for _ in range(2)]
    results = [(p.wait(120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(code for code, _, _ in results) == [0, 1], results
    [(_, _, refused)] = [r for r in results if r[0] == 1]
    assert f"extension {PREFIX}/vm-image is already installed" in refused  # it waited for the lock, then saw it
    assert [r["image"] for r in ls_json(home)] == [ref]
    assert len(labelled(docker_client, f"com.docker.compose.project={PROJECT}")) == 1
    run_dockext("rm", ref, home=home)
    assert_nothing_left(home, docker_client, KEY, PROJECT)
