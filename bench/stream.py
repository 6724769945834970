"""Streaming exec throughput through dockext against reading the same process directly, in one run.

    .venv/bin/python bench/stream.py [--quick] [--mb N] [-n RUNS] [--no-deflate]

Both sides run the ``streams`` test fixture's host binary ``blast.sh BYTES`` (``yes <a 90-byte log line> |
head -c BYTES``: text, as logs are), RUNS times each (default 5, --quick 3), alternating which side goes first,
after one warm-up run each:

* dockext: a WebSocket to ``/i/<cap>/__dockext__/stream`` on the extension's origin (what the SDK opens, same
  Origin), ``{"cli": "host", "cmd": "blast.sh", "args": [BYTES]}``, output messages (binary: a stream byte,
  then the bytes) counted until ``{"exit": 0}``. The client offers permessage-deflate as browsers do and
  dockext declines it (``--no-deflate``: not offered);
* direct: the same binary spawned by this process, its stdout read with ``os.read`` until EOF.

Printed: MB/s of each side (median of the runs; 1 MB = 10^6 bytes), the ratio dockext/direct, and the CPU time
of the ``dockext serve`` process per MB. Loopback only; the whole run is bounded by a time limit.

For scale: Chromium's own WebSocket delivered 40-70 MB/s to a page on the 2-core reference machine (binary or
text frames alike, whatever the frame size), so with a browser on the other end the page is the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import common  # first: re-runs this script under .venv/bin/python if needed
from websockets.sync.client import ClientConnection, connect

# The benchmark's own client reads 64 KiB per recv() by default: more makes it lighter.
ClientConnection.recv_bufsize = 1 << 20

TIME_LIMIT = 180.0  # seconds for all the runs together
READ_SIZE = 1 << 18


def direct(binary: str, size: int) -> float:
    """Seconds to read ``size`` bytes of ``binary size``'s stdout straight from the pipe."""
    started = time.perf_counter()
    proc = subprocess.Popen([binary, str(size)], stdout=subprocess.PIPE, cwd=os.path.dirname(binary))
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = 0
    while chunk := os.read(fd, READ_SIZE):
        got += len(chunk)
    proc.wait()
    elapsed = time.perf_counter() - started
    if got != size or proc.returncode != 0:
        raise RuntimeError(f"direct: read {got} of {size} bytes, exit {proc.returncode}")
    return elapsed


def via_dockext(b: common.Bench, ui: common.Ui, size: int, *, deflate: bool) -> float:
    """Seconds from the request to the exit message for ``blast.sh size`` streamed through dockext."""
    url = f"ws://{ui.host}{ui.api}/stream"
    sock = socket.create_connection(("127.0.0.1", b.port), timeout=30)
    with connect(url, sock=sock, origin=ui.origin, compression="deflate" if deflate else None,
                 max_size=None, open_timeout=10) as ws:
        started = time.perf_counter()
        ws.send(json.dumps({"cli": "host", "cmd": "blast.sh", "args": [str(size)]}))
        got = 0
        message: dict[str, object] = {}
        for raw in ws:
            if isinstance(raw, bytes):  # output: a stream byte, then what the process wrote
                got += len(raw) - 1
                continue
            message = json.loads(raw)
            if "exit" in message:
                break
            raise RuntimeError(f"dockext: unexpected message {str(message)[:300]}")
        elapsed = time.perf_counter() - started
    if got != size or message.get("exit") != 0:
        raise RuntimeError(f"dockext: got {got} of {size} bytes, {message}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs of 64 MB instead of 5 of 256 MB")
    ap.add_argument("--mb", type=int, help="megabytes per run (default 256, --quick 64)")
    ap.add_argument("-n", type=int, help="runs on each side (default 5, --quick 3)")
    ap.add_argument("--no-deflate", action="store_true", help="do not offer permessage-deflate")
    args = ap.parse_args()
    runs = min(max(args.n or (3 if args.quick else 5), 1), 50)
    size = min(max(args.mb or (64 if args.quick else 256), 1), 4096) * 10**6
    deflate = not args.no_deflate

    client = common.require_engine()
    ref = common.build_test_fixture(client, "streams")
    print(f"dockext stream bench, {time.strftime('%Y-%m-%d %H:%M')}, {common.machine()}")
    print(f"host binary blast.sh {size // 10**6} MB of text lines, {runs} runs each, sides alternating, "
          f"permessage-deflate {'offered' if deflate else 'off'}")
    with common.Bench(client) as b:
        ext = b.install(ref)
        ui = b.open_ui(ext)
        binary = str(b.home / "extensions" / ext.key / "host" / "blast.sh")
        deadline = time.monotonic() + TIME_LIMIT
        direct(binary, size // 8)
        via_dockext(b, ui, size // 8, deflate=deflate)
        times: dict[str, list[float]] = {"direct": [], "dockext": []}
        cpu = 0.0
        for i in range(runs):
            order = ["direct", "dockext"] if i % 2 == 0 else ["dockext", "direct"]
            for side in order:
                if side == "direct":
                    times[side].append(direct(binary, size))
                else:
                    before = common.process_cpu_seconds(b.server_pid)
                    times[side].append(via_dockext(b, ui, size, deflate=deflate))
                    cpu += common.process_cpu_seconds(b.server_pid) - before
            if time.monotonic() > deadline:
                print(f"time limit reached after {i + 1} runs", file=sys.stderr)
                break
        mb = size / 10**6
        rate = {side: mb / common.median(t) for side, t in times.items()}
        rows = [
            [side, f"{rate[side]:.0f}", f"{mb / max(t):.0f}", f"{mb / min(t):.0f}", str(len(t))]
            for side, t in times.items()
        ]
        print(common.table(["side", "MB/s (median)", "slowest", "fastest", "runs"], rows))
        ratio = rate["dockext"] / rate["direct"]
        per_mb = cpu * 1000 / (mb * len(times["dockext"]))
        print(f"dockext / direct: {ratio:.0%}   dockext serve CPU: {per_mb:.2f} ms/MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
