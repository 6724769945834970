"""Shared by the benchmarks: a real ``dockext serve`` in a temp home, fixture extensions, UI instances.

Importing this module re-runs the calling script under the repo's ``.venv/bin/python`` when it is not
already running there, and puts the repo root on ``sys.path`` (for ``tests.support``).

``Bench`` is a context manager that, on exit, undoes everything it did, also after Ctrl-C or SIGTERM: UI
instances closed, extensions removed with ``dockext rm`` (compose down: their containers go), the server
stopped, the per-run image tags removed, the temp home deleted. The fixture images themselves stay (built
once, then reused: ``docker image rm`` the ``dockext-bench/*`` images to drop them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
BENCH_FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO_PREFIX = "dockext-bench"
BENCH_TAG = "bench"
SETUP_HINT = "Set everything up with: bash scripts/setup.sh"
T = TypeVar("T")


def _ensure_venv() -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} does not exist. {SETUP_HINT}")
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(python), [str(python), *sys.argv])  # noqa: S606 (the same script, other interpreter)


_ensure_venv()
sys.path.insert(0, str(REPO))
try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore runs `import sniffio` several times per request; when it is not installed every failed import
    # walks sys.path again (~0.2 ms of CPU per request here). A None entry makes the import fail at once, and
    # httpcore assumes asyncio as before. This only lightens the benchmark's own client, not dockext.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

import docker  # noqa: E402
import docker.errors  # noqa: E402
import httpx  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.cli import run_dockext  # noqa: E402
from tests.support.locks import locked  # noqa: E402
from tests.support.server import Server, start_server  # noqa: E402
from tests.support.session import Session, backend_socket  # noqa: E402
from tests.support.session import Ui as Ui  # noqa: E402  (re-exported for the bench scripts)

from dockext import model  # noqa: E402


# -- engine and images -------------------------------------------------------------------------------
def require_engine() -> docker.DockerClient:
    """A client of the engine dockext will use, or exit 3 with a message saying how to start one."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 (DockerException, requests' ConnectionError, PermissionError...)
        print(f"The Docker engine at {where} does not answer ({exc}).\n{SETUP_HINT}", file=sys.stderr)
        sys.exit(3)
    if shutil.which("docker") is None:
        print(f"The docker CLI is not on PATH. {SETUP_HINT}", file=sys.stderr)
        sys.exit(3)
    return client


def build_test_fixture(client: docker.DockerClient, name: str) -> str:
    """A fixture of ``tests/fixtures/extensions/`` as ``dockext-bench/<name>:bench`` (built once).

    The tag ``bench`` is part of the image's labels, so this image never shares its ID with the tests'
    ``dockext-test/<name>:1.0.0``: the engine tests check that their image carries their tag alone.
    """
    return images.build_fixture(client, name, tag=BENCH_TAG, repo_prefix=REPO_PREFIX)


def build_bench_fixture(client: docker.DockerClient, name: str, tag: str = "1.0.0") -> str:
    """A fixture of ``bench/fixtures/<name>/`` as ``dockext-bench/<name>:<tag>``, built as the test fixtures are.

    Bench fixtures live outside ``tests/fixtures/extensions/`` because the test suite checks that directory
    holds exactly the test fixtures. Same caching: skipped when the image's input-hash label matches.
    """
    context = BENCH_FIXTURES / name
    h = hashlib.sha256(f"tag={tag}\n".encode())
    if re.search(rf"^FROM\s+{re.escape(images.PYBASE.split(':')[0])}\b", (context / "Dockerfile").read_text(),
                 re.MULTILINE):
        images.ensure_pybase(client)
        h.update(f"base={client.images.get(images.PYBASE).id}\n".encode())
    for path in sorted(p for p in context.rglob("*") if "__pycache__" not in p.parts):
        if path.is_file():
            rel = path.relative_to(context).as_posix()
            h.update(f"F {rel} {os.access(path, os.X_OK)} ".encode() + path.read_bytes() + b"\n")
    ref = f"{REPO_PREFIX}/{name}:{tag}"
    with locked(images._LOCK):
        if images._current_hash(client, ref) != h.hexdigest():
            images._build(client, context, ref, h.hexdigest(), extra_labels={"dockext.bench": "1"})
    return ref


# -- statistics and output -----------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores{', ' + model if model else ''}; Python {sys.version.split()[0]}"


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, exited threads included, children not (/proc stat: 10 ms ticks, so only
    windows with well over a second of CPU give a precise per-request figure)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_preemptions(pid: int) -> int:
    """Involuntary context switches of all the threads of a process so far (/proc/PID/task/*/status): how often
    the scheduler took the CPU from it, typically for a process it had just woken (the peer of a write)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for ln in status.read_text().splitlines():
                if ln.startswith("nonvoluntary_ctxt_switches:"):
                    total += int(ln.split(":", 1)[1])
    return total


# -- a running dockext ---------------------------------------------------------------------------------
@dataclass
class Installed:
    ref: str  # the per-run tag it was installed from
    key: str
    record: dict[str, Any]


@dataclass
class Bench:
    """``with Bench() as b:`` a temp home, a running ``dockext serve`` logged in with its token."""

    client: docker.DockerClient
    #: the command that runs dockext (``serve ...`` is appended): $DOCKEXT_BENCH_SERVE (split on spaces) if
    #: set, to measure a patched dockext, else ``python -m dockext.cli``
    serve_argv: list[str] | None = field(
        default_factory=lambda: os.environ.get("DOCKEXT_BENCH_SERVE", "").split() or None
    )
    run_id: str = field(default_factory=lambda: f"{os.getpid()}{secrets.token_hex(2)}")
    tmp: Path | None = None
    server: Server | None = None
    installed: list[Installed] = field(default_factory=list)
    uis: list[Ui] = field(default_factory=list)
    _tags: list[str] = field(default_factory=list)
    session: Session | None = None

    def __enter__(self) -> Bench:
        _install_signal_handlers()
        # short: <home>/gs/<gskey>/backend.sock must fit in sun_path (108 bytes)
        self.tmp = Path(tempfile.mkdtemp(prefix="dxb-", dir="/tmp"))
        try:
            self.server = start_server(self.tmp / "home", argv=self.serve_argv)
            self.session = Session(self.server)
        except BaseException:
            self.__exit__(None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            print("interrupted: cleaning up...", file=sys.stderr, flush=True)
        problems: list[str] = []
        if self.session is not None:
            for ui in self.uis:
                self.session.close_ui(ui)
        for ext in reversed(self.installed):
            with _uninterrupted():
                proc = run_dockext("rm", ext.ref, home=self.home, check=False, timeout=120)
            if proc.returncode != 0 and ext.record:  # no record: the install itself did not finish
                problems.append(f"dockext rm {ext.ref}: {proc.stdout}{proc.stderr}")
            project = model.compose_project(ext.key)
            for c in self.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}):
                problems.append(f"container {c.name} was left behind: removing it")
                with contextlib.suppress(docker.errors.APIError):
                    c.remove(force=True, v=True)
        if self.server is not None:
            self.server.stop()
        for tag in self._tags:
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(tag, noprune=True)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        for p in problems:
            print(f"cleanup: {p}", file=sys.stderr)

    @property
    def home(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "home"

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def server_pid(self) -> int:
        assert self.server is not None
        return self.server.proc.pid

    def dashboard(self) -> httpx.Client:
        assert self.session is not None
        return self.session.dashboard()

    def install(self, ref: str) -> Installed:
        """``dockext install -f`` of ``ref`` under a per-run name (its own compose project, so concurrent runs
        and the tests never share a container)."""
        repo, _, tag = ref.rpartition(":")
        run_ref = f"{REPO_PREFIX}-{self.run_id}/{repo.rsplit('/', 1)[-1]}:{tag}"
        self.client.images.get(ref).tag(*run_ref.rsplit(":", 1))
        self._tags.append(run_ref)
        ext = Installed(run_ref, model.extension_key(model.ImageRef.parse(run_ref)), {})
        self.installed.append(ext)  # before installing: an interrupted install is cleaned up too
        with _uninterrupted():  # a killed install would leave its compose project behind
            run_dockext("install", "-f", run_ref, home=self.home, timeout=180)
        ext.record = json.loads((self.home / "extensions" / ext.key / "extension.json").read_text())
        return ext

    def open_ui(self, ext: Installed) -> Ui:
        assert self.session is not None
        ui = self.session.open_ui(ext.key)
        self.uis.append(ui)
        return ui

    def backend_socket(self, ext: Installed) -> Path:
        return backend_socket(self.home, ext.record)

    def wait_backend(self, ui: Ui, path: str = "/hello", timeout: float = 60) -> None:
        """Until the proxied ``GET path`` answers 200 (the backend container may still be starting)."""
        assert self.session is not None
        self.session.wait_backend(ui, path, timeout)


# -- signals: Ctrl-C and SIGTERM end a run cleanly -------------------------------------------------------
_deferred: list[int] = []
_critical = False


def _on_signal(signum: int, _frame: FrameType | None = None) -> None:
    if _critical:
        _deferred.append(signum)
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """A signal that arrives in here is acted on once the block is done (installs and removals are bounded
    by their timeouts; a dockext CLI killed half-way would leave its compose project running)."""
    global _critical
    _critical = True
    try:
        yield
    finally:
        _critical = False
    if _deferred:
        signum = _deferred[0]
        _deferred.clear()
        _on_signal(signum)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, where Ctrl-C or SIGTERM cancel the coroutine (its ``finally`` blocks run) and
    then end the run like the signal would have, without a traceback per task."""
    got: list[int] = []

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(sig: int) -> None:
            got.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await coro
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if got:
            _on_signal(got[0])
        raise
    finally:
        _install_signal_handlers()  # remove_signal_handler put the defaults back


def run_main(main: Callable[[], int]) -> NoReturn:
    """A bench script's entry point: exit with ``main()``'s status, 130 and no traceback on Ctrl-C (the
    ``Bench`` context has cleaned up by then)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
