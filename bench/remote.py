"""Proxied ``vm.service`` requests on a local engine against the same on a remote engine (the exec relay).

    .venv/bin/python bench/remote.py [--quick] [--duration S] [--reps N] [--fresh N] [--idle N]

One run installs the fast backend (``bench/fixtures/bench-fast``, as ``bench/proxy.py`` does) twice, in two
dockext homes whose ``dockext serve`` run side by side:

* local: ``DOCKER_HOST=unix:///var/run/docker.sock`` (or the unix socket ``$DOCKER_HOST`` names); dockext
  connects to the backend socket in ``<home>/gs/`` itself;
* relayed: ``DOCKER_HOST=tcp://127.0.0.1:PORT``, a TCP relay to the same engine socket
  (``tests/support/remote.py`` ``tcp_engine()``, run in a subprocess of its own so that its threads do not
  share this client's GIL). dockext then takes every remote-engine path: the socket is in a tmpfs volume,
  and each new backend connection is an exec of ``sockperm connect`` in the ``<project>-dockext-relay``
  container, started on a hijacked Engine API connection (``src/dockext/server/relay.py``).

Measured, local and relayed alternating which goes first:

1. kept-alive (the steady state): ``GET /hello`` through the proxy from 1 and from 16 concurrent tasks for
   ``--duration`` s per window, ``--reps`` times (``bench/proxy.py``'s ``window``): requests/s, p50, p99, CPU of
   ``dockext serve`` per request, and how many engine connections each relayed window opened (0: the relay's
   execs were set up once, in the warm-up, and reused; a few at c=16 when connections an earlier window left
   in the pool reach their 4 s idle timeout meanwhile and are replaced).
2. a new backend connection, two ways:

   * ``GET /hello`` after the pool's idle connections expired (``--idle`` samples; the pool closes them after
     ``backend_http.IDLE_TIMEOUT`` = 4 s, so each sample waits 4.3 s, both servers' waits overlapping): what a
     UI really meets after a pause. Slow, so few samples: it cross-checks the HEAD figure.
   * ``HEAD /hello``, ``--fresh`` samples, one at a time with 0.1 s between them: dockext's backend pool never
     keeps a connection that carried a HEAD (``backend_http._Connection._done``), so once the pool holds no
     idle connection (after the idle samples, a few warm-up HEADs take the one connection left), each HEAD
     opens a new backend connection (a ``connect(2)`` locally; an exec create + start through the relay) and
     closes it. The bench checks it: the TCP engine relay counts its connections, and the relayed samples must
     have opened at least one each (the idle GETs too). Cheap, so it gives enough samples for a median. The
     0.1 s lets the previous exec end first, so its teardown is not counted.

   Their baseline is as many kept-alive GETs, also 0.1 s apart, measured between the two (a request after a
   pause costs more than one in a busy loop, here 1-2 ms more, whatever the connection). ``+ms vs baseline``,
   the HEAD's p50 minus the baseline's, is the new connection's own cost; the idle GET's also holds the cost
   of waking up after 4 s rather than 0.1 s.

Why not ``Connection: close`` from the client: it is hop-by-hop, so it closes the browser-side connection,
never the backend's. And the relayed engine is on loopback: a real remote engine adds its network round trips
(an exec create and an exec start per new connection, each at least one round trip) on top of these figures.
The TCP relay standing in for the remote engine is a Python process (a thread per direction): it adds its own
hop to every relayed byte (``tcp relay CPU/req`` says how much CPU it takes). It, dockerd copying the exec's
stdio and the ``sockperm`` helper all compete with the client, dockext and the backend for this machine's
cores, where a real remote engine's host would run them: the kept-alive relayed/local ratio is pessimistic in
CPU, optimistic in network. ``srv CPU/req`` (dockext's own work per request) is the steadiest comparison.

On exit, also after Ctrl-C or SIGTERM: both homes' extensions removed with ``dockext rm`` (run with that home's
``DOCKER_HOST``, so the remote one goes through the relay as it was installed), leftover containers and
volumes of their projects removed, both servers stopped, then the TCP relay. The ``dockext/sockperm`` helper
image the remote install builds stays, as the ``dockext-bench/*`` images do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import common  # first: re-runs this script under .venv/bin/python if needed
import docker.errors
import httpx
from proxy import Target, Window, window

from dockext import model
from dockext.server.backend_http import IDLE_TIMEOUT

CONCURRENCY = (1, 16)
MODES = ("local", "relayed")
FRESH_GAP = 0.1  # s between two new-connection samples: the previous relayed exec ends meanwhile
FRESH_WARMUP = 3  # HEADs per mode not counted (the first exec after the install may be slower)
IDLE_WAIT = IDLE_TIMEOUT + 0.3  # under uvicorn's 5 s keep-alive: the client's own connection stays open
DEFAULT_SOCKET = "/var/run/docker.sock"

# tests/support/remote.py's tcp_engine() in a process of its own: prints its tcp:// address, then answers each
# line read on stdin with the number of connections it has accepted; ends when stdin closes.
TCP_ENGINE = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.support.remote import tcp_engine
with tcp_engine(sys.argv[2]) as engine:
    print(engine.host, flush=True)
    for _ in sys.stdin:
        print(engine.connections, flush=True)
"""


def _set_environ(values: dict[str, str | None]) -> None:
    """Set each variable of ``values`` in ``os.environ``; a None value unsets it."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass
class TcpEngine:
    host: str
    proc: subprocess.Popen[str]

    def connections(self) -> int:
        """TCP connections the relay has accepted so far (each relayed backend connection opens one)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())


@contextlib.contextmanager
def tcp_engine(socket_path: str) -> Iterator[TcpEngine]:
    """The engine at ``socket_path`` on tcp://127.0.0.1:PORT. In a new session, so that a Ctrl-C does not end
    it before the remote home's ``dockext rm`` has gone through it; it ends when this process closes its stdin
    (also if this process is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TCP_ENGINE, str(common.REPO), socket_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        host = proc.stdout.readline().strip()
        if urlsplit(host).scheme != "tcp":
            raise RuntimeError(f"the TCP engine relay did not start (it printed {host!r})")
        yield TcpEngine(host, proc)
    finally:
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class EngineBench(common.Bench):
    """A :class:`common.Bench` whose server and ``dockext`` commands all get ``DOCKER_HOST=docker_host``."""

    docker_host: str = ""

    @contextlib.contextmanager
    def _engine_env(self) -> Iterator[None]:
        # start_server and run_dockext pass os.environ on; nothing else runs meanwhile (the TCP relay is a
        # process of its own), so setting it around the calls is enough
        wanted = {"DOCKER_HOST": self.docker_host, "DOCKER_CONTEXT": None, "DOCKEXT_REMOTE_ENGINE": None}
        saved = {k: os.environ.get(k) for k in wanted}
        try:
            _set_environ(wanted)
            yield
        finally:
            _set_environ(saved)

    def __enter__(self) -> EngineBench:
        with self._engine_env():
            super().__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        with self._engine_env():
            super().__exit__(exc_type, *rest)
        for ext in self.installed:  # the remote install's tmpfs volume goes with `dockext rm`; check it did
            project = model.compose_project(ext.key)
            for v in self.client.volumes.list(filters={"label": f"com.docker.compose.project={project}"}):
                print(f"cleanup: volume {v.name} was left behind: removing it", file=sys.stderr)
                with contextlib.suppress(docker.errors.APIError):
                    v.remove(force=True)

    def install(self, ref: str) -> common.Installed:
        with self._engine_env():
            return super().install(ref)


# -- measuring -------------------------------------------------------------------------------------------
@dataclass
class Side:
    name: str  # local | relayed
    bench: EngineBench
    ui: common.Ui
    client: httpx.AsyncClient | None = None

    @property
    def target(self) -> Target:
        assert self.client is not None
        return Target(self.name, self.client, f"{self.ui.api}/vm/hello")


@dataclass
class Results:
    steady: dict[int, dict[str, list[Window]]]
    steady_conns: dict[int, list[int]]  # engine connections each relayed window opened
    relay_cpu: dict[int, list[float]]  # CPU seconds of the TCP engine relay per relayed request, each window
    fresh: dict[str, list[float]]  # HEAD latencies, s
    spaced: dict[str, list[float]]  # kept-alive GET latencies, FRESH_GAP apart, s
    fresh_conns: int = 0
    idle: dict[str, list[float]] = field(default_factory=dict)
    idle_conns: int = 0


async def one(side: Side, method: str) -> float:
    assert side.client is not None
    t0 = time.perf_counter()
    r = await side.client.request(method, side.target.path)
    t1 = time.perf_counter()
    if r.status_code != 200:
        raise RuntimeError(f"{side.name} {method} {side.target.path}: {r.status_code} {r.text[:200]}")
    return t1 - t0


async def measure(sides: list[Side], engine: TcpEngine, *, duration: float, reps: int, warmup: float,
                  fresh: int, idle: int) -> Results:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    for s in sides:
        s.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(retries=0, limits=limits),
            base_url=f"http://127.0.0.1:{s.bench.port}", headers={"Host": s.ui.host}, timeout=httpx.Timeout(30.0),
        )
    res = Results({c: {m: [] for m in MODES} for c in CONCURRENCY}, {c: [] for c in CONCURRENCY},
                  {c: [] for c in CONCURRENCY},
                  {m: [] for m in MODES}, {m: [] for m in MODES}, idle={m: [] for m in MODES})
    try:
        # 1. kept-alive windows; a short warm-up before each one fills the pool to the concurrency
        for rep in range(reps):
            for c in CONCURRENCY:
                for s in sides if rep % 2 == 0 else reversed(sides):
                    await window(s.target, c, warmup, None)
                    before = engine.connections() if s.name == "relayed" else 0
                    cpu0 = common.process_cpu_seconds(engine.proc.pid)
                    w = await window(s.target, c, duration, s.bench.server_pid)
                    res.steady[c][s.name].append(w)
                    if s.name == "relayed":
                        res.steady_conns[c].append(engine.connections() - before)
                        res.relay_cpu[c].append((common.process_cpu_seconds(engine.proc.pid) - cpu0) / w.requests)
        # 2a. new connections after the pool's idle ones expired (the waits of both servers overlap); the first
        # wait also ends the connections the kept-alive windows left in the pools
        before = engine.connections()
        for i in range(idle):
            await asyncio.sleep(IDLE_WAIT)
            for s in sides if i % 2 == 0 else reversed(sides):
                res.idle[s.name].append(await one(s, "GET"))
        res.idle_conns = engine.connections() - before
        if res.idle_conns < idle:
            raise RuntimeError(f"{idle} relayed GETs after {IDLE_WAIT:g} s idle opened {res.idle_conns} engine "
                               "connections: the pool now keeps idle connections longer than IDLE_TIMEOUT")
        # 2b. the baseline of the HEADs: kept-alive GETs as far apart as the HEADs will be (a request after a
        # pause costs more than one in a busy loop, whatever the connection), on the connection the last GET
        # left in the pool (a warm-up GET opens it if there was none). Without idle samples, the kept-alive
        # windows' connections must expire first: the HEADs would take them.
        if not idle:
            await asyncio.sleep(IDLE_WAIT)
        for s in sides:
            await one(s, "GET")
        before = engine.connections()
        for i in range(fresh):
            for s in sides if i % 2 == 0 else reversed(sides):
                await asyncio.sleep(FRESH_GAP)
                res.spaced[s.name].append(await one(s, "GET"))
        if engine.connections() != before:
            raise RuntimeError("the spaced kept-alive GETs opened new relayed connections")
        # 2c. new connections: HEADs, interleaved one by one. An idle connection is reused by a HEAD (and then
        # closed): the pools must hold none first. Each holds the one connection of the last GET, which the
        # warm-up HEADs take.
        for s in sides:
            for _ in range(FRESH_WARMUP):
                await asyncio.sleep(FRESH_GAP)
                await one(s, "HEAD")
        before = engine.connections()
        for i in range(fresh):
            for s in sides if i % 2 == 0 else reversed(sides):
                await asyncio.sleep(FRESH_GAP)
                res.fresh[s.name].append(await one(s, "HEAD"))
        res.fresh_conns = engine.connections() - before
        if res.fresh_conns < fresh:
            raise RuntimeError(f"{fresh} relayed HEADs opened {res.fresh_conns} engine connections: the proxy "
                               "now reuses backend connections after a HEAD, so this no longer measures new ones")
    finally:
        for s in sides:
            if s.client is not None:
                await s.client.aclose()
    return res


# -- output ----------------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def report(res: Results) -> None:
    med = common.median
    rows = []
    for c, by in res.steady.items():
        for mode, ws in by.items():
            cpu = [w.server_cpu / w.requests * 1e6 for w in ws if w.server_cpu is not None and w.requests]
            relayed = mode == "relayed"
            rows.append([f"c={c}", mode, f"{med([w.rps for w in ws]):.0f}", ms(med([w.p50 for w in ws])),
                         ms(med([w.p99 for w in ws])), f"{med(cpu):.0f} us" if cpu else "-",
                         f"{med(res.relay_cpu[c]) * 1e6:.0f} us" if relayed else "-",
                         str(sum(w.requests for w in ws)), "+".join(map(str, res.steady_conns[c])) if relayed else "-"])
    print("\nkept-alive GET /hello through the proxy")
    print(common.table(["conc", "mode", "rps", "p50 ms", "p99 ms", "srv CPU/req", "tcp relay CPU/req", "requests",
                        "new engine conns"], rows))

    def paired(c: int) -> tuple[list[float], list[float]]:
        by = res.steady[c]
        return ([r.rps / lo.rps for lo, r in zip(by["local"], by["relayed"], strict=True)],
                [(r.p50 - lo.p50) * 1e3 for lo, r in zip(by["local"], by["relayed"], strict=True)])

    base = {m: med(res.spaced[m]) for m in MODES}
    rows = []
    for label, got in ((f"kept-alive GET, {FRESH_GAP:g} s apart (baseline)", res.spaced),
                       ("HEAD (pool never keeps it)", res.fresh), (f"GET after {IDLE_WAIT:g} s idle", res.idle)):
        for mode in MODES:
            f = got[mode]
            if f:
                rows.append([mode, label, str(len(f)), ms(med(f)), ms(common.percentile(f, 90)),
                             f"{(med(f) - base[mode]) * 1e3:+.3f}"])
    print(f"\nnew backend connection (engine connections the relayed samples opened: HEAD {res.fresh_conns} "
          f"for {len(res.fresh['relayed'])}, idle GET {res.idle_conns} for {len(res.idle['relayed'])})")
    print(common.table(["mode", "request", "samples", "p50 ms", "p90 ms", "+ms vs baseline p50"], rows))

    rows = []
    for c in CONCURRENCY:
        ratios, added = paired(c)
        rows.append([f"kept-alive c={c}", f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                     f"{med(added):+.3f} ({min(added):+.3f}..{max(added):+.3f})", "", "", ""])
    for label, got in (("new connection (HEAD)", res.fresh), ("new connection (idle GET)", res.idle)):
        if got["local"] and got["relayed"]:
            lo, re_ = med(got["local"]), med(got["relayed"])
            rows.append([label, "-", f"{(re_ - lo) * 1e3:+.3f}", f"{ms(lo)} / {ms(re_)}", f"{re_ / lo:.1f}x",
                         f"{(lo - base['local']) * 1e3:+.3f} / {(re_ - base['relayed']) * 1e3:+.3f}"])
    print("\nrelayed against local")
    print(common.table(["what", "relayed/local rps (min-max)", "relayed p50 - local p50 ms (min..max)",
                        "p50 ms local / relayed", "relayed/local", "+ms vs baseline local / relayed"], rows))


def local_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if urlsplit(host).scheme != "unix":
        print(f"DOCKER_HOST={host} is not a unix socket: this bench needs the local engine's socket (it makes the "
              "remote engine itself, a TCP relay to that socket). Unset DOCKER_HOST.", file=sys.stderr)
        sys.exit(3)
    return urlsplit(host).path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short windows, few samples (a smoke run)")
    ap.add_argument("--duration", type=float, help="seconds per kept-alive window (default 1.5, --quick 0.7)")
    ap.add_argument("--reps", type=int, help="repetitions of every kept-alive window (default 3, --quick 1)")
    ap.add_argument("--fresh", type=int, help="new-connection HEAD samples per mode (default 40, --quick 15)")
    ap.add_argument("--idle", type=int, help=f"GET-after-{IDLE_WAIT:g}-s-idle samples per mode "
                    "(default 3, --quick 1; 0: none)")
    args = ap.parse_args()
    duration = min(max(args.duration or (0.7 if args.quick else 1.5), 0.2), 30.0)
    reps = min(max(args.reps or (1 if args.quick else 3), 1), 20)
    fresh = min(max(args.fresh or (15 if args.quick else 40), 1), 1000)
    idle = min(max(args.idle if args.idle is not None else (1 if args.quick else 3), 0), 20)
    warmup = 0.2 if args.quick else 0.4

    sock = local_socket()
    client = common.require_engine()
    ref = common.build_bench_fixture(client, "bench-fast")
    print(f"dockext remote-engine bench, {time.strftime('%Y-%m-%d %H:%M')}, {common.machine()}")
    print(f"{duration:g} s per kept-alive window, {reps} repetition(s), concurrency "
          f"{', '.join(map(str, CONCURRENCY))}; {fresh} new-connection HEADs and {idle} idle GETs per mode")
    with contextlib.ExitStack() as stack:
        common._install_signal_handlers()  # a Ctrl-C while the TCP relay starts: cleaned up too
        engine = stack.enter_context(tcp_engine(sock))
        print(f"local: unix://{sock}; relayed: {engine.host} (a TCP relay to the same socket)")
        sides = []
        for name, host in (("local", f"unix://{sock}"), ("relayed", engine.host)):
            b = stack.enter_context(EngineBench(client, docker_host=host))
            ext = b.install(ref)
            relay = (ext.record.get("vm") or {}).get("relay")
            if bool(relay) != (name == "relayed"):
                raise RuntimeError(f"the {name} install recorded vm.relay={relay!r}: not the mode expected")
            ui = b.open_ui(ext)
            b.wait_backend(ui)
            sides.append(Side(name, b, ui))
        results = common.run_async(measure(sides, engine, duration=duration, reps=reps, warmup=warmup,
                                           fresh=fresh, idle=idle))
        report(results)
    return 0


if __name__ == "__main__":
    common.run_main(main)
