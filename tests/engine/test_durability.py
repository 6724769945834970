"""Install, update and remove are durable, not only atomic (reference R8, the ALICE-style protocol check).

A kill -9 cannot undo a rename, but a power cut can undo one whose directory was never synced, and a file
renamed into place before its data reached the disk can come back empty. So the real CLI runs each operation
under ``strace``, and the trace must show, in order:

* every file dockext wrote under its home fsynced (or its file system synced: ``syncfs``/``sync``) before a
  rename publishes it, or a directory holding it;
* every directory a rename changed fsynced before dockext prints that the operation succeeded.

The renames into ``staging/`` (the trash, emptied at once) are left out: if one is lost, the next command
finds the tombstoned directory again and finishes the removal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

PREFIX = "dockext-durable"
SYSCALLS = "openat,write,pwrite64,sendfile,copy_file_range,fsync,fdatasync,syncfs,sync,rename,renameat,renameat2"
_CALL = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)$")
_FD = re.compile(r"^(-?\d+)<([^>]*)>")
_PATHS = re.compile(r'"((?:[^"\\]|\\.)*)"')


def problems(trace: str, home: Path, success: str) -> list[str]:
    """What the trace of one operation shows it failing to make durable (the checks of the module docstring)."""
    root = str(home)
    dirty: set[str] = set()
    unsynced_dirs: set[str] = set()
    found: list[str] = []
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        call, args = m.groups()
        fd = _FD.match(args)
        if call in ("write", "pwrite64") and fd and fd.group(1) == "1" and success in args:
            found += [f"directory not synced before {success!r}: {d}" for d in sorted(unsynced_dirs)]
            return found
        if call in ("write", "pwrite64", "sendfile", "copy_file_range") and fd and fd.group(2).startswith(root):
            dirty.add(fd.group(2))
        elif call in ("fsync", "fdatasync") and fd:
            dirty.discard(fd.group(2))
            unsynced_dirs.discard(fd.group(2))
        elif call in ("syncfs", "sync"):
            dirty.clear()
        elif call.startswith("rename"):
            paths = [p for p in _PATHS.findall(args) if p.startswith(root)]
            if len(paths) != 2:
                continue
            src, dst = paths
            if dst.startswith(str(home / "staging") + "/"):
                continue  # into the trash (module docstring)
            unpublished = sorted(f for f in dirty if f == src or f.startswith(src + "/"))
            found += [f"rename {src} -> {dst} before its data was synced: {f}" for f in unpublished]
            unsynced_dirs |= {os.path.dirname(src), os.path.dirname(dst)}
    found.append(f"{success!r} never printed")
    return found


def traced(home: Path, tmp_path: Path, *args: str) -> tuple[str, str]:
    """(stdout, the strace of every process) of ``dockext ARGS``."""
    out = tmp_path / f"trace-{args[0]}"
    proc = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-s", "200", "-e", f"trace={SYSCALLS}", "-o", str(out),
         sys.executable, "-m", "dockext.cli", *args],
        env={**os.environ, "DOCKEXT_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, out.read_text()


def test_install_update_and_remove_are_durable_before_they_say_so(tmp_path, fixture_image):
    home = tmp_path / "home"
    v1 = fixture_image("vm-image", tag="1.0.0", repo_prefix=PREFIX)
    v2 = fixture_image("vm-image", tag="2.0.0", repo_prefix=PREFIX)
    try:
        for args, success in (
            (("install", "-f", v1), "installed successfully"),
            (("update", "-f", v2), "updated to"),
            (("rm", f"{PREFIX}/vm-image"), "removed"),
        ):
            stdout, trace = traced(home, tmp_path, *args)
            assert success in stdout
            assert "rename" in trace and ("syncfs(" in trace or "fsync(" in trace)  # the trace has what it checks
            assert problems(trace, home, success) == [], args[0]
    finally:
        subprocess.run([sys.executable, "-m", "dockext.cli", "rm", f"{PREFIX}/vm-image"],
                       env={**os.environ, "DOCKEXT_HOME": str(home)}, capture_output=True, check=False)


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The checker itself, on traces that break each rule (it could pass everything otherwise)."""
    home = tmp_path / "home"
    h = str(home)
    good = (f'write(5<{h}/staging/x/ui/a.html>, "hi", 2) = 2\n'
            f'syncfs(6<{h}/staging/x>) = 0\n'
            f'rename("{h}/staging/x", "{h}/extensions/k") = 0\n'
            f'fsync(7<{h}/extensions>) = 0\n'
            f'fsync(8<{h}/staging>) = 0\n'
            f'write(1<pipe:[1]>, "Extension installed successfully", 32) = 32\n')
    assert problems(good, home, "installed successfully") == []
    unsynced_data = good.replace(f"syncfs(6<{h}/staging/x>) = 0\n", "")
    assert problems(unsynced_data, home, "installed successfully") == [
        f"rename {h}/staging/x -> {h}/extensions/k before its data was synced: {h}/staging/x/ui/a.html"]
    unsynced_dir = good.replace(f"fsync(7<{h}/extensions>) = 0\n", "")
    assert problems(unsynced_dir, home, "installed successfully") == [
        f"directory not synced before 'installed successfully': {h}/extensions"]
