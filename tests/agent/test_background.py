"""The agent loop with a long cell: it goes to the background, the model polls, is refused other code, waits.

The cell waits for a file the test creates when the model's second step has
been answered (an on_event callback): no sleeps, no timing assertions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kernel_agent import Agent, AgentEvent, ScriptedModel, StopReason
from kernel_agent.agent.resume import load_agent_run
from kernel_agent.models.base import AssistantTurn, ObservationTurn
from kernel_agent.verify.audit import audit_notebook

LONG_CELL = """\
import os, time
total = 0
print('started', flush=True)
while not os.path.exists('go'):
    time.sleep(0.01)
total = 42
print('total is', total)
"""


def cells_of(notebook: Path) -> list[dict[str, Any]]:
    return json.loads(notebook.read_text())["cells"]


async def test_a_long_cell_runs_on_while_the_model_polls_then_waits_for_it(workspace: Path, tmp_path: Path) -> None:
    notebook = tmp_path / "run.ipynb"
    script = [
        {"text": "Start the long computation.", "code": LONG_CELL},
        "print('other work')",  # refused while the cell runs
        "%wait 0",  # still running: the new output (none)
        "%wait",  # until it ends
        "final_answer(total)",
    ]
    events: list[AgentEvent] = []

    def on_event(event: AgentEvent) -> None:
        events.append(event)
        if event.kind == "cell" and event.step == 3:
            (workspace / "go").touch()  # the model has polled once: let the cell finish

    agent = Agent(ScriptedModel(script), workspace=workspace, notebook=notebook, on_event=on_event,
                  background_after=0.2, cell_timeout=120)
    result = await agent.run("Compute the total.")

    assert result.stop_reason is StopReason.FINAL_ANSWER and result.answer == 42
    first, other, poll, wait, answer = (step.observation for step in result.steps)
    observations = [event.observation for event in events if event.kind == "cell"]
    assert "still running after" in observations[0] and "Output so far:\nstarted" in observations[0]
    assert "%wait" in observations[0] and "%cancel" in observations[0]
    assert observations[1].startswith("Not run:") and "still running in the background" in observations[1]
    assert "No new output" in observations[2]
    assert observations[3] == "started\ntotal is 42" == wait
    assert "background" in result.conversation[0]["content"]  # the system prompt explains it
    assert [first, other, poll] == observations[:3] and answer == "[final_answer() was called.]"

    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.headline
    cells = cells_of(notebook)
    code = [c for c in cells if c["cell_type"] == "code" and c["metadata"]["kernel_agent"]["kind"] == "code"]
    assert [c["source"] for c in code] == [LONG_CELL, "final_answer(total)"]  # commands and refusals never ran
    ours = code[0]["metadata"]["kernel_agent"]
    assert ours["background"] is True and ours["step"] == 1 and ours["observation"]["text"] == wait
    assert ours["observed_in"] == "background notes"
    assert "observed_in" not in code[1]["metadata"]["kernel_agent"]
    # One note per step the host answered, in order, naming the step and the code it answered: with the
    # model's messages they are the conversation (the cell's own record holds its final observation).
    notes = [c for c in cells if c["metadata"]["kernel_agent"]["kind"] == "background"]
    assert ["".join(c["source"]) for c in notes] == [*observations[:3], wait]
    assert [(n["metadata"]["kernel_agent"]["step"], n["metadata"]["kernel_agent"]["code"],
             n["metadata"]["kernel_agent"].get("result")) for n in notes] == [
        (1, LONG_CELL, None), (2, "print('other work')", None), (3, "%wait 0", None), (4, "%wait", True)]
    assert [n["metadata"]["kernel_agent"]["call_id"] for n in notes] == [f"script-{i}" for i in range(1, 5)]

    # The conversation rebuilds from the record (a resume): every step's code and what the model got, in order.
    recorded = load_agent_run(notebook, follow_up="And now?")
    replies = [turn.reply for turn in recorded.conversation if isinstance(turn, AssistantTurn)]
    seen = [o for turn in recorded.conversation if isinstance(turn, ObservationTurn) for o in turn.observations]
    assert [r.code[0].code for r in replies] == [LONG_CELL, "print('other work')", "%wait 0", "%wait",
                                                 "final_answer(total)"]
    assert [o.text for o in seen] == [first, other, poll, wait, answer]
    assert [o.call_id for o in seen] == [f"script-{i}" for i in range(1, 6)] and recorded.steps == 5


async def test_a_run_that_ends_with_a_background_cell_running_cancels_it(workspace: Path, tmp_path: Path) -> None:
    notebook = tmp_path / "run.ipynb"
    script = [LONG_CELL]  # then the script is exhausted: the model answers in plain text and the run ends
    agent = Agent(ScriptedModel(script), workspace=workspace, notebook=notebook, background_after=0.2,
                  cell_timeout=120)
    result = await agent.run("Start and leave.")
    assert result.stop_reason is StopReason.ANSWERED
    code = [c for c in cells_of(notebook) if c["cell_type"] == "code"
            and c["metadata"]["kernel_agent"]["kind"] == "code"]
    assert [c["metadata"]["kernel_agent"]["status"] for c in code] == ["cancelled"]
    assert audit_notebook(notebook).verdict == "intact"
