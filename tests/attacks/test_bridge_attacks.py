"""Attacks on the tool bridge from inside a real kernel, checked on the host afterwards (issue 10, 6-8).

No test sleeps or asserts a duration: the kernel's own code waits for the
events it needs (a thread's progress), and the host checks what ran, what
was recorded, and what was refused.
"""

from __future__ import annotations

import asyncio
import decimal
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session
from kernel_agent.tools.calls import CallStatus
from tests.conftest import LoopStallMonitor


class HostCounter:
    """Tools whose host side counts every run, so nothing can run unseen."""

    def __init__(self) -> None:
        self.runs = 0
        self.block_started = asyncio.Event()

    def tools(self) -> list[Any]:
        def count() -> int:
            """Count one run on the host."""
            self.runs += 1
            return self.runs

        async def block() -> None:
            """Never returns (until cancelled)."""
            self.runs += 1
            self.block_started.set()
            await asyncio.Event().wait()

        async def block_started() -> bool:
            """Returns once block() runs on the host."""
            await self.block_started.wait()
            return True

        def echo(value: Any) -> Any:
            """Return the value as the host received it, with its type names."""
            self.runs += 1
            return {"value": value, "types": [type(v).__name__ for v in value] if isinstance(value, list) else None}

        def add(a: int, b: int = 1) -> int:
            """Add two integers."""
            self.runs += 1
            return a + b

        return [count, block, block_started, echo, add]


@pytest.fixture
async def counted(workspace: Path) -> AsyncIterator[tuple[Session, HostCounter]]:
    counter = HostCounter()
    async with Session(workspace, default_timeout=60, notebook=False, tools=counter.tools()) as session:
        yield session, counter


LEFTOVER_THREAD = """
import threading, time
state = {"ok": 0, "errors": []}
def keep_calling():
    while True:
        try:
            tools.count()
            state["ok"] += 1
        except ToolError as exc:
            state["errors"].append(str(exc))
            if len(state["errors"]) > 10_000:
                return
        time.sleep(0.002)
threading.Thread(target=keep_calling, daemon=True).start()
while state["ok"] < 3:  # some calls are made while this cell runs: they are its own
    time.sleep(0.001)
"""

WAIT_FOR_REFUSALS = """
seen = len(state["errors"])
while len(state["errors"]) < seen + 3:  # the leftover thread keeps calling while this cell runs
    time.sleep(0.001)
"""


async def _wait_until(predicate: Any) -> None:
    """Wait for a host-side condition, without assuming how long it takes (the test's own timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0.01)


async def test_a_thread_left_by_a_cell_never_runs_tools_for_later_cells(
    counted: tuple[Session, HostCounter],
) -> None:
    session, counter = counted
    results = [await session.execute(LEFTOVER_THREAD)]
    assert results[0].ok, results[0].error
    # Between cells no cell runs: the thread's calls are refused, and the tool does not run.
    runs_after_cell = counter.runs
    refused = session.bridge.refused_outside_cells
    await asyncio.wait_for(_wait_until(lambda: session.bridge.refused_outside_cells >= refused + 3), 60)
    assert counter.runs == runs_after_cell
    for _ in range(3):
        result = await session.execute(WAIT_FOR_REFUSALS)
        assert result.ok, result.error
        results.append(result)
    stop = await session.execute("stale = [e for e in state['errors'] if 'arrived after that cell ended' in e]\n"
                                 "idle = [e for e in state['errors'] if 'no cell of this session is running' in e]\n"
                                 "bool(stale), bool(idle)")
    results.append(stop)
    # Every run of the tool is recorded exactly once, all in the cell that started the thread.
    recorded = [call for result in results for call in result.tool_calls if call.status is CallStatus.OK]
    assert len(recorded) == counter.runs
    assert len({call.id for call in recorded}) == len(recorded)
    assert all(call.cell == results[0].tool_calls[0].cell for call in recorded)
    assert all(not result.tool_calls for result in results[1:])
    assert stop.result == "(True, True)"
    assert any("threads of earlier cells were refused" in r.stderr for r in results[1:])


async def test_a_call_running_when_its_cell_ends_is_cancelled_and_recorded(
    counted: tuple[Session, HostCounter],
) -> None:
    session, counter = counted
    result = await session.execute(
        "import threading\n"
        "outcome = []\n"
        "def run():\n"
        "    try:\n"
        "        tools.block()\n"
        "    except ToolError as exc:\n"
        "        outcome.append((exc.kind, str(exc)))\n"
        "worker = threading.Thread(target=run)\n"
        "worker.start()\n"
        "tools.block_started()\n")
    assert result.ok, result.error
    (blocked,) = [call for call in result.tool_calls if call.tool == "block"]
    assert blocked.status is CallStatus.CANCELLED
    assert "ended before the call finished" in (blocked.error.message if blocked.error else "")
    after = await session.execute("worker.join(); outcome")
    assert "cancelled" in (after.result or "") and not after.tool_calls
    assert counter.runs == 1


async def test_non_finite_floats_cross_the_bridge_as_floats(counted: tuple[Session, HostCounter]) -> None:
    session, _ = counted
    result = await session.execute(
        "import math\n"
        "back = tools.echo([float('nan'), float('inf'), -float('inf'), 1.5])\n"
        "progress('numbers', nan=float('nan'), inf=float('inf'))\n"
        "final_answer({'nan': float('nan'), 'ninf': -math.inf})\n"
        "v = back['value']\n"
        "(back['types'], math.isnan(v[0]), v[1] == math.inf, v[2] == -math.inf, type(v[0]).__name__)\n")
    assert result.ok, result.error
    assert result.result == "(['float', 'float', 'float', 'float'], True, True, True, 'float')"
    (event,) = result.progress
    from kernel_agent import wire

    fields = wire.decode(event.fields)
    assert math.isnan(fields["nan"]) and fields["inf"] == math.inf
    assert math.isnan(result.final_answer["nan"]) and result.final_answer["ninf"] == -math.inf
    # What is recorded is valid JSON: the non-finite numbers are tagged.
    import json

    json.dumps([call.model_dump(mode="json") for call in result.tool_calls], allow_nan=False)
    json.dumps(event.fields, allow_nan=False)


@pytest.mark.parametrize("notebook", [False, True], ids=["unrecorded", "recorded"])
async def test_nan_in_a_display_and_the_final_answer_does_not_erase_the_cell(
    workspace: Path, notebook: bool
) -> None:
    async with Session(workspace, default_timeout=60, notebook=None if notebook else False) as session:
        result = await session.execute(
            "from IPython.display import display\n"
            "display({'application/json': {'x': float('nan'), 'y': float('inf')}}, raw=True)\n"
            "final_answer(float('nan'))\n")
    assert result.ok, result.error
    assert result.has_final_answer and math.isnan(result.final_answer)


async def test_a_huge_decimal_for_an_int_is_refused_before_validation(counted: tuple[Session, HostCounter]) -> None:
    session, counter = counted
    async with LoopStallMonitor() as monitor:
        result = await session.execute(
            "from decimal import Decimal\n"
            "from kernel_agent.kernel.sdk import ToolValidationError\n"
            "try:\n"
            "    tools.add(Decimal('1e10000000'))\n"
            "except ToolValidationError as exc:\n"
            "    caught = str(exc)\n"
            "caught\n")
    print(f"largest event-loop stall: {monitor.max_gap * 1000:.1f} ms")
    assert result.ok, result.error
    assert "exponent" in (result.result or "") and counter.runs == 0
    (call,) = result.tool_calls
    assert call.status is CallStatus.INVALID
    assert decimal.Decimal("1e10000") == decimal.Decimal(10) ** 10000  # the bound still lets ordinary decimals in


async def test_multi_megabyte_final_answer_and_progress_are_capped_and_named(
    counted: tuple[Session, HostCounter],
) -> None:
    session, _ = counted
    async with LoopStallMonitor() as monitor:
        result = await session.execute(
            "progress('big', blob='x' * 5_000_000)\n"
            "progress('small', rows=1)\n"
            "final_answer(['y' * 1000] * 8000)\n")
    print(f"largest event-loop stall: {monitor.max_gap * 1000:.1f} ms")
    assert result.ok, result.error
    assert [event.message for event in result.progress] == ["small"]
    assert result.has_final_answer and "the final answer was not kept" in result.final_answer
    assert "progress message(s) over the" in result.stderr
    assert "final answer message(s) over the" in result.stderr
