"""A Docker engine of a test's own beside the machine's (a rootless one, one with ``--userns-remap``): started in
a session of its own, reached by root's client of its socket, and stopped with whatever runs on it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest


@contextlib.contextmanager
def engine_process(argv: list[str], *, socket: Path, log: Path, what: str, timeout: float = 90,
                   **popen: Any) -> Iterator[docker.DockerClient]:
    """Run ``argv`` (``popen``: Popen's other arguments) until its engine answers on ``socket``; yield a client of
    it. On exit its containers and their networks are removed and its process group is stopped (SIGTERM, then
    SIGKILL after 60 s)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **popen)
    client = None
    try:
        deadline = time.monotonic() + timeout
        while client is None:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                candidate = docker.DockerClient(base_url=f"unix://{socket}", timeout=60)
                candidate.ping()
                client = candidate
            except Exception:  # not up yet: no socket, connection refused, a 500 while it starts
                if time.monotonic() > deadline:
                    pytest.fail(f"{what} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield client
    finally:
        if client is not None:
            try:  # (an engine that cannot even list them must still be stopped below)
                for container in client.containers.list(all=True):
                    with contextlib.suppress(docker.errors.APIError):
                        container.remove(force=True)
                client.networks.prune()  # the networks of those containers
            except docker.errors.APIError as exc:
                print(f"{what}: its containers could not be removed: {exc}", flush=True)
            client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_leftover(pidfile: Path, ours: Callable[[int], bool]) -> None:
    """The engine an interrupted session left running (its pid file) is stopped, so a new one can start; only if
    ``ours(pid)``: a pid file a dockerd killed with SIGKILL left may name a pid the system has given since to any
    other process."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().strip())
        if not ours(pid):
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            os.kill(pid, 0)  # ProcessLookupError (an OSError) once it is gone
            time.sleep(0.1)
