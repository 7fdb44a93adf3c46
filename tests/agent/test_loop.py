"""The agent loop with the scripted model: real sandboxed kernels, real tools, real notebooks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from kernel_agent import Agent, AgentEvent, Pricing, ScriptedModel, Session, StopReason, tool
from kernel_agent.cli.audit import main as audit_main
from kernel_agent.errors import ModelResponseError
from kernel_agent.models.base import CodeTool, ModelReply, Turn, Usage

from tests.conftest import sandbox_processes


@tool(namespace="crm", read_only=True)
def customers(count: int = 5000) -> list[dict[str, Any]]:
    """Customers with an id, a country and a yearly spend."""
    countries = ("DE", "FR", "US", "JP")
    return [{"id": i, "country": countries[i % 4], "spend": (i * 7919) % 10_000} for i in range(count)]


def notebook_cells(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["cells"]


async def test_a_run_ends_with_a_validated_final_answer_and_is_recorded(workspace: Path, tmp_path: Path) -> None:
    class Top(BaseModel):
        ids: list[int]
        country: str

    notebook = tmp_path / "run.ipynb"
    script = [
        {"text": "Load the customers.", "code": "rows = tools.crm.customers()\nprint(len(rows))"},
        "final_answer({'ids': 'not a list', 'country': 'DE'})",  # rejected: goes back to the model
        "top = sorted(rows, key=lambda r: -r['spend'])[:3]\nfinal_answer({'ids': [r['id'] for r in top], 'country': top[0]['country']})",
    ]
    events: list[AgentEvent] = []
    agent = Agent(ScriptedModel(script), tools=[customers], workspace=workspace, notebook=notebook,
                  output_type=Top, on_event=events.append)
    result = await agent.run("Which three customers spend most?")

    assert result.stop_reason is StopReason.FINAL_ANSWER and result.ok
    expected = sorted(customers(), key=lambda r: -r["spend"])[:3]
    assert result.answer == Top(ids=[r["id"] for r in expected], country=expected[0]["country"])
    assert [step.index for step in result.steps] == [1, 2, 3]
    assert result.steps[0].observation == "5000" and result.steps[0].tool_calls == 1
    assert "final_answer was rejected" in result.steps[1].observation and "ids" in result.steps[1].observation
    assert "answer_rejected" in [event.kind for event in events]
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.notebook == notebook

    # The notebook: task, the model's message, each cell with its observation and usage; the chain intact.
    cells = notebook_cells(notebook)
    kinds = [cell["metadata"]["kernel_agent"]["kind"] for cell in cells]
    assert kinds == ["setup", "task", "message", "code", "code", "code"]
    code_meta = [cell["metadata"]["kernel_agent"] for cell in cells if cell["cell_type"] == "code"][1:]
    assert code_meta[0]["observation"]["text"] == "5000"
    assert code_meta[0]["usage"]["input_tokens"] == result.steps[0].usage.input_tokens
    header = json.loads(notebook.read_text())["metadata"]["kernel_agent"]["session"]
    assert header["task"] == "Which three customers spend most?"
    assert header["model"]["provider"] == "scripted"
    assert header["agent"]["output_schema"]["required"] == ["ids", "country"]
    assert audit_main(str(notebook), json_output=True, key_env=None, key_file=None) == 0

    # What the model saw, in order: system, task, then assistant/tool pairs.
    roles = [message["role"] for message in result.conversation]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
    assert "tools.crm.customers" in result.conversation[0]["content"]
    assert "final_answer" in result.conversation[0]["content"]


async def test_a_plain_text_reply_is_the_answer() -> None:
    agent = Agent(ScriptedModel(["x = 6 * 7", {"text": "The answer is 42."}]), notebook=False)
    result = await agent.run("What is six times seven?")
    assert result.stop_reason is StopReason.ANSWERED
    assert result.answer == "The answer is 42."
    assert len(result.steps) == 2 and result.notebook is None


async def test_fenced_code_in_plain_text_runs(tmp_path: Path) -> None:
    reply = {"text": "Let me compute it:\n```python\nvalue = sum(range(10))\nprint(value)\n```\nand see."}
    agent = Agent(ScriptedModel([reply, "final_answer(value)"]), notebook=tmp_path / "run.ipynb")
    result = await agent.run("Sum 0..9")
    assert result.steps[0].executions[0].code == "value = sum(range(10))\nprint(value)"
    assert result.steps[0].observation == "45"
    assert result.answer == 45
    assert result.conversation[3] == {"role": "tool", "content": "45"}


async def test_long_output_is_bounded_and_the_whole_is_in_the_workspace_and_notebook(workspace: Path, tmp_path: Path) -> None:
    code = "for i in range(5000):\n    print(f'line {i:05d}', 'x' * 40)"
    agent = Agent(ScriptedModel([code, "print(len(open('outputs/step-001-1.txt').read().splitlines()))"]),
                  workspace=workspace, notebook=tmp_path / "run.ipynb", observation_limit=2000, max_steps=2)
    result = await agent.run("Print a lot")
    observation = result.steps[0].observation
    assert len(observation) < 2400
    assert observation.startswith("line 00000") and observation.rstrip().endswith("line 04999 " + "x" * 40)
    assert "characters" in observation and "cut here" in observation
    assert "the notebook (cell In[1])" in observation and "'outputs/step-001-1.txt'" in observation
    assert result.steps[0].executions[0].truncated
    # The kernel itself can read the whole output back.
    assert result.steps[1].observation == "5000"
    assert result.stop_reason is StopReason.MAX_STEPS
    recorded = notebook_cells(tmp_path / "run.ipynb")[2]
    assert "line 02500" in "".join(recorded["outputs"][0]["text"])  # the notebook keeps everything


async def test_errors_come_back_as_compact_tracebacks() -> None:
    code = "def parse(rows):\n    return [r['amount'] for r in rows]\n\nparse([{'total': 1}])"
    agent = Agent(ScriptedModel([code]), notebook=False, max_steps=1)
    result = await agent.run("Parse")
    observation = result.steps[0].observation
    assert observation.splitlines()[0] == "Traceback (most recent call last):"
    assert "return [r['amount'] for r in rows]" in observation
    assert observation.splitlines()[-1] == "KeyError: 'amount'"
    assert "\x1b[" not in observation and len(observation) < 400


async def test_a_lost_kernel_is_named_in_the_observation() -> None:
    agent = Agent(ScriptedModel(["data = [1, 2, 3]", "import os\nos._exit(3)", "print('data' in globals())"]),
                  notebook=False, max_steps=3)
    result = await agent.run("Crash")
    assert "The kernel was restarted" in result.steps[1].observation
    assert result.steps[2].observation == "False"


@pytest.mark.parametrize(("limits", "stop"), [
    ({"max_steps": 2}, StopReason.MAX_STEPS),
    ({"max_tokens": 1}, StopReason.MAX_TOKENS),
    ({"max_cost": 0.000001, "pricing": Pricing(input=3.0, output=15.0)}, StopReason.MAX_COST),
])
async def test_limits_end_the_run_and_say_which(limits: dict[str, Any], stop: StopReason) -> None:
    agent = Agent(ScriptedModel(["x = 1", "x += 1", "x += 1", "final_answer(x)"]), notebook=False, **limits)
    result = await agent.run("Count")
    assert result.stop_reason is stop and not result.ok and result.error
    assert result.answer is None
    if stop is StopReason.MAX_COST:
        assert result.cost is not None and result.cost >= 0.000001


async def test_the_time_limit_interrupts_a_running_cell() -> None:
    agent = Agent(ScriptedModel(["import time\nwhile True: time.sleep(0.05)", "final_answer(1)"]),
                  notebook=False, max_seconds=4)
    result = await agent.run("Spin")
    assert result.stop_reason is StopReason.MAX_TIME
    assert result.steps[0].executions[0].cell is not None and result.steps[0].executions[0].cell.timed_out


class _FailingModel:
    spec, provider = "failing:test", "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        self.calls += 1
        if self.calls == 1:
            return ModelReply(text="", code=(), usage=Usage(input_tokens=10), stop_reason="tool_use",
                              malformed=(("call-1", "{not json"),))
        raise ModelResponseError("failing: HTTP 529 overloaded")

    async def close(self) -> None:
        return None


async def test_a_model_error_ends_the_run_with_its_message_and_keeps_the_notebook(tmp_path: Path) -> None:
    model = _FailingModel()
    result = await Agent(model, notebook=tmp_path / "run.ipynb").run("Anything")
    assert result.stop_reason is StopReason.MODEL_ERROR
    assert result.error == "failing: HTTP 529 overloaded"
    # The malformed call was answered with an error observation before the model failed.
    assert "could not be read as Python code" in result.conversation[-1]["content"]
    assert audit_main(str(tmp_path / "run.ipynb"), json_output=True, key_env=None, key_file=None) == 0


async def test_cancelling_a_run_closes_its_session_and_keeps_the_notebook(workspace: Path, tmp_path: Path) -> None:
    notebook = tmp_path / "run.ipynb"
    running = asyncio.Event()  # set by the cell itself (its progress event), so it is surely running
    agent = Agent(ScriptedModel(["x = 1", "progress('spinning')\nimport time\nwhile True: time.sleep(0.05)"]),
                  notebook=notebook, workspace=workspace,
                  on_event=lambda e: running.set() if e.kind == "progress" else None)
    task = asyncio.create_task(agent.run("Spin"))
    await asyncio.wait_for(running.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.last_result is not None and agent.last_result.stop_reason is StopReason.INTERRUPTED
    assert len(agent.last_result.steps) == 2
    assert audit_main(str(notebook), json_output=True, key_env=None, key_file=None) == 0
    last = notebook_cells(notebook)[-1]
    assert "Run interrupted in step 2 while this code was running" in "".join(last["source"])
    assert "while True: time.sleep(0.05)" in "".join(last["source"])
    assert not sandbox_processes(workspace)  # bwrap's command line names the workspace it binds


async def test_a_run_can_use_a_session_it_does_not_own(workspace: Path) -> None:
    async with Session(workspace) as session:
        first = await Agent(ScriptedModel(["shared = 41"]), max_steps=1).run("Set", session=session)
        second = await Agent(ScriptedModel(["final_answer(shared + 1)"])).run("Use", session=session)
        assert first.stop_reason is StopReason.MAX_STEPS and second.answer == 42
        assert session.started  # still open: the caller owns it


async def test_the_result_displays_readably_in_jupyter() -> None:
    result = await Agent(ScriptedModel(["final_answer({'total': 3})"]), notebook=False).run("Total")
    html = result._repr_html_()
    assert "final_answer" in html and "{&#x27;total&#x27;: 3}" in html
    assert "| stop reason | final_answer |" in result._repr_markdown_()
    summary = result.summary()
    assert summary["answer"] == {"total": 3} and summary["steps"] == 1 and summary["stop_reason"] == "final_answer"


def test_bad_agent_settings_are_named() -> None:
    with pytest.raises(ValueError, match="pricing"):
        Agent(ScriptedModel([]), max_cost=1.0)
    with pytest.raises(ValueError, match="max_steps"):
        Agent(ScriptedModel([]), max_steps=0)
