"""smolagents' CodeAgent solving a multi-step task through KernelAgentExecutor: host tools, state across runs,
faithful values, the recording audited and replayed (issue 14's acceptance test for the executor)."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from pathlib import Path

import pandas as pd
import pytest
from smolagents import CodeAgent
from smolagents.memory import ActionStep

from kernel_agent import audit_notebook, replay
from kernel_agent.integrations.smolagents import KernelAgentExecutor

from .smolagents_support import PriceTool, ScriptedCodeModel

STEP_PRICES = """\
prices = {item: unit_price(item, quantity=n) for item, n in basket.items()}
print(prices, type(since).__name__)"""
STEP_TOTAL = """\
import pandas as pd
frame = pd.DataFrame({"item": list(prices), "cost": list(prices.values())})
total = float(frame.cost.sum())
final_answer({"total": total, "frame": frame, "since": since})
print("never printed: final_answer ends the step")"""


def test_code_agent_solves_a_multi_step_task_with_host_tools_and_keeps_state_across_runs(tmp_path: Path) -> None:
    prices = PriceTool()
    model = ScriptedCodeModel([
        STEP_PRICES, STEP_TOTAL,                                         # run 1: two steps
        'final_answer(total * 2 + tools.unit_price(item="pear"))',      # run 2 (reset=False): run 1's variables
        "final_answer(round(total * (1 - float(discount)), 2))",        # run 3 (reset=True): the kernel keeps them
    ])
    notebook = tmp_path / "smolagents-run.ipynb"
    executor = KernelAgentExecutor(notebook=notebook, default_timeout=60)
    with CodeAgent(tools=[prices], model=model, executor=executor, verbosity_level=0) as agent:
        answer = agent.run("What does the basket cost?",
                           additional_args={"basket": {"apple": 3, "fig": 2}, "since": dt.date(2026, 1, 1)})
        assert set(answer) == {"total", "frame", "since"}
        assert answer["total"] == 5.5
        pd.testing.assert_frame_equal(answer["frame"], pd.DataFrame({"item": ["apple", "fig"], "cost": [1.5, 4.0]}))
        assert answer["since"] == dt.date(2026, 1, 1)  # a date sent in, a date back: no str() on the way
        steps = [step for step in agent.memory.steps if isinstance(step, ActionStep)]
        assert "{'apple': 1.5, 'fig': 4.0} date" in steps[0].observations  # the print, as smolagents' logs
        assert steps[1].is_final_answer and "never printed" not in (steps[1].observations or "")
        assert prices.calls == [("apple", 3), ("fig", 2)]  # the tool ran on the host, with the kernel's arguments
        assert "kernel-agent-smolagents" not in prices.threads  # blocking tools run off the session's event loop

        assert agent.run("Twice that, plus a pear.", reset=False) == 11.75
        assert agent.run("With the discount?", reset=True, additional_args={"discount": decimal.Decimal("0.1")}) \
            == 4.95
        assert prices.calls[-1] == ("pear", 1)
        session = executor.session
        assert session is not None and executor.notebook == notebook
    assert executor.session is None and session.notebook == notebook  # agent.cleanup() closed it

    report = audit_notebook(notebook)
    assert report.verdict == "intact", report.problems
    assert report.exit_code == 0


async def test_the_recorded_run_replays_faithfully(tmp_path: Path) -> None:
    """The executor's own cells (names, variables) are recorded, so a replay rebuilds the same namespace."""
    notebook = tmp_path / "replayed.ipynb"
    model = ScriptedCodeModel([STEP_PRICES, STEP_TOTAL])

    def run_agent() -> None:
        executor = KernelAgentExecutor(notebook=notebook, default_timeout=60)
        with CodeAgent(tools=[PriceTool()], model=model, executor=executor, verbosity_level=0) as agent:
            assert agent.run("What does it cost?", additional_args={"basket": {"pear": 4}, "since": dt.date.today()}
                             )["total"] == 3.0

    await asyncio.to_thread(run_agent)  # smolagents is synchronous; this test's loop must not be blocked
    report = await replay(notebook)
    assert report.faithful, report.divergent_cells


def test_the_model_sees_the_traceback_of_a_failing_step_and_recovers() -> None:
    model = ScriptedCodeModel([
        "rows = [1, 2, 3]\nprint('before the error')\nrows[10]",
        "final_answer(len(rows))",
    ])
    with CodeAgent(tools=[], model=model, executor=KernelAgentExecutor(default_timeout=60),
                   verbosity_level=0) as agent:
        assert agent.run("How many rows?") == 3
        failed = next(step for step in agent.memory.steps if isinstance(step, ActionStep))
        assert failed.error is not None and type(failed.error).__name__ == "AgentExecutionError"
        message = str(failed.error)
        assert "before the error" in message and "IndexError: list index out of range" in message
        assert "----> 3 rows[10]" in message  # the traceback, as plain text (no terminal colours)
        assert "IndexError" in model.prompts[1]  # and the model read it in its next prompt


def test_additional_authorized_imports_do_not_gate_the_kernel() -> None:
    """The sandbox is the boundary: a module outside smolagents' authorized list imports (documented)."""
    model = ScriptedCodeModel(["import statistics, csv\nfinal_answer(statistics.mean([1, 2, 3]))"])
    with CodeAgent(tools=[], model=model, executor=KernelAgentExecutor(default_timeout=60),
                   additional_authorized_imports=[], verbosity_level=0) as agent:
        assert agent.run("Mean?") == 2


@pytest.mark.parametrize("reply", ["final_answer(41 + 1)", "x = 41\nfinal_answer(answer=x + 1)"])
def test_final_answer_by_position_or_keyword(reply: str) -> None:
    with CodeAgent(tools=[], model=ScriptedCodeModel([reply]), executor=KernelAgentExecutor(default_timeout=60),
                   verbosity_level=0) as agent:
        assert agent.run("The answer?") == 42
