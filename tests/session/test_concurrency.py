"""One host process, 20 sandboxed sessions running cells with tool calls at the same time.

Each session has its own tools, bound to its number, and passes its own
keys, so a call served by another session's tool, an output delivered to
the wrong session, a lost output line or a lost call record all fail an
exact comparison.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import CellStatus, KernelPool, Session, Tool, tool_from_function
from kernel_agent.verify.audit import audit_notebook

from ..conftest import PeakRss

SESSIONS = 20
CELLS = 3
SYNC_CALLS = 15  # per cell, one after another from the kernel's main thread
GATHERED_CALLS = 25  # per cell, at once with asyncio.gather
CALLS_PER_CELL = SYNC_CALLS + GATHERED_CALLS
# Host memory growth allowed for 20 live sessions and their traffic (measured: about 20 MB).
HOST_GROWTH_LIMIT = 100 * 1024**2


def tools_of(owner: int) -> list[Tool]:
    """Tools that say which session's host object served them."""

    def lookup(key: str) -> dict[str, Any]:
        """A synchronous lookup."""
        return {"owner": owner, "key": key}

    async def fetch(key: str) -> str:
        """An asynchronous fetch."""
        await asyncio.sleep(0.001)
        return f"{owner}:{key}"

    return [tool_from_function(lookup), tool_from_function(fetch)]


def cell_code(owner: int, cell: int) -> str:
    return textwrap.dedent(f"""
        import asyncio
        for k in range({SYNC_CALLS}):
            answer = tools.lookup(key=f"s{owner}-c{cell}-k{{k}}")
            print("s{owner} c{cell} sync", k, answer["owner"], answer["key"])
        keys = [f"s{owner}-c{cell}-a{{k}}" for k in range({GATHERED_CALLS})]
        fetched = await asyncio.gather(*(tools.fetch.aio(key=key) for key in keys))
        for k, value in enumerate(fetched):
            print("s{owner} c{cell} gathered", k, value)
    """)


def expected_stdout(owner: int, cell: int) -> str:
    lines = [f"s{owner} c{cell} sync {k} {owner} s{owner}-c{cell}-k{k}" for k in range(SYNC_CALLS)]
    lines += [f"s{owner} c{cell} gathered {k} {owner}:s{owner}-c{cell}-a{k}" for k in range(GATHERED_CALLS)]
    return "\n".join(lines) + "\n"


async def run_session(session: Session, owner: int) -> None:
    """Run the cells one after another and check each result exactly."""
    for cell in range(CELLS):
        result = await session.execute(cell_code(owner, cell), timeout=120)
        assert result.status is CellStatus.OK, (owner, cell, result.error)
        assert result.stdout == expected_stdout(owner, cell), (owner, cell)
        assert result.dropped_output_bytes == 0 and result.stderr == ""
        calls = result.tool_calls
        assert len(calls) == CALLS_PER_CELL, (owner, cell, len(calls))
        assert all(call.status.value == "ok" and call.arguments["key"].startswith(f"s{owner}-c{cell}-")
                   for call in calls)
        keys = sorted(call.arguments["key"] for call in calls)
        assert keys == sorted([f"s{owner}-c{cell}-k{k}" for k in range(SYNC_CALLS)]
                              + [f"s{owner}-c{cell}-a{k}" for k in range(GATHERED_CALLS)])


@pytest.mark.serial  # host RSS is measured, and twenty kernels load the machine (tests/run_suite.py)
async def test_twenty_sessions_run_tool_calls_at_once_without_loss_or_cross_talk(tmp_path: Path) -> None:
    """Every output line and call record arrives, in the right session, and the host's memory stays bounded."""
    with PeakRss() as memory:
        async with KernelPool(size=4) as pool:
            sessions = await asyncio.gather(*(
                pool.session(tools=tools_of(owner), notebook=tmp_path / f"s{owner}.ipynb", default_timeout=120)
                for owner in range(SESSIONS)))
            await asyncio.gather(*(run_session(session, owner) for owner, session in enumerate(sessions)))
            for session in sessions:
                assert session.totals["tool_calls"] == CELLS * CALLS_PER_CELL
                assert session.totals["tool_errors"] == 0
    assert memory.growth < HOST_GROWTH_LIMIT, f"host RSS grew {memory.growth / 1024**2:.0f} MB"
    for owner in range(SESSIONS):
        report = audit_notebook(tmp_path / f"s{owner}.ipynb")
        assert report.verdict == "intact", report.headline
        assert report.summary.steps == CELLS and report.summary.tool_calls == CELLS * CALLS_PER_CELL
