"""Runs the commands extensions ask for: the docker CLI, commands in the backend, host binaries.

:func:`plan` turns a request into an argv under dockext's policy (pure, see :mod:`dockext.argv`);
:class:`ProcessGroup` runs plans as process groups owned by one UI instance, so that closing the UI kills
everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import argv as policy
from .errors import ExecRefused
from .store import Record

__all__ = ["ExecPlan", "ExecResult", "ProcessGroup", "docker_cli", "plan"]

OUTPUT_CAP = 32 << 20  # bytes kept per stream; the rest is read and dropped
KILL_GRACE = 2.0


@dataclass(frozen=True)
class ExecPlan:
    argv: list[str]
    cwd: str | None
    env: dict[str, str]
    display: str  # the `cmd` reported back: the joined command line


@dataclass(frozen=True)
class ExecResult:
    cmd: str
    code: int | None
    stdout: str
    stderr: str
    killed: bool
    signal: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "cmd": self.cmd, "code": self.code, "stdout": self.stdout, "stderr": self.stderr,
            "killed": self.killed, "signal": self.signal,
        }


def docker_cli() -> str:
    found = shutil.which("docker")
    if not found:
        raise ExecRefused("the docker CLI is not installed on this host", hint="Install the docker client.")
    return found


def _base_env(docker_host: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DOCKER_CONTEXT", None)
    env["DOCKER_HOST"] = docker_host
    return env


def plan(
    record: Record,
    ext_dir: Path,
    cli: str,
    cmd: Any,
    args: Any,
    options: Mapping[str, Any] | None,
    *,
    docker_host: str,
) -> ExecPlan:
    if not isinstance(cmd, str) or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ExecRefused("exec needs a command string and a list of string arguments")
    options = options or {}
    cwd = options.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ExecRefused("options.cwd must be a string")
    user_env = policy.sanitize_env(options.get("env"))
    tokens = policy.split_command_line(cmd, args)
    line = policy.joined(cmd, args)
    if cli == "docker":
        env = _base_env(docker_host)
        env.update(user_env)
        env["DOCKER_HOST"] = docker_host
        return ExecPlan([docker_cli(), *policy.docker_argv(tokens)], cwd, env, f"docker {line}")
    if cli == "vm":
        if record.vm is None:
            raise ExecRefused("this extension has no backend (no vm section in metadata.json)")
        if not tokens:
            raise ExecRefused("no command given")
        argv = [docker_cli(), "exec"]
        if cwd:
            argv += ["--workdir", cwd]
        for k, v in user_env.items():
            argv += ["--env", f"{k}={v}"]
        argv += [record.vm.container, *tokens]
        return ExecPlan(argv, None, _base_env(docker_host), line)
    if cli == "host":
        if not tokens:
            raise ExecRefused("no command given")
        name = policy.host_binary(tokens[0], record.host_binaries)
        host_dir = ext_dir / "host"
        env = _base_env(docker_host)
        env.update(user_env)
        env["PATH"] = os.pathsep.join([str(host_dir), os.environ.get("PATH", os.defpath)])
        env["DOCKER_HOST"] = docker_host
        return ExecPlan([str(host_dir / name), *tokens[1:]], cwd or str(host_dir), env, line)
    raise ExecRefused(f"unknown cli {cli!r}: expected docker, vm or host")


class ProcessGroup:
    """The processes one UI instance started. :meth:`close` ends them all (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self._procs: set[asyncio.subprocess.Process] = set()
        self.closed = False

    async def run(self, p: ExecPlan) -> ExecResult:
        if self.closed:
            raise ExecRefused("this extension UI has been closed")
        try:
            proc = await asyncio.create_subprocess_exec(
                *p.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=p.cwd,
                env=p.env,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            return ExecResult(p.display, 127, "", f"{exc.filename or p.argv[0]}: not found\n", False, None)
        except PermissionError as exc:
            return ExecResult(p.display, 126, "", f"{exc.filename or p.argv[0]}: permission denied\n", False, None)
        except NotADirectoryError:
            return ExecResult(p.display, 1, "", f"cwd {p.cwd}: not a directory\n", False, None)
        self._procs.add(proc)
        try:
            assert proc.stdout and proc.stderr
            out, err = await asyncio.gather(_read_capped(proc.stdout), _read_capped(proc.stderr))
            code = await proc.wait()
        except asyncio.CancelledError:
            await self._kill(proc)
            raise
        finally:
            self._procs.discard(proc)
        sig = signal.Signals(-code).name if code < 0 else None
        return ExecResult(
            p.display, code if code >= 0 else None, out.decode(errors="replace"), err.decode(errors="replace"),
            sig is not None, sig,
        )

    async def close(self) -> None:
        self.closed = True
        await asyncio.gather(*(self._kill(p) for p in list(self._procs)))

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    kept = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        if kept < OUTPUT_CAP:
            chunks.append(chunk[: OUTPUT_CAP - kept])
            kept += len(chunks[-1])
