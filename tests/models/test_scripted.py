"""ScriptedModel: replies from a percent-format script, a JSON list or a recorded notebook, with estimated usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel_agent.agent import Agent, StopReason
from kernel_agent.demo import DEMO_SCRIPT, DEMO_TASK, DEMO_TOOLS
from kernel_agent.errors import ModelConfigError
from kernel_agent.models.base import (
    CODE_TOOL,
    AssistantTurn,
    CodeRequest,
    Observation,
    ObservationTurn,
    Turn,
    Usage,
    UserTurn,
)
from kernel_agent.models.scripted import ScriptedModel, estimate_tokens, parse_percent_script

SCRIPT = """\
# A preamble before the first marker is not a reply.

# %% [markdown]
# First I'll look at the data.
#
# Then count it.

# %%
rows = [1, 2, 3]
print(len(rows))

# %%

# %% [markdown]
#Two messages before one cell
# %% [markdown]
# are joined.
# %%
final_answer(len(rows))
# %% [markdown]
# That was all.
"""


def test_percent_script_pairs_text_with_the_next_code() -> None:
    """Markdown goes with the next code cell; empty cells are skipped; trailing markdown is a text-only reply."""
    assert parse_percent_script(SCRIPT) == [
        {"text": "First I'll look at the data.\n\nThen count it.", "code": "rows = [1, 2, 3]\nprint(len(rows))"},
        {"text": "Two messages before one cell\n\nare joined.", "code": "final_answer(len(rows))"},
        {"text": "That was all."},
    ]


async def test_replies_in_order_then_exhausted(tmp_path: Path) -> None:
    script = tmp_path / "steps.py"
    script.write_text(SCRIPT)
    model = ScriptedModel.from_file(script)
    assert model.spec == f"scripted:{script}" and model.provider == "scripted"
    replies = [await model.complete("system", [UserTurn("task")], CODE_TOOL) for _ in range(4)]
    assert [r.code for r in replies] == [
        (CodeRequest("script-1", "rows = [1, 2, 3]\nprint(len(rows))"),),
        (CodeRequest("script-2", "final_answer(len(rows))"),), (), ()]
    assert [r.stop_reason for r in replies] == ["tool_use", "tool_use", "end_turn", "end_turn"]
    assert replies[2].text == "That was all."
    assert replies[3].text == "The script has no more steps."
    assert all(r.model == model.spec for r in replies)
    await model.close()


async def test_usage_is_an_estimate_that_grows_with_the_conversation() -> None:
    model = ScriptedModel([{"text": "look", "code": "print('x' * 40)"}, "2 + 2", "3"])
    conversation: list[Turn] = [UserTurn("a task of some length")]
    first = await model.complete("the system prompt", conversation, CODE_TOOL)
    assert first.usage == Usage(
        input_tokens=estimate_tokens("the system prompt") + estimate_tokens("a task of some length"),
        output_tokens=estimate_tokens("look" + "print('x' * 40)"))
    conversation += [AssistantTurn(first), ObservationTurn((Observation("script-1", "x" * 400),))]
    second = await model.complete("the system prompt", conversation, CODE_TOOL)
    # The 400 characters of output alone are 100 more tokens to read.
    assert second.usage.input_tokens >= first.usage.input_tokens + 100
    conversation += [AssistantTurn(second), ObservationTurn((Observation("script-2", "Out[2]: 4"),))]
    third = await model.complete("the system prompt", conversation, CODE_TOOL)
    assert third.usage.input_tokens > second.usage.input_tokens
    assert estimate_tokens("") == 0 and estimate_tokens("abcde") == 2


def test_json_script(tmp_path: Path) -> None:
    script = tmp_path / "steps.json"
    script.write_text(json.dumps(["x = 1", {"text": "now answer", "code": "final_answer(x)"}, {"text": "bye"}]))
    model = ScriptedModel.from_file(script)
    assert model.replies == [("", "x = 1"), ("now answer", "final_answer(x)"), ("bye", None)]


@pytest.mark.parametrize(("content", "message"), [
    ('{"code": "1"}', "must hold a JSON list"),
    ("[1, 2", "cannot be read"),
    ('["ok", {"cmd": "x"}]', "reply 1 must be a code string"),
    ('[{"text": 3}]', "reply 0 must be"),
    ("[{}]", "reply 0 must be"),
])
def test_bad_json_scripts(tmp_path: Path, content: str, message: str) -> None:
    script = tmp_path / "steps.json"
    script.write_text(content)
    with pytest.raises(ModelConfigError, match=message):
        ScriptedModel.from_file(script)


def test_missing_and_empty_notebooks(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no script file"):
        ScriptedModel.from_file(tmp_path / "nothing.py")
    empty = tmp_path / "empty.ipynb"
    empty.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ModelConfigError, match="no recorded code cells"):
        ScriptedModel.from_file(empty)
    empty.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ModelConfigError, match="no cells list"):
        ScriptedModel.from_file(empty)


async def test_a_recorded_run_replays_as_a_script(tmp_path: Path) -> None:
    """Record the demo; the notebook read back as a script is the demo's script and gives the same answer."""
    recorded = tmp_path / "demo.ipynb"
    first = await Agent(ScriptedModel.from_file(DEMO_SCRIPT), DEMO_TOOLS, notebook=recorded).run(DEMO_TASK)
    assert first.stop_reason is StopReason.FINAL_ANSWER, first.error
    replayed = ScriptedModel.from_file(recorded)
    assert replayed.spec == f"scripted:{recorded}"
    assert replayed.replies == ScriptedModel(parse_percent_script(DEMO_SCRIPT.read_text())).replies
    again = await Agent(replayed, DEMO_TOOLS, notebook=False).run(DEMO_TASK)
    assert again.stop_reason is StopReason.FINAL_ANSWER and again.answer == first.answer
    assert again.usage == first.usage  # the same conversation, so the same estimate
