"""Runs the commands extensions ask for: the docker CLI, commands in the backend, host binaries.

:func:`plan` turns a request into an argv under dockext's policy (pure, see :mod:`dockext.argv`);
:class:`ProcessGroup` runs plans as process groups owned by one UI instance, so that closing the UI kills
everything it started.

How a process dies with its UI (security reference A4):

* every command starts in a session and process group of its own (``start_new_session``), so that
  :meth:`ProcessGroup.terminate` reaches its children too: ``SIGTERM`` to the group, ``SIGKILL`` after
  :data:`KILL_GRACE` seconds. Closing a UI instance terminates every group it started, also the members
  left behind by a leader that has already exited;
* if dockext itself dies without cleaning up (``kill -9``), two things still end the processes: the
  direct child gets ``SIGTERM`` from the kernel (``PR_SET_PDEATHSIG``, Linux), and a small guardian
  process (:class:`_Guardian`, started on first use) sees its pipe from dockext close and terminates every
  group dockext had registered with it, grandchildren included (the death signal reaches direct children
  only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import argv as policy
from .dockerhost import DockerHost
from .errors import ExecRefused
from .store import Record

__all__ = [
    "KILL_GRACE",
    "MAX_PROCESSES",
    "ExecPlan",
    "ExecResult",
    "ProcessGroup",
    "docker_cli",
    "exit_status",
    "plan",
    "spawn_failure",
]

OUTPUT_CAP = 32 << 20  # bytes kept per stream by run(); the rest is read and dropped
#: bytes of output all run()s of this process hold at once: one UI may run MAX_PROCESSES commands, and 64 x 2 x 32
#: MiB would be 4 GiB for one page; past it, output is read and dropped as past OUTPUT_CAP
OUTPUT_BUDGET = 256 << 20
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
MAX_PROCESSES = 64  # commands running at once for one UI instance


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


def _base_env(docker_host: DockerHost) -> dict[str, str]:
    """A host binary's: the user's environment, as in Docker Desktop (it runs as the user, whatever it reads)."""
    return docker_host.apply(os.environ)


def _client_env(docker_host: DockerHost) -> dict[str, str]:
    """The docker CLI's, for docker.cli.exec and vm.cli.exec: none of dockext's own variables but what it needs
    (``docker run -e NAME`` takes NAME's value from it: :data:`dockext.dockerhost.CLIENT_ENV`)."""
    return docker_host.client_env(os.environ)


def plan(
    record: Record,
    ext_dir: Path,
    cli: str,
    cmd: Any,
    args: Any,
    options: Mapping[str, Any] | None,
    *,
    docker_host: DockerHost,
    verbatim: bool = False,
    container: str | None = None,
) -> ExecPlan:
    """The argv, cwd and environment of one exec request, or :class:`ExecRefused`.

    ``verbatim=False`` (non-streaming exec): ``cmd`` and ``args`` are joined and split again like a POSIX
    shell without expansion. ``verbatim=True`` (streaming exec, as in Docker Desktop): ``[cmd, *args]`` is the
    argv as given; an argument with spaces stays one argument. The policy is the same in both modes.
    ``container``: where a ``vm`` command runs (the server's check of ``record.vm.container``: its ID).
    """
    if not isinstance(cmd, str) or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ExecRefused("exec needs a command string and a list of string arguments")
    options = options or {}
    cwd = options.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ExecRefused("options.cwd must be a string")
    if cwd is not None and "\x00" in cwd:
        raise ExecRefused("options.cwd contains a NUL character")
    user_env = policy.sanitize_env(options.get("env"))
    for text in (cmd, *args, cwd or "", *user_env, *user_env.values()):
        try:
            text.encode()
        except UnicodeEncodeError:  # JSON can carry a lone UTF-16 surrogate ("\ud800"); no argv or path can
            raise ExecRefused("exec's command, arguments, cwd and env must be text a program can be given: "
                              f"{text!r} holds a lone UTF-16 surrogate") from None
    tokens = _verbatim(cmd, args) if verbatim else policy.split_command_line(cmd, args)
    line = policy.joined(cmd, args)
    if cli == "docker":
        env = docker_host.apply({**_client_env(docker_host), **user_env})
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
        argv += [container or record.vm.container, *tokens]
        return ExecPlan(argv, None, _client_env(docker_host), line)
    if cli == "host":
        if not tokens:
            raise ExecRefused("no command given")
        name = policy.host_binary(tokens[0], record.host_binaries)
        host_dir = ext_dir / "host"
        env = docker_host.apply({**_base_env(docker_host), **user_env})
        env["PATH"] = os.pathsep.join([str(host_dir), os.environ.get("PATH", os.defpath)])
        return ExecPlan([str(host_dir / name), *tokens[1:]], cwd or str(host_dir), env, line)
    raise ExecRefused(f"unknown cli {cli!r}: expected docker, vm or host")


def _verbatim(cmd: str, args: list[str]) -> list[str]:
    tokens = [cmd, *args]
    if not cmd:
        raise ExecRefused("no command given")
    if any("\x00" in t for t in tokens):
        raise ExecRefused("an argument contains a NUL character")
    return tokens


def exit_status(returncode: int) -> tuple[int, str | None]:
    """``(status, signal name)`` of a finished process, as a shell reports it: killed by signal N is 128 + N."""
    if returncode >= 0:
        return returncode, None
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"SIG{-returncode}"
    return 128 - returncode, name


def spawn_failure(p: ExecPlan, exc: OSError) -> tuple[int, str]:
    """``(exit status, message)`` for a command that could not start: 127 not found, 126 not executable."""
    if isinstance(exc, FileNotFoundError):
        # which name the error carries depends on who spawned (subprocess names the cwd, uvloop the binary)
        if p.cwd is not None and (exc.filename == p.cwd or not os.path.isdir(p.cwd)):
            return 127, f"cwd {p.cwd}: no such directory"
        return 127, f"{exc.filename or p.argv[0]}: not found"
    if isinstance(exc, PermissionError):
        return 126, f"{exc.filename or p.argv[0]}: permission denied"
    if isinstance(exc, NotADirectoryError):
        return 1, f"cwd {p.cwd}: not a directory"
    return 126, f"{p.argv[0]}: cannot execute: {exc.strerror or exc}"


# -- dying with dockext ------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_PRCTL = _load_prctl()


def _child_setup() -> Callable[[], None] | None:
    """Runs in the child between fork and exec: SIGTERM when the thread that forked it (dockext's event
    loop) dies. The signal is tied to the parent *thread*; the event loop thread lives as long as the server."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # dockext died before the death signal was armed
            os._exit(1)

    return setup


# The guardian: reads "+<pgid>" / "-<pgid>" lines; at EOF (dockext exited, however it died) it terminates the
# groups still registered (SIGTERM, then SIGKILL after the grace period) and exits. A PGID stays allocated
# while any member of the group lives, so a registered group cannot be confused with another one.
_GUARDIAN_SOURCE = f"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = set()
for line in sys.stdin.buffer:
    try:
        pgid = int(line[1:])
    except ValueError:
        continue
    if line[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
def send(group, sig):
    try:
        os.killpg(group, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
groups = {{g for g in groups if send(g, signal.SIGTERM)}}
deadline = time.monotonic() + {KILL_GRACE}
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    groups = {{g for g in groups if send(g, 0)}}
for g in groups:
    send(g, signal.SIGKILL)
"""


class _Guardian:
    """The process that ends dockext's process groups when dockext dies without doing it (one per server)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()

    def add(self, pgid: int) -> None:
        self._groups.add(pgid)
        self._send(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        if pgid in self._groups:
            self._groups.discard(pgid)
            self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        for _ in range(2):
            stdin = self._stdin()
            if stdin is None:
                return
            try:
                stdin.write(line.encode())
                stdin.flush()
                return
            except OSError:  # the guardian is gone: start another one, which learns every group again
                self._proc = None

    def _stdin(self) -> IO[bytes] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.stdin
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GUARDIAN_SOURCE],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # ^C in dockext's terminal does not reach it
            )
        except OSError:
            self._proc = None
            return None
        stdin = self._proc.stdin
        assert stdin is not None
        with contextlib.suppress(OSError):
            stdin.write("".join(f"+{g}\n" for g in sorted(self._groups)).encode())
        return stdin


_guardian = _Guardian()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process group still has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Members that died after their parent are zombies until PID 1 reaps them, which a container's PID 1
    # may never do: they count as gone.
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


class ProcessGroup:
    """The processes one UI instance started, each in a process group of its own.

    :meth:`spawn` starts one; :meth:`reaped` is called once its leader has exited; :meth:`terminate` ends one
    group; :meth:`close` ends them all and refuses new ones.
    """

    def __init__(self) -> None:
        self._procs: set[asyncio.subprocess.Process] = set()  # leaders not known to have exited
        self._leftover: set[int] = set()  # groups whose leader exited but some member did not
        self.closed = False

    @property
    def running(self) -> int:
        return len(self._procs)

    async def spawn(
        self, p: ExecPlan, *, stdout: int = asyncio.subprocess.PIPE, stderr: int = asyncio.subprocess.PIPE,
    ) -> asyncio.subprocess.Process:
        """Start ``p``, stdin empty, stdout and stderr piped to ``proc.stdout``/``proc.stderr`` unless given as
        file descriptors. ``OSError`` if it cannot start (see :func:`spawn_failure`); :class:`ExecRefused` when
        the UI is closed or already runs :data:`MAX_PROCESSES` commands."""
        if self.closed:
            raise ExecRefused("this extension UI has been closed")
        self._prune()
        if len(self._procs) >= MAX_PROCESSES:
            raise ExecRefused(
                f"this extension UI already runs {MAX_PROCESSES} commands: close some (ExecProcess.close()) first"
            )
        proc = await asyncio.create_subprocess_exec(
            *p.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=p.cwd,
            env=p.env,
            start_new_session=True,
            preexec_fn=_child_setup(),
        )
        self._procs.add(proc)
        _guardian.add(proc.pid)
        return proc

    async def run(self, p: ExecPlan) -> ExecResult:
        """Run ``p`` to the end and collect its output (the non-streaming exec)."""
        try:
            proc = await self.spawn(p)
        except OSError as exc:
            code, message = spawn_failure(p, exc)
            return ExecResult(p.display, code, "", message + "\n", False, None)
        try:
            assert proc.stdout and proc.stderr
            (out, out_dropped), (err, err_dropped) = await asyncio.gather(
                _read_capped(proc.stdout), _read_capped(proc.stderr))
            returncode = await proc.wait()
        except asyncio.CancelledError:  # the client went away, or the server stops
            await self.terminate(proc)
            raise
        self.reaped(proc)
        code, sig = exit_status(returncode)
        return ExecResult(
            p.display, None if sig else code, out.decode(errors="replace"),
            err.decode(errors="replace") + _dropped_note(out_dropped, err_dropped), sig is not None, sig,
        )

    def reaped(self, proc: asyncio.subprocess.Process) -> None:
        """The leader has exited: forget its group, unless members of it still run (they die with the UI)."""
        self._procs.discard(proc)
        if _group_alive(proc.pid):
            self._leftover.add(proc.pid)
        else:
            _guardian.discard(proc.pid)

    def _prune(self) -> None:
        """Forget leftover groups whose members have all ended since. Once a group is empty its number can be
        reused (after the PIDs wrap around, 32768 by default): a forgotten group is never signalled again."""
        for pgid in [g for g in self._leftover if not _group_alive(g)]:
            self._leftover.discard(pgid)
            _guardian.discard(pgid)

    async def terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM to the group of ``proc``; SIGKILL to what is left after :data:`KILL_GRACE` seconds."""
        await self._end_group(proc.pid, proc)
        self._procs.discard(proc)

    async def close(self) -> None:
        self.closed = True
        self._prune()
        procs, leftover = list(self._procs), list(self._leftover)
        self._procs.clear()
        self._leftover.clear()
        await asyncio.gather(
            *(self._end_group(p.pid, p) for p in procs), *(self._end_group(g, None) for g in leftover)
        )

    async def _end_group(self, pgid: int, leader: asyncio.subprocess.Process | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_GRACE
        _signal_group(pgid, signal.SIGTERM)
        if leader is not None and leader.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leader.wait(), KILL_GRACE)
        while _group_alive(pgid) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if _group_alive(pgid) or (leader is not None and leader.returncode is None):
            _signal_group(pgid, signal.SIGKILL)
            if leader is not None:
                await leader.wait()
        self._leftover.discard(pgid)
        _guardian.discard(pgid)


class _Budget:
    """Bytes of output held at once by every run() of this process (:data:`OUTPUT_BUDGET`)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def take(self, wanted: int) -> int:
        """Up to ``wanted`` bytes of what is left, now held."""
        granted = max(0, min(wanted, self.total - self.held))
        self.held += granted
        return granted

    def give_back(self, count: int) -> None:
        self.held -= count


_budget = _Budget(OUTPUT_BUDGET)


async def _read_capped(stream: asyncio.StreamReader) -> tuple[bytes, int]:
    """The stream to its end: what was kept (:data:`OUTPUT_CAP`, within the process's budget) and how many bytes
    were read and dropped. The budget is given back once the stream ends (the caller sends its answer at once)."""
    chunks: list[bytes] = []
    kept = dropped = 0
    try:
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return b"".join(chunks), dropped
            room = _budget.take(min(len(chunk), OUTPUT_CAP - kept))
            if room:
                chunks.append(chunk[:room])
                kept += room
            dropped += len(chunk) - room
    finally:
        _budget.give_back(kept)


def _dropped_note(out: int, err: int) -> str:
    """A line for the end of stderr when output was dropped (nothing when none was), saying how to get it all."""
    lost = [f"{n} bytes of {name}" for n, name in ((out, "stdout"), (err, "stderr")) if n]
    if not lost:
        return ""
    return (f"\ndockext: {' and '.join(lost)} were not kept: a command's output is kept up to "
            f"{OUTPUT_CAP >> 20} MiB per stream, and {OUTPUT_BUDGET >> 20} MiB for all commands running at once; "
            "run it with the stream option to read all of it\n")
