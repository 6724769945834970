"""Restarting the test machine's dockerd, as a host reboot or `systemctl restart docker` would (reference R11), or
after a crash (`kill -9`, reference R5).

dockerd is stopped with SIGTERM (live-restore is off here: its containers stop with it), or killed with SIGKILL
(a crash: none of its shutdown runs; its containerd dies with it, the containers' shims and processes do not,
and the pid files stay: see _drop_stale_pidfiles; the dockerd started again finds the containers running and,
live-restore off, stops them and starts those with a restart policy again), and started again with
the command line it had, its output appended to the same log, in the host's network namespace (the tests run
in their own, tests/conftest.py), in a session of its own so that it outlives the test run. The pid file of
.ci/setup-engine.sh is kept up to date, so that `setup-engine.sh stop` still finds it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import docker

PIDFILE = Path("/var/lib/ci-engine/dockerd.pid")


def dockerd_pid() -> int:
    """The machine's dockerd: not the zombies of earlier ones nobody reaped, nor a rootless dockerd another test
    runs meanwhile (in a user namespace of its own), nor a second one beside it."""
    listed = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    ours = os.readlink("/proc/self/ns/user")
    found = [p for p in listed if _running(int(p)) and _user_ns(int(p)) == ours]
    if len(found) > 1:  # another engine a test runs beside it (its own socket and pid file): the default's own
        with contextlib.suppress(OSError):
            found = [p for p in found if p == Path("/var/run/docker.pid").read_text().strip()]
    if len(found) != 1:
        raise AssertionError(f"expected one dockerd to restart, found {found or 'none'}")
    return int(found[0])


def _user_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return None


def _running(pid: int) -> bool:
    """Not exited. A dockerd an earlier restart started is a child of this process: once it exits it stays a
    zombie (its /proc entry with it) until it is reaped, so reap it."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: whoever started it reaps it
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def dockerd_argv() -> list[str]:
    return [a.decode() for a in Path(f"/proc/{dockerd_pid()}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]


def restart_dockerd(timeout: float = 90, argv: list[str] | None = None, sig: int = signal.SIGTERM,
                    down_for: float = 0) -> float:
    """Stop dockerd with ``sig`` (SIGKILL: a crash) and start it again (with ``argv`` instead of its own command
    line if given), ``down_for`` seconds after it stopped; return the seconds it took until it answered again."""
    pid = dockerd_pid()
    args = [a.encode() for a in argv] if argv is not None else \
        Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    log = os.readlink(f"/proc/{pid}/fd/1")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    if not os.path.isdir(cwd):  # "<dir> (deleted)": started from a checkout removed since
        cwd = "/"
    t0 = time.monotonic()
    os.kill(pid, sig)
    while _running(pid):
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"dockerd {pid} did not stop within {timeout} s of {signal.Signals(sig).name}")
        time.sleep(0.1)
    if sig == signal.SIGKILL:
        _drop_stale_pidfiles(args)
    time.sleep(down_for)
    host_ns = os.environ.get("DOCKEXT_TEST_HOST_NETNS")
    enter = ["nsenter", f"--net={host_ns}"] if host_ns else []
    with open(log if log.startswith("/") else os.devnull, "ab") as out:
        proc = subprocess.Popen([*enter, *[a.decode() for a in args]], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    while True:
        try:
            client = docker.from_env(timeout=5)  # made anew each time: it asks the version as it is made
            try:
                client.ping()
            finally:
                client.close()
            break
        except Exception:  # not up yet: no socket, connection refused, a 500 while it starts...
            if proc.poll() is not None:
                raise AssertionError(f"dockerd exited {proc.returncode} on restart; see {log}") from None
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"dockerd did not answer within {timeout} s of its restart") from None
            time.sleep(0.1)
    if PIDFILE.exists():  # setup-engine.sh's; it named the old dockerd (or one that is gone)
        named = PIDFILE.read_text().strip()
        if named == str(pid) or not Path(f"/proc/{named}").exists():
            PIDFILE.write_text(f"{dockerd_pid()}\n")
    return time.monotonic() - t0



def _drop_stale_pidfiles(args: list[bytes]) -> None:
    """A killed dockerd leaves its pid file, and so does its containerd (which dockerd 20.10 starts with
    PDEATHSIG=SIGKILL: it dies with it; the containers' shims do not). A new dockerd refuses to start while its
    own pid file names a process with a /proc entry ("pid file found, ensure docker is not running"), and waits
    in vain for a containerd its pid file names if that process has one: a zombie that init has not reaped yet
    still has one. What an administrator does after a crash: delete the pid files of processes that are dead."""
    pidfile = Path("/var/run/docker.pid")
    exec_root = Path("/var/run/docker")
    for i, arg in enumerate(args):
        value = args[i + 1].decode() if i + 1 < len(args) else ""
        if arg in (b"--pidfile", b"-p"):
            pidfile = Path(value)
        elif arg.startswith(b"--pidfile="):
            pidfile = Path(arg.split(b"=", 1)[1].decode())
        elif arg == b"--exec-root":
            exec_root = Path(value)
        elif arg.startswith(b"--exec-root="):
            exec_root = Path(arg.split(b"=", 1)[1].decode())
    for path in (pidfile, exec_root / "containerd" / "containerd.pid"):
        deadline = time.monotonic() + 10
        while True:
            try:
                named = int(path.read_text().strip())
            except (FileNotFoundError, ValueError):
                break
            if not _running(named):
                path.unlink(missing_ok=True)
                break
            if time.monotonic() > deadline:  # a containerd that outlived dockerd: the new dockerd uses it
                break
            time.sleep(0.1)
