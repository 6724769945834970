"""``ddClient.docker.cli.exec`` through dockext against the same docker command run directly, in one run.

    .venv/bin/python bench/exec.py [--quick] [-n N]

Both sides run ``docker version --format {{.Server.Version}}`` N times (default 50, --quick 10), one call at a
time, alternating which side goes first in each pair, after 3 warm-up calls each:

* dockext: ``POST /i/<cap>/__dockext__/exec`` ``{"cli": "docker", "cmd": "version", "args": ["--format",
  "{{.Server.Version}}"]}`` on the extension's origin (what the SDK sends), a keep-alive httpx client;
* direct: ``subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"])`` from this process.

Printed: median and p90 wall time of each side, their ratio and the added milliseconds (medians), and the CPU
time of the ``dockext serve`` process per exec (its own work: HTTP, policy, spawning, reading the output).
The extension is the test fixture ``ui-only`` (no backend: exec needs none).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import common  # first: re-runs this script under .venv/bin/python if needed
import httpx

FORMAT = "{{.Server.Version}}"
ARGV = ["docker", "version", "--format", FORMAT]
BODY = {"cli": "docker", "cmd": "version", "args": ["--format", FORMAT]}
WARMUP = 3
TIME_LIMIT = 240.0  # seconds for all the calls together


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 calls each instead of 50")
    ap.add_argument("-n", type=int, help="calls on each side (default 50, --quick 10)")
    args = ap.parse_args()
    n = min(max(args.n or (10 if args.quick else 50), 3), 1000)

    client = common.require_engine()
    ref = common.build_test_fixture(client, "ui-only")
    print(f"dockext exec bench, {time.strftime('%Y-%m-%d %H:%M')}, {common.machine()}")
    print(f"`{' '.join(ARGV)}`, {n} calls each, sequential, sides alternating")
    with common.Bench(client) as b:
        ui = b.open_ui(b.install(ref))
        env = dict(os.environ)
        env.pop("DOCKER_CONTEXT", None)  # dockext pins its engine the same way

        def direct() -> str:
            p = subprocess.run(ARGV, capture_output=True, text=True, env=env, timeout=30, check=False)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(ARGV)} exited {p.returncode}: {p.stderr}")
            return p.stdout

        with httpx.Client(base_url=f"http://127.0.0.1:{b.port}", headers={"Host": ui.host, "X-Dockext": "1"},
                          timeout=30) as http:

            def via_dockext() -> str:
                r = http.post(f"{ui.api}/exec", json=BODY)
                body = r.json()
                if r.status_code != 200 or body.get("code") != 0:
                    raise RuntimeError(f"exec through dockext: {r.status_code} {body}")
                return str(body["stdout"])

            sides = {"direct": direct, "dockext": via_dockext}
            first = {name: fn() for name, fn in sides.items()}
            if first["direct"] != first["dockext"]:
                raise RuntimeError(f"the two sides disagree: {first}")
            for _ in range(WARMUP - 1):
                for fn in sides.values():
                    fn()
            times: dict[str, list[float]] = {name: [] for name in sides}
            deadline = time.monotonic() + TIME_LIMIT
            cpu0 = common.process_cpu_seconds(b.server_pid)
            for i in range(n):
                if time.monotonic() > deadline:
                    print(f"time limit reached after {i} pairs", file=sys.stderr)
                    break
                for name in (("direct", "dockext") if i % 2 == 0 else ("dockext", "direct")):
                    t0 = time.perf_counter()
                    sides[name]()
                    times[name].append(time.perf_counter() - t0)
            server_cpu = common.process_cpu_seconds(b.server_pid) - cpu0

    med = {k: common.median(v) * 1e3 for k, v in times.items()}
    p90 = {k: common.percentile(v, 90) * 1e3 for k, v in times.items()}
    rows = [[k, str(len(v)), f"{med[k]:.1f}", f"{p90[k]:.1f}"] for k, v in times.items()]
    print(f"server version: {first['direct'].strip()}\n")
    print(common.table(["side", "calls", "median ms", "p90 ms"], rows))
    count = len(times["dockext"])
    print(
        f"\ndockext / direct (medians): {med['dockext'] / med['direct']:.2f}x, "
        f"added {med['dockext'] - med['direct']:+.1f} ms (p90 {p90['dockext'] - p90['direct']:+.1f} ms); "
        f"dockext serve CPU per exec: {server_cpu / max(count, 1) * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    common.run_main(main)
