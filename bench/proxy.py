"""Proxied ``vm.service`` requests against direct requests to the same backend socket, in one run.

    .venv/bin/python bench/proxy.py [--quick] [--backend fast|slow|both] [--duration S] [--reps N]

For each backend, an in-process asyncio client (httpx.AsyncClient) sends ``GET /hello`` over and over from
1 and from 16 concurrent tasks, for ``--duration`` seconds per window:

* direct: ``httpx.AsyncHTTPTransport(uds=<home>/gs/<gs_key>/backend.sock)``, path ``/hello``;
* proxy: TCP to 127.0.0.1:<port> with ``Host: <slug>.localhost:<port>`` and the capability path
  ``/i/<cap>/__dockext__/vm/hello``, which is what ``ddClient.extension.vm.service.get("/hello")`` sends;
* bare relay: TCP to a process that only passes bytes between each TCP connection and one to the backend
  socket (:data:`RELAY`, asyncio protocols, no HTTP): the cost of the hop alone, the floor for any proxy on
  asyncio. Not part of the targets; it shows how much of the gap is the hop and how much is dockext.
* direct TCP (fast backend only): the same responder's code run on the host on 127.0.0.1, reached over loopback
  TCP with no hop: what TCP alone costs this client against the unix socket. A browser only has TCP, so
  ``proxy / direct TCP`` is what dockext costs a client that could reach the backend at all. Not a target.

Backends: ``fast`` is ``bench/fixtures/bench-fast`` (a minimal asyncio HTTP/1.1 responder, so the ratio shows
dockext's own cost); ``slow`` is the test fixture ``vm-image`` (Python's ``http.server``, threaded: the
ratio there mostly shows that backend). Each window is repeated ``--reps`` times, direct and proxy
alternating which goes first; the figures are medians over the repetitions, and the ratios are medians of
the ratios paired within each repetition. ``srv CPU/req`` is the CPU time of the ``dockext serve`` process per
proxied request (the proxy's own cost, whatever the other processes on the machine do); ``client CPU/req`` is
this process's (the httpx client's): when it nears 1 s per second, the client, not the server, is the limit.
``srv preempted/req`` is how often the scheduler took the CPU from the hop's process (dockext, the bare relay)
per request, its involuntary context switches: on 2 cores a write that wakes the peer often costs the writer its
core, and that happens about twice as often with ``http.server`` as the backend (docs/performance.md).

Then, per backend, a client that costs almost nothing (a blocking socket, one request at a time, browser-like
headers, :data:`RAW_REQUESTS` per side after a warm-up) gives each side's median time per request: what the
hop and dockext add, without the httpx client's ~0.5 ms per request around them. ``dockext - relay`` is
dockext's own share over the hop alone.

Targets (the proxy issue): proxy rps / direct rps >= 0.70 and proxy p50 - direct p50 < 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common  # first: re-runs this script under .venv/bin/python if needed
import httpx

CONCURRENCY = (1, 16)
RAW_REQUESTS = 3000
RAW_HEADERS = (b"Accept: */*\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/156\r\nAccept-Language: en\r\n"
               b"Sec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\n")
MAX_REQUESTS = 500_000  # per window: a bound in count on top of the bound in time
TARGET_RPS_RATIO = 0.70
TARGET_ADDED_P50_MS = 1.0


@dataclass
class Window:
    requests: int
    seconds: float
    p50: float  # seconds
    p99: float
    client_cpu: float  # seconds of this process's CPU in the window (the httpx client)
    server_cpu: float | None = None  # seconds of dockext serve CPU in the window (proxy windows)
    server_preempted: int | None = None  # involuntary context switches of the hop's process in the window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass
class Target:
    name: str
    client: httpx.AsyncClient
    path: str


async def window(target: Target, concurrency: int, duration: float, server_pid: int | None) -> Window:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS:
            t0 = time.perf_counter()
            r = await target.client.get(target.path)
            t1 = time.perf_counter()
            if r.status_code != 200:
                raise RuntimeError(f"{target.name} GET {target.path}: {r.status_code} {r.text[:200]}")
            latencies.append(t1 - t0)

    cpu0 = common.process_cpu_seconds(server_pid) if server_pid else None
    preempted0 = common.process_preemptions(server_pid) if server_pid else None
    client0 = time.process_time()
    start = time.perf_counter()
    async with asyncio.timeout(duration + 60), asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    elapsed = time.perf_counter() - start
    client = time.process_time() - client0
    cpu = common.process_cpu_seconds(server_pid) - cpu0 if server_pid and cpu0 is not None else None
    preempted = (common.process_preemptions(server_pid) - preempted0
                 if server_pid and preempted0 is not None else None)
    return Window(
        len(latencies), elapsed, common.percentile(latencies, 50), common.percentile(latencies, 99), client, cpu,
        preempted,
    )


# A one-hop relay with nothing else: each TCP connection gets a connection to the backend socket and the
# bytes are passed both ways by asyncio protocols. No HTTP parsing, no checks, no headers of its own: what any
# proxy written in Python on asyncio pays for the hop alone. Prints its port, then serves until killed.
RELAY = """
import asyncio, socket, sys

class Up(asyncio.Protocol):
    def __init__(self, down):
        self.down = down
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.down.transport.write(data)
    def connection_lost(self, exc):
        self.down.transport.close()

class Down(asyncio.Protocol):
    up = None
    def connection_made(self, transport):
        self.transport, self.waiting = transport, []
        asyncio.ensure_future(self.connect())
    async def connect(self):
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        while True:  # a full accept queue says EAGAIN on a unix socket: wait for room, as dockext does
            try:
                sock.connect(sys.argv[1])
                break
            except BlockingIOError:
                await asyncio.sleep(0.0005)
        _, self.up = await asyncio.get_running_loop().create_unix_connection(lambda: Up(self), sock=sock)
        for data in self.waiting:
            self.up.transport.write(data)
    def data_received(self, data):
        if self.up is None:
            self.waiting.append(data)
        else:
            self.up.transport.write(data)
    def connection_lost(self, exc):
        if self.up is not None:
            self.up.transport.close()

async def main():
    server = await asyncio.get_running_loop().create_server(Down, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


@contextlib.contextmanager
def tcp_responder(server: Path | None) -> Iterator[int | None]:
    """The port of the bench-fast responder run on the host on loopback TCP (None when there is none)."""
    if server is None:
        yield None
        return
    env = {**os.environ, "LISTEN": "127.0.0.1:0"}
    proc = subprocess.Popen([sys.executable, str(server)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline().rsplit(":", 1)[1])
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def bare_relay(sock: Path) -> Iterator[tuple[int, int]]:
    """(port, pid) of a running :data:`RELAY` to ``sock``."""
    proc = subprocess.Popen([sys.executable, "-c", RELAY, str(sock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline()), proc.pid
    finally:
        proc.kill()
        proc.wait()


def clients(b: common.Bench, ui: common.Ui, sock: Path, relay_port: int, tcp_port: int | None) -> list[Target]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(30.0)
    direct = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(sock), retries=0, limits=limits),
        base_url="http://localhost", timeout=timeout,
    )
    relay = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(retries=0, limits=limits),
        base_url=f"http://127.0.0.1:{relay_port}", timeout=timeout,
    )
    proxy = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(retries=0, limits=limits),
        base_url=f"http://127.0.0.1:{b.port}", headers={"Host": ui.host}, timeout=timeout,
    )
    targets = [Target("direct", direct, "/hello"), Target("bare relay", relay, "/hello"),
               Target("proxy", proxy, f"{ui.api}/vm/hello")]
    if tcp_port is not None:
        tcp = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(retries=0, limits=limits),
            base_url=f"http://127.0.0.1:{tcp_port}", timeout=timeout,
        )
        targets.insert(1, Target("direct TCP", tcp, "/hello"))
    return targets


def raw_exchange(conn: socket.socket, request: bytes) -> None:
    """One request and its whole answer (framed by Content-Length, as both backends' answers are)."""
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("the connection closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"answered {head[:200]!r}")
    length = next(int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                  if k.strip().lower() == b"content-length")
    while len(body) < length:
        body += conn.recv(65536)


def raw_times(b: common.Bench, ui: common.Ui, sock: Path, relay_port: int, tcp_port: int | None) -> dict[str, float]:
    """Median seconds per request for each side, from a blocking socket, one request at a time."""
    direct = socket.socket(socket.AF_UNIX)
    direct.connect(str(sock))
    relay = socket.create_connection(("127.0.0.1", relay_port))
    proxy = socket.create_connection(("127.0.0.1", b.port))
    hello = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n" + RAW_HEADERS + b"\r\n"
    sides = {
        "direct": (direct, hello),
        "bare relay": (relay, hello),
        "proxy": (proxy, f"GET {ui.api}/vm/hello HTTP/1.1\r\nHost: {ui.host}\r\n".encode() + RAW_HEADERS + b"\r\n"),
    }
    if tcp_port is not None:
        sides["direct TCP"] = (socket.create_connection(("127.0.0.1", tcp_port)), hello)
    times: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for conn, _ in sides.values():
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) if conn.family != socket.AF_UNIX else None
            conn.settimeout(30)
        for round_ in range(4):  # a warm-up round, then three, each side in turn
            for name, (conn, request) in sides.items():
                for _ in range(RAW_REQUESTS // 3 if round_ else 300):
                    t0 = time.perf_counter()
                    raw_exchange(conn, request)
                    if round_:
                        times[name].append(time.perf_counter() - t0)
    finally:
        for conn, _ in sides.values():
            conn.close()
    return {name: common.percentile(ts, 50) for name, ts in times.items()}


async def measure_backend(
    b: common.Bench, ui: common.Ui, sock: Path, *, duration: float, reps: int, warmup: float,
    responder: Path | None = None,
) -> tuple[dict[int, dict[str, list[Window]]], dict[str, float]]:
    with bare_relay(sock) as (relay_port, relay_pid), tcp_responder(responder) as tcp_port:
        targets = clients(b, ui, sock, relay_port, tcp_port)
        pids = {"direct": None, "direct TCP": None, "bare relay": relay_pid, "proxy": b.server_pid}
        results: dict[int, dict[str, list[Window]]] = {c: {t.name: [] for t in targets} for c in CONCURRENCY}
        try:
            for c in CONCURRENCY:
                for t in targets:
                    await window(t, c, warmup, None)
            for rep in range(reps):
                for c in CONCURRENCY:
                    for t in targets if rep % 2 == 0 else reversed(targets):
                        results[c][t.name].append(await window(t, c, duration, pids[t.name]))
        finally:
            for t in targets:
                await t.client.aclose()
        raw = raw_times(b, ui, sock, relay_port, tcp_port)
    return results, raw


def report(name: str, results: dict[int, dict[str, list[Window]]], raw: dict[str, float]) -> list[bool]:
    med = common.median
    rows = []
    verdicts = []
    for c, by in results.items():
        for mode, ws in by.items():
            cpu = [w.server_cpu / w.requests * 1e6 for w in ws if w.server_cpu is not None and w.requests]
            client = [w.client_cpu / w.requests * 1e6 for w in ws if w.requests]
            preempted = [w.server_preempted / w.requests for w in ws if w.server_preempted is not None and w.requests]
            rows.append([
                f"c={c}", mode, f"{med([w.rps for w in ws]):.0f}", f"{med([w.p50 for w in ws]) * 1e3:.3f}",
                f"{med([w.p99 for w in ws]) * 1e3:.3f}", f"{med(client):.0f} us", f"{med(cpu):.0f} us" if cpu else "-",
                f"{med(preempted):.2f}" if preempted else "-", f"{sum(w.requests for w in ws)}",
            ])
    print(f"\nbackend: {name}")
    print(common.table(["conc", "mode", "rps", "p50 ms", "p99 ms", "client CPU/req", "srv CPU/req",
                        "srv preempted/req", "requests"], rows))
    print()
    ratio_rows = []
    for c, by in results.items():
        ratios = [p.rps / d.rps for d, p in zip(by["direct"], by["proxy"], strict=True)]
        added = [(p.p50 - d.p50) * 1e3 for d, p in zip(by["direct"], by["proxy"], strict=True)]
        ok_rps, ok_p50 = med(ratios) >= TARGET_RPS_RATIO, med(added) < TARGET_ADDED_P50_MS
        verdicts += [ok_rps, ok_p50]
        relay = [r.rps / d.rps for d, r in zip(by["direct"], by["bare relay"], strict=True)]
        row = [
            f"c={c}", f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            "met" if ok_rps else "MISSED",
            f"{med(added):+.3f} ({min(added):+.3f}..{max(added):+.3f})", "met" if ok_p50 else "MISSED",
            f"{med(relay):.2f} ({min(relay):.2f}-{max(relay):.2f})",
        ]
        if "direct TCP" in by:
            tcp = [t.rps / d.rps for d, t in zip(by["direct"], by["direct TCP"], strict=True)]
            over_tcp = [p.rps / t.rps for t, p in zip(by["direct TCP"], by["proxy"], strict=True)]
            row += [f"{med(tcp):.2f} ({min(tcp):.2f}-{max(tcp):.2f})",
                    f"{med(over_tcp):.2f} ({min(over_tcp):.2f}-{max(over_tcp):.2f})"]
        ratio_rows.append(row)
    headers = ["conc", "proxy/direct rps (min-max)", f">={TARGET_RPS_RATIO:.2f}",
               "proxy p50 - direct p50 ms (min..max)", f"<{TARGET_ADDED_P50_MS:g} ms", "bare relay/direct rps"]
    if len(ratio_rows[0]) > len(headers):
        headers += ["direct TCP/direct rps", "proxy/direct TCP rps"]
    print(common.table(headers, ratio_rows))
    us = {k: v * 1e6 for k, v in raw.items()}
    tcp_note = f"direct TCP {us['direct TCP']:.0f} us, " if "direct TCP" in us else ""
    print(f"\none request at a time from a blocking socket ({RAW_REQUESTS} per side), median per request: "
          f"direct {us['direct']:.0f} us, {tcp_note}bare relay {us['bare relay']:.0f} us, "
          f"dockext {us['proxy']:.0f} us; dockext - relay {us['proxy'] - us['bare relay']:+.0f} us")
    return verdicts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short repetition (a smoke run, ~25 s)")
    ap.add_argument("--backend", choices=("fast", "slow", "both"), default="both")
    ap.add_argument("--duration", type=float, help="seconds per window (default 1.5, --quick 0.7)")
    ap.add_argument("--reps", type=int, help="repetitions of every window (default 3, --quick 1)")
    args = ap.parse_args()
    duration = min(max(args.duration or (0.7 if args.quick else 1.5), 0.2), 30.0)
    reps = min(max(args.reps or (1 if args.quick else 3), 1), 20)
    warmup = 0.2 if args.quick else 0.5

    client = common.require_engine()
    wanted = ["fast", "slow"] if args.backend == "both" else [args.backend]
    refs = {
        "fast": lambda: common.build_bench_fixture(client, "bench-fast"),
        "slow": lambda: common.build_test_fixture(client, "vm-image"),
    }
    labels = {"fast": "fast (bench-fast: asyncio responder)", "slow": "slow (vm-image: http.server)"}
    print(f"dockext proxy bench, {time.strftime('%Y-%m-%d %H:%M')}, {common.machine()}")
    print(f"{duration:g} s per window, {reps} repetition(s), concurrency {', '.join(map(str, CONCURRENCY))}")
    verdicts: list[bool] = []
    with common.Bench(client) as b:
        setups = []
        for name in wanted:
            ext = b.install(refs[name]())
            ui = b.open_ui(ext)
            b.wait_backend(ui)
            setups.append((name, ui, b.backend_socket(ext)))
        for name, ui, sock in setups:
            responder = common.BENCH_FIXTURES / "bench-fast" / "app" / "server.py" if name == "fast" else None
            results, raw = common.run_async(
                measure_backend(b, ui, sock, duration=duration, reps=reps, warmup=warmup, responder=responder))
            verdicts += report(labels[name], results, raw)
    print("\ntargets:", "all met" if all(verdicts) else "not all met (see MISSED above)")
    return 0


if __name__ == "__main__":
    common.run_main(main)
