"""Background cells (Session.start_cell): polled to completion, cancelled, flooding, recorded and audited.

No sleeps and no timing assertions in the tests: a cell tells the test it is
running through a host tool (which sets an event), and waits for a file the
test creates before it goes on.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import CellStatus, Session, SyncSession, tool_from_function
from kernel_agent.errors import CellRunningError
from kernel_agent.verify.audit import audit_notebook
from kernel_agent.verify.replay import replay

# A cell that says it started (a tool call the test awaits), then waits for the file 'go' the test creates.
WAIT_FOR_GO = """\
import os, time
print('working', flush=True)
tools.ready()
while not os.path.exists('go'):
    time.sleep(0.01)
"""


def ready_tool() -> tuple[asyncio.Event, Any]:
    started = asyncio.Event()

    async def ready() -> str:
        """Tells the test that the cell runs."""
        started.set()
        return "ok"

    return started, tool_from_function(ready)


async def wait_for(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), 60)  # a guard against a hang, not a timing assertion


def code_cells(notebook: Path) -> list[dict[str, Any]]:
    cells = json.loads(notebook.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and c["metadata"]["kernel_agent"]["kind"] == "code"]


async def test_a_background_cell_polled_to_completion_is_recorded_once_with_its_times(
        workspace: Path, tmp_path: Path) -> None:
    started, ready = ready_tool()
    notebook = tmp_path / "bg.ipynb"
    async with Session(workspace, tools=[ready], notebook=notebook, default_timeout=120) as session:
        await session.execute("x = 41")
        cell = await session.start_cell(WAIT_FOR_GO + "x += 1\nprint('done', x)\nx")
        assert session.running_cell is cell and cell.number == 1
        await wait_for(started)

        progress = cell.poll()
        assert progress.running and progress.result is None and progress.new_text == "working\n"
        assert cell.poll().new_text == ""  # nothing new since the last poll
        assert await cell.wait(0.05) is None  # it cannot end before 'go' exists: still running
        with pytest.raises(CellRunningError, match="background cell 1"):
            await session.execute("print('not run')")
        with pytest.raises(CellRunningError):
            await session.start_cell("1")
        with pytest.raises(CellRunningError):
            await session.restart()

        (workspace / "go").touch()
        result = await cell.wait()
        assert result is not None and result.status is CellStatus.OK
        assert result.stdout == "working\ndone 42\n" and result.result == "42"
        assert [call.tool for call in result.tool_calls] == ["ready"]  # its tool call is its own
        final = cell.poll()
        assert not final.running and final.result is result and final.new_text == "done 42\n42\n"
        assert session.running_cell is None
        after = await session.execute("x")  # state kept; the session runs cells again
        assert after.result == "42"

    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    cells = code_cells(notebook)
    assert [c["source"] for c in cells] == ["x = 41", WAIT_FOR_GO + "x += 1\nprint('done', x)\nx", "x"]
    ours = cells[1]["metadata"]["kernel_agent"]
    assert ours["background"] is True and ours["status"] == "ok" and ours["tool_calls"][0]["tool"] == "ready"
    start, end = (datetime.fromisoformat(ours[key]) for key in ("start_time", "end_time"))
    assert start < end <= datetime.fromisoformat(cells[2]["metadata"]["kernel_agent"]["start_time"])
    assert "".join(cells[1]["outputs"][0]["text"]) == "working\ndone 42\n"


async def test_a_cancelled_background_cell_keeps_state_and_close_cancels_a_running_one(
        workspace: Path, tmp_path: Path) -> None:
    started, ready = ready_tool()
    notebook = tmp_path / "cancel.ipynb"
    async with Session(workspace, tools=[ready], notebook=notebook, default_timeout=120) as session:
        await session.execute("y = 1")
        cell = await session.start_cell("y = 2\n" + WAIT_FOR_GO)
        await wait_for(started)
        result = await cell.cancel()
        assert result.status is CellStatus.CANCELLED and not result.kernel_restarted and not result.state_lost
        assert result.error is not None and result.error.ename == "KeyboardInterrupt"
        assert await cell.cancel() is result  # cancelling an ended cell gives its result
        assert (await session.execute("y")).result == "2"  # the kernel and its variables are kept

        started.clear()
        await session.start_cell(WAIT_FOR_GO)
        await wait_for(started)
    # close cancelled the running cell, recorded it, then sealed the record
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    statuses = [(c["metadata"]["kernel_agent"]["status"], c["metadata"]["kernel_agent"].get("background"))
                for c in code_cells(notebook)]
    assert statuses == [("ok", None), ("cancelled", True), ("ok", None), ("cancelled", True)]

    # Replay cancels the recorded cancelled cells again (after as long as they ran): same statuses, same state.
    replayed = await replay(notebook, out=tmp_path / "replayed.ipynb")
    assert replayed.cells == 4 and replayed.tool_calls_served == 2
    assert [c["metadata"]["kernel_agent"]["status"] for c in code_cells(tmp_path / "replayed.ipynb")] == [
        "ok", "cancelled", "ok", "cancelled"]


async def test_a_background_cell_flooding_output_stays_within_the_output_cap(workspace: Path) -> None:
    started, ready = ready_tool()
    cap = 100_000
    async with Session(workspace, tools=[ready], max_output_bytes=cap, default_timeout=120) as session:
        cell = await session.start_cell("for i in range(2000):\n    print('x' * 10_000)\n" + WAIT_FOR_GO)
        await wait_for(started)
        progress = cell.poll()
        kept = sum(len(o.get("text", "")) for o in progress.outputs if o.get("name") == "stdout")
        assert progress.running and kept <= cap
        assert len(progress.new_text) <= cap + 1_000  # the kept text, and the truncation marker
        (workspace / "go").touch()
        result = await cell.wait()
        assert result is not None and result.status is CellStatus.OK
        assert len(result.stdout) <= cap and result.dropped_output_bytes >= 2000 * 10_001 - cap - len("working\n")


def test_sync_session_background_cells(workspace: Path) -> None:
    with SyncSession(workspace, default_timeout=120) as session:
        cell = session.start_cell("import os, time\nprint('working', flush=True)\n"
                                  "while not os.path.exists('go'):\n    time.sleep(0.01)\nprint('done')")
        assert cell.wait(0.05) is None and not cell.done
        (workspace / "go").touch()
        result = cell.wait()
        assert result is not None and result.stdout == "working\ndone\n" and cell.done
        assert cell.poll().result is result and cell.cancel() is result
        assert session.execute("1 + 1").result == "2"


async def test_cancelling_a_cell_that_ignores_the_interrupt_replaces_the_kernel(workspace: Path) -> None:
    started, ready = ready_tool()
    async with Session(workspace, tools=[ready], default_timeout=120, interrupt_grace=0.5) as session:
        await session.execute("z = 1")
        cell = await session.start_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + WAIT_FOR_GO)
        await wait_for(started)
        result = await cell.cancel()
        assert result.status is CellStatus.CANCELLED and result.kernel_restarted and result.state_lost
        assert result.error is not None and result.error.ename == "CellCancelled"
        assert "cancelled" in result.error.evalue and session.kernel_restarts == 1
        assert (await session.execute("'z' in dir()")).result == "False"  # a fresh kernel, running cells again
