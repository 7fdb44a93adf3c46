"""Host memory per session is bounded whatever the kernel sends, and flat in the number of cells (issue 10, 9)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import psutil
import pytest

from kernel_agent import Session
from kernel_agent.tools.calls import CallStatus

# serial: host RSS is what is measured (tests/run_suite.py runs these alone).
pytestmark = pytest.mark.serial

MB = 1024**2


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def test_host_memory_does_not_grow_with_the_number_of_cells(workspace: Path) -> None:
    cell = "print('x' * 2_000_000)"
    async with Session(workspace, default_timeout=60, notebook=False) as session:
        for _ in range(10):
            await session.execute(cell)
        after_10 = _rss()
        for _ in range(60):
            result = await session.execute(cell)
            assert result.ok and result.dropped_output_bytes == 0
        after_70 = _rss()
    del result
    # Keeping every cell would hold 60 x 2 MB more; a generous bound for allocator noise.
    assert after_70 - after_10 < 40 * MB, f"host RSS grew {(after_70 - after_10) / MB:.0f} MB over 60 cells"


FLOOD = """
from IPython.display import display
ip = get_ipython()
for i in range(300):  # error outputs, each ~100 kB
    try:
        raise ValueError('e' * 100_000)
    except ValueError:
        ip.showtraceback()
handle = display({'text/plain': 'start'}, raw=True, display_id=True)
for i in range(100):  # display updates that grow
    handle.update({'text/plain': 'u' * (i * 20_000)}, raw=True)
for i in range(500):  # progress events of ~50 kB
    progress('p', blob='p' * 50_000)
for i in range(50):
    final_answer('a' * 100_000)
for i in range(400):  # refused calls (invalid arguments), with sizeable arguments
    try:
        tools.strict(x=['m' * 20_000])
    except Exception:
        pass
"""


async def test_a_cell_flooding_every_kind_of_event_keeps_at_most_the_caps(workspace: Path) -> None:
    cap = 256 * 1024
    record_cap = 2 * MB

    def strict(x: str) -> str:
        """Takes a string only."""
        return x

    async with Session(workspace, default_timeout=120, notebook=False, max_output_bytes=cap, tools=[strict]) as session:
        session.bridge.max_cell_record_bytes = record_cap
        result = await session.execute(FLOOD)
    outputs = sum(len(json.dumps(output)) for output in result.outputs)
    # The outputs: the cap, plus the cell's first error (cut to a bounded size) and the markers.
    assert outputs <= cap + 256 * 1024, outputs
    assert sum(o["output_type"] == "error" for o in result.outputs) <= cap // 100_000 + 1
    # Progress and the call records: within the record cap; of the final answers, only the last.
    records = (sum(len(json.dumps(e.model_dump(mode="json"))) for e in result.progress)
               + sum(len(json.dumps(c.model_dump(mode="json"))) for c in result.tool_calls))
    assert records <= record_cap, records
    assert result.has_final_answer and len(result.final_answer) == 100_000
    assert all(call.status is CallStatus.INVALID for call in result.tool_calls)
    assert len(result.tool_calls) < 400
    # What was not kept is named.
    assert "progress message(s) over the cell's record cap" in result.stderr
    assert "tool call(s) were refused: the cell's record cap was reached" in result.stderr
    assert "output truncated" in result.stderr
