"""The rootless engine fixture (tests/support/rootless.py) stops a leftover engine by its pid file: only if that pid
is still a process of the engine's user. A pid file left by a dockerd killed with SIGKILL names a pid the system may
have given since to any process, root's included (another test's dockerd, pytest itself)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.support.rootless import _stop_leftover


def test_a_stale_pid_file_naming_another_users_process_stops_nothing(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # this user's (root's as CI runs), not the engine user's
    try:
        (tmp_path / "docker.pid").write_text(f"{bystander.pid}\n")
        _stop_leftover(tmp_path, uid=os.getuid() + 4242)
        assert bystander.poll() is None, "the fixture killed a process that was not its engine"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_leftover_engine_of_the_user_is_stopped(tmp_path: Path) -> None:
    # not a child of this process (as a leftover engine is not): reaped by init once stopped
    pid = int(subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                             check=True).stdout)
    try:
        (tmp_path / "docker.pid").write_text(f"{pid}\n")
        _stop_leftover(tmp_path, uid=os.getuid())
        assert not Path(f"/proc/{pid}").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
