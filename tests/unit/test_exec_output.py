"""The output a non-streaming exec keeps (``execution.ProcessGroup.run``): a cap per stream, a budget for the
whole server, and a line in stderr saying what was dropped and how to read it all."""

from __future__ import annotations

import asyncio
import os

import pytest

from dockext import execution
from dockext.execution import ExecPlan, ProcessGroup
from tests.support.aio import run


def plan(script: str) -> ExecPlan:
    return ExecPlan(["/bin/sh", "-c", script], None, dict(os.environ), "x")


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> execution._Budget:
    """A cap of 1,000 bytes per stream, and a budget of its own for the process (10,000 bytes; tests change it)."""
    budget = execution._Budget(10_000)
    monkeypatch.setattr(execution, "OUTPUT_CAP", 1000)
    monkeypatch.setattr(execution, "_budget", budget)
    return budget


def test_output_past_the_cap_is_dropped_and_stderr_says_how_much(small: execution._Budget) -> None:
    async def main() -> execution.ExecResult:
        script = "head -c 5000 /dev/zero | tr '\\0' o; head -c 1200 /dev/zero | tr '\\0' e >&2"
        return await ProcessGroup().run(plan(script))

    result = run(main())
    assert result.code == 0 and result.stdout == "o" * 1000
    kept, note = result.stderr[:1000], result.stderr[1000:]
    assert kept == "e" * 1000
    assert note.startswith("\ndockext: 4000 bytes of stdout and 200 bytes of stderr were not kept")
    assert "run it with the stream option" in note
    assert small.held == 0  # given back


def test_commands_running_at_once_share_the_budget(small: execution._Budget) -> None:
    small.total = 1500

    async def main() -> list[execution.ExecResult]:
        group = ProcessGroup()
        script = "head -c 1000 /dev/zero | tr '\\0' x; sleep 0.5"  # both hold their output until they end
        return list(await asyncio.gather(group.run(plan(script)), group.run(plan(script))))

    results = run(main())
    assert sorted(len(r.stdout) for r in results) == [500, 1000]  # 1,500 between them
    [short] = [r for r in results if len(r.stdout) == 500]
    assert "500 bytes of stdout were not kept" in short.stderr
    assert small.held == 0


def test_output_within_the_cap_is_kept_as_it_is(small: execution._Budget) -> None:
    result = run(ProcessGroup().run(plan("printf 'out'; printf 'err' >&2; exit 3")))
    assert (result.code, result.stdout, result.stderr) == (3, "out", "err")
