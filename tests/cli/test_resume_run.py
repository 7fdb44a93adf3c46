"""``kernel-agent run --resume`` in a new process: a run recorded through one provider continued through another."""

from __future__ import annotations

from pathlib import Path

from ..models.fake_providers import (
    FakeProvider,
    anthropic_message,
    openai_completion,
    openai_tool_call,
    tool_use_block,
)
from .test_run import TASK, assert_intact, environment, kernel_agent

COUNTING_TOOLS = '''\
from pathlib import Path

from kernel_agent import tool

CALLS = Path(__file__).with_name("calls.txt")


@tool
def weather(city: str) -> dict:
    """The current weather of a city."""
    with CALLS.open("a") as log:  # every real call, across processes
        log.write(city + "\\n")
    return {"city": city, "temp_c": 21, "sky": "clear"}
'''
STEP_1 = ("w = tools.weather('Paris')\nimport random\nimport numpy as np\n"
          "a, n = random.random(), np.random.randint(1000)\nprint('temperature:', w['temp_c'], a, n)")
STEP_2 = "final_answer(f\"{w['temp_c']} {a} {n}\")"


def test_a_recorded_run_is_continued_in_a_new_process(tmp_path: Path) -> None:
    """Recorded through an OpenAI-compatible server and stopped by --max-steps; continued through the Anthropic API
    in another process: the first request holds the earlier conversation in Anthropic's format, the kernel's
    variables (a tool result, seeded random and NumPy values) are back, the tool ran once, one chain audits."""
    (tmp_path / "mytools.py").write_text(COUNTING_TOOLS)
    first = FakeProvider(openai_completion("Asking the tool.", openai_tool_call(STEP_1, id="call_1")))
    with first.serve() as url:
        run = kernel_agent("run", TASK, "--model", f"openai:gpt-test@{url}/v1", "--tools", "mytools:weather",
                           "--notebook", "run.ipynb", "--max-steps", "1", cwd=tmp_path)
    assert run.returncode == 3 and "stop reason: max_steps" in run.stdout, run.stdout + run.stderr

    second = FakeProvider(anthropic_message(tool_use_block(STEP_2, id="toolu_2")))
    with second.serve() as url:
        resumed = kernel_agent("run", "--resume", "run.ipynb", "--model", "anthropic:claude-test", "--base-url", url,
                               "--tools", "mytools:weather", cwd=tmp_path, env=environment(ANTHROPIC_API_KEY="k"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    task, reply, observation = second.bodies[0]["messages"]
    assert task == {"role": "user", "content": [{"type": "text", "text": TASK}]}
    assert reply["role"] == "assistant" and reply["content"][0] == {"type": "text", "text": "Asking the tool."}
    assert reply["content"][1] == {"type": "tool_use", "id": "call_1", "name": "python", "input": {"code": STEP_1}}
    result = observation["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1"
    printed = result["content"][0]["text"]
    assert printed.startswith("temperature: 21 ")
    assert f"answer:\n21 {printed.removeprefix('temperature: 21 ')}" in resumed.stdout  # the same a and n
    assert "resumed:     after step 1; every rebuilt cell matched its recording" in resumed.stdout
    assert (tmp_path / "calls.txt").read_text() == "Paris\n"  # the rebuild answered the call from the record
    assert_intact(tmp_path / "run.ipynb", tmp_path)

    # The run answered: continuing it needs a follow-up task. Refused as unusable input (exit 2), before a kernel.
    (tmp_path / "none.json").write_text("[]")
    again = kernel_agent("run", "--resume", "run.ipynb", "--model", "scripted:none.json", cwd=tmp_path)
    assert again.returncode == 2 and "already answered; give a follow-up task" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    neither = kernel_agent("run", "--model", "scripted:none.json", cwd=tmp_path)
    assert neither.returncode == 2 and "give a TASK, or --resume NOTEBOOK" in neither.stderr
