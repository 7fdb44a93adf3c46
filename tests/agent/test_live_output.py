"""The agent's live output: ``output`` events while a cell runs, and an interrupted run's partial output recorded."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from kernel_agent import Agent, AgentEvent, ScriptedModel, StopReason
from kernel_agent.verify.audit import audit_notebook


def code_cells(notebook: Path) -> list[dict[str, object]]:
    cells = json.loads(notebook.read_text())["cells"]
    return [cell for cell in cells if cell["metadata"].get("kernel_agent", {}).get("kind") == "code"]


async def test_output_events_come_while_the_cell_runs_and_before_its_cell_event(workspace: Path) -> None:
    """The cell prints, then blocks on a FIFO the test opens only once the output event was seen."""
    os.mkfifo(workspace / "release", 0o666)
    events: list[AgentEvent] = []
    first_output = asyncio.Event()

    def on_event(event: AgentEvent) -> None:
        events.append(event)
        if event.kind == "output" and "step one" in event.text:
            first_output.set()

    agent = Agent(ScriptedModel(["print('step one', flush=True)\nopen('release').read()\nprint('done')",
                                 "final_answer(1)"]), workspace=workspace, notebook=False, on_event=on_event)
    run = asyncio.create_task(agent.run("Print while working"))
    await first_output.wait()
    assert [event.kind for event in events] == ["start", "reply", "output"]  # no cell event yet: it still runs
    await asyncio.to_thread((workspace / "release").write_text, "go")
    result = await run
    assert result.stop_reason is StopReason.FINAL_ANSWER
    kinds = [event.kind for event in events]
    first_cell = kinds.index("cell")
    outputs = [event for event in events[:first_cell] if event.kind == "output"]
    assert "".join(event.text for event in outputs) == "step one\ndone\n"
    assert all(event.step == 1 and event.output is not None and event.output.name == "stdout" for event in outputs)
    assert events[first_cell].cell is not None and events[first_cell].cell.stdout == "step one\ndone\n"


async def test_an_interrupted_run_records_the_running_cells_partial_output(workspace: Path, tmp_path: Path) -> None:
    """Cancelled (as Ctrl-C does) while its cell loops: the cell is in the notebook with what it printed,
    marked cancelled, and the record audits intact."""
    notebook = tmp_path / "run.ipynb"
    printed = asyncio.Event()
    agent = Agent(ScriptedModel(["print('halfway there', flush=True)\nimport time\nwhile True: time.sleep(0.05)"]),
                  notebook=notebook, workspace=workspace,
                  on_event=lambda e: printed.set() if e.kind == "output" and "halfway" in e.text else None)
    task = asyncio.create_task(agent.run("Spin"))
    await printed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.last_result is not None and agent.last_result.stop_reason is StopReason.INTERRUPTED
    cell = code_cells(notebook)[-1]
    ours = cell["metadata"]["kernel_agent"]  # type: ignore[index]
    assert ours["status"] == "cancelled" and ours["step"] == 1
    assert cell["outputs"][0] == {"output_type": "stream", "name": "stdout",  # type: ignore[index]
                                  "text": "halfway there\n"}
    assert "halfway there" in ours["observation"]["text"]
    report = audit_notebook(notebook)
    assert report.verdict == "intact", report
