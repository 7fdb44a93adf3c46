"""KernelAgentExecutor driven directly, as smolagents drives it: the cases of smolagents' own executor tests that
apply (tests/test_remote_executors.py, named below), values across the bridge, tool conversion, named errors.

Executors take their kernels from one warm pool whose loop runs in a thread (the pool path, and fast).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from textwrap import dedent
from typing import Any

import numpy as np
import pandas as pd
import pytest
from smolagents import FinalAnswerTool, Tool, tool
from smolagents.utils import AgentExecutionError

from kernel_agent import KernelPool
from kernel_agent.errors import SessionOptionError
from kernel_agent.integrations.smolagents import (
    KernelAgentExecutor,
    SmolagentsToolError,
    SmolagentsVariableError,
    tool_from_smolagents,
)
from kernel_agent.integrations.smolagents.errors import INSTALL_HINT

from .smolagents_support import PriceTool, pool_in_thread


@pytest.fixture(scope="module")
def pool() -> Iterator[KernelPool]:
    with pool_in_thread(size=2) as started:
        yield started


@pytest.fixture
def executor(pool: KernelPool) -> Iterator[KernelAgentExecutor]:
    with KernelAgentExecutor(pool=pool, default_timeout=60) as started:
        yield started


# -- ported from smolagents' tests/test_remote_executors.py (CommonDockerExecutorIntegration) --------------------


def test_state_persistence(executor: KernelAgentExecutor) -> None:
    """test_state_persistence: variables and imports of one snippet persist in the next."""
    executor("import numpy as np; a = 2")
    assert "1.41421" in executor("print(np.sqrt(a))").logs


def test_execute_output_and_multiline_output(executor: KernelAgentExecutor) -> None:
    """test_execute_output, test_execute_multiline_output."""
    executor.send_tools({"final_answer": FinalAnswerTool()})
    assert executor('final_answer("This is the final answer")').output == "This is the final answer"
    output = executor('result = "This is the final answer"\nfinal_answer(result)')
    assert output.output == "This is the final answer" and output.is_final_answer


def test_syntax_error_handling(executor: KernelAgentExecutor) -> None:
    """test_syntax_error_handling: an AgentError (here its AgentExecutionError) naming the SyntaxError."""
    with pytest.raises(AgentExecutionError, match="SyntaxError"):
        executor('print("Missing Parenthesis')


@pytest.mark.parametrize(("code_action", "expected_result"), [
    (dedent('''
        final_answer("""This is
        a multiline
        final answer""")
    '''), "This is\na multiline\nfinal answer"),
    (dedent("""
        text = '''Text containing
        final_answer(5)
        '''
        final_answer(text)
    """), "Text containing\nfinal_answer(5)\n"),
    (dedent("""
        num = 2
        if num == 1:
            final_answer("One")
        elif num == 2:
            final_answer("Two")
    """), "Two"),
])
def test_final_answer_patterns(executor: KernelAgentExecutor, code_action: str, expected_result: str) -> None:
    """test_final_answer_patterns."""
    executor.send_tools({"final_answer": FinalAnswerTool()})
    code_output = executor(code_action)
    assert code_output.is_final_answer is True
    assert code_output.output == expected_result


def test_custom_final_answer(executor: KernelAgentExecutor) -> None:
    """test_custom_final_answer: the tool's own forward() runs (on the host)."""

    class CustomFinalAnswerTool(FinalAnswerTool):  # type: ignore[misc]
        def forward(self, answer: str) -> str:
            return "CUSTOM" + answer

    executor.send_tools({"final_answer": CustomFinalAnswerTool()})
    code_output = executor('final_answer(answer="_answer")')
    assert code_output.is_final_answer is True
    assert code_output.output == "CUSTOM_answer"


def test_custom_final_answer_with_custom_inputs(executor: KernelAgentExecutor) -> None:
    """test_custom_final_answer_with_custom_inputs."""

    class CustomFinalAnswerToolWithCustomInputs(FinalAnswerTool):  # type: ignore[misc]
        inputs = {  # noqa: RUF012
            "answer1": {"type": "string", "description": "First part of the answer."},
            "answer2": {"type": "string", "description": "Second part of the answer."},
        }

        def forward(self, answer1: str, answer2: str) -> str:
            return answer1 + "CUSTOM" + answer2

    executor.send_tools({"final_answer": CustomFinalAnswerToolWithCustomInputs()})
    code_output = executor('final_answer(\n    answer1="answer1_",\n    answer2="_answer2"\n)')
    assert code_output.is_final_answer is True
    assert code_output.output == "answer1_CUSTOM_answer2"


# -- values, logs and outputs ------------------------------------------------------------------------------


def test_final_answer_values_arrive_as_they_were(executor: KernelAgentExecutor) -> None:
    output = executor(dedent("""
        import datetime, decimal, numpy as np, pandas as pd
        final_answer({"n": 3, "x": 0.25, "big": 2**70, "when": datetime.datetime(2026, 1, 2, 3, 4),
                      "price": decimal.Decimal("9.99"), "pair": (1, "a"), "tags": {"a", "b"}, "raw": b"\\x00\\xff",
                      "array": np.arange(6, dtype=np.int16).reshape(2, 3),
                      "frame": pd.DataFrame({"a": [1, 2], "b": ["x", None]}), "none": None})
    """))
    value = output.output
    assert output.is_final_answer
    assert value["n"] == 3 and value["x"] == 0.25 and value["big"] == 2**70 and value["none"] is None
    assert value["when"] == dt.datetime(2026, 1, 2, 3, 4) and str(value["price"]) == "9.99"
    assert value["pair"] == (1, "a") and value["tags"] == {"a", "b"} and value["raw"] == b"\x00\xff"
    np.testing.assert_array_equal(value["array"], np.arange(6, dtype=np.int16).reshape(2, 3))
    assert value["array"].dtype == np.int16
    pd.testing.assert_frame_equal(value["frame"], pd.DataFrame({"a": [1, 2], "b": ["x", None]}))


def test_logs_and_last_output_make_the_observation(executor: KernelAgentExecutor) -> None:
    """smolagents builds the observation from the logs (prints, warnings) and str() of the last output."""
    output = executor("import sys\nprint('one')\nprint('two', file=sys.stderr)\n6 * 7")
    assert output.logs == "one\ntwo\n" and output.output == "42" and output.is_final_answer is False
    assert executor("x = 1").output is None  # no last expression: no output, as in smolagents' remote executors


def test_a_value_that_cannot_cross_is_an_execution_error_the_model_can_fix(executor: KernelAgentExecutor) -> None:
    with pytest.raises(AgentExecutionError, match="cannot cross") as caught:
        executor("class Custom: pass\nfinal_answer(Custom())")
    assert "Custom" in str(caught.value)
    assert executor("final_answer(str(Custom.__name__))").output == "Custom"  # the step after still works


def test_the_first_final_answer_ends_the_step(executor: KernelAgentExecutor) -> None:
    output = executor("for i in range(3):\n    print(i)\n    final_answer(i)")
    assert output.output == 0 and output.logs == "0\n"


def test_an_exception_raised_after_a_caught_final_answer_is_an_error(executor: KernelAgentExecutor) -> None:
    """Code that swallows the step's end and then fails: the failure wins, as it would in the kernel."""
    with pytest.raises(AgentExecutionError, match="ValueError: after"):
        executor("try:\n    final_answer(1)\nexcept BaseException:\n    pass\nraise ValueError('after')")


# -- host tools --------------------------------------------------------------------------------------------


class SlowAsyncTool(Tool):  # type: ignore[misc]
    name = "fetch_title"
    description = "The title of a page."
    inputs = {"url": {"type": "string", "description": "the page"}}  # noqa: RUF012
    output_type = "string"

    async def forward(self, url: str) -> str:  # a coroutine forward: awaited on the host
        await asyncio.sleep(0)
        return f"Title of {url}"


@tool
def word_count(text: str, minimum: int = 0) -> dict[str, int]:
    """Count the words of a text.

    Args:
        text: the text
        minimum: only words seen at least this often
    """
    counts: dict[str, int] = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return {w: n for w, n in counts.items() if n >= minimum}


class FailingTool(Tool):  # type: ignore[misc]
    name = "flaky"
    description = "Always fails."
    inputs: dict[str, Any] = {}  # noqa: RUF012
    output_type = "string"

    def forward(self) -> str:
        raise RuntimeError("the service is down")


def test_tools_are_globals_and_sdk_functions_called_on_the_host(pool: KernelPool) -> None:
    prices = PriceTool()
    tools = {"unit_price": prices, "fetch_title": SlowAsyncTool(), "word_count": word_count, "flaky": FailingTool(),
             "final_answer": FinalAnswerTool()}
    with KernelAgentExecutor(pool=pool, default_timeout=60) as executor:
        executor.send_tools(tools)
        output = executor(dedent("""
            print(unit_price("fig"), unit_price(item="apple", quantity=4), tools.unit_price("pear", 2))
            print(fetch_title(url="https://example.org"))
            print(word_count("a b a", minimum=2), word_count(text="x"))
            import inspect
            print(inspect.signature(unit_price))
        """))
        assert output.logs.splitlines() == ["2.0 2.0 1.5", "Title of https://example.org", "{'a': 2} {'x': 1}",
                                            "(item: str, quantity: int = 1) -> float"]
        assert prices.calls == [("fig", 1), ("apple", 4), ("pear", 2)]
        with pytest.raises(AgentExecutionError, match="ToolError: flaky: RuntimeError: the service is down"):
            executor("flaky()")
        with pytest.raises(AgentExecutionError, match="ToolValidationError"):
            executor("unit_price(item=3)")  # validated on the host against the tool's inputs
        executor.send_tools(tools)  # each agent.run sends them again: the same tools are fine
        with pytest.raises(SmolagentsToolError, match="changed after"):
            executor.send_tools({**tools, "other": PriceTool()})


def test_variables_arrive_faithfully_and_again_on_each_run(executor: KernelAgentExecutor) -> None:
    frame = pd.DataFrame({"city": ["Oslo", "Lima"], "t": [2.5, 19.0]})
    executor.send_variables({"frame": frame, "when": dt.date(2026, 2, 3), "blob": b"\x00\x01", "pair": (1, 2)})
    executor.send_tools({"final_answer": FinalAnswerTool()})
    output = executor("print(type(frame).__name__, frame.t.sum(), when.isoformat(), blob, pair)")
    assert output.logs == "DataFrame 21.5 2026-02-03 b'\\x00\\x01' (1, 2)\n"
    executor("frame = None")
    executor.send_variables({"frame": frame})  # a new run sends the agent's state again: it wins
    assert executor("print(frame.shape)").logs == "(2, 2)\n"


@pytest.mark.parametrize(("name", "value", "match"), [
    ("not an identifier", 1, "cannot be a global"),
    ("tools", 1, "cannot be a global"),
    ("final_answer", 1, "cannot be a global"),
    ("__builtins__", {}, "cannot be a global"),
    ("handle", open, "cannot go to the kernel"),
    ("thing", object(), "cannot go to the kernel"),
])
def test_variables_that_cannot_be_sent_are_named_errors(name: str, value: Any, match: str) -> None:
    executor = KernelAgentExecutor()  # no session is started to check variables
    try:
        with pytest.raises(SmolagentsVariableError, match=match):
            executor.send_variables({name: value})
    finally:
        executor.cleanup()


# -- tools that cannot be described --------------------------------------------------------------------------


def _tool(name: str = "ok_tool", inputs: Any = None, output_type: str = "string") -> Tool:
    spec = {"name": name, "description": "d", "inputs": {"x": {"type": "string", "description": "x"}}
            if inputs is None else inputs, "output_type": output_type}
    made = type("Made", (), {**spec, "__call__": lambda self, **kw: "r"})
    return made()


@pytest.mark.parametrize(("made", "match"), [
    (_tool(inputs={"img": {"type": "image", "description": "a picture"}}), "'image' cannot cross"),
    (_tool(output_type="audio"), "'audio' cannot cross"),
    (_tool(inputs={"x": {"type": "tensor", "description": "?"}}), "unknown type 'tensor'"),
    (_tool(inputs=["x"]), "must be a dict"),
    (_tool(inputs={"x": "string"}), "dict spec"),
    (_tool(name="print"), "builtin"),
    (_tool(name="tools"), "kernel SDK"),
    (_tool(name="two words"), "not a Python identifier"),
    (_tool(name="class"), "not a Python identifier"),
    (_tool(inputs={"x": {"type": "string", "enum": "not-a-list"}}), "invalid input schema"),
])
def test_tools_that_cannot_be_described_are_named_errors(made: Any, match: str) -> None:
    with pytest.raises(SmolagentsToolError, match=match):
        tool_from_smolagents(made)


def test_the_schema_of_a_smolagents_tool() -> None:
    described = tool_from_smolagents(PriceTool())
    assert described.input_schema == {
        "type": "object", "additionalProperties": False, "required": ["item"],
        "properties": {"item": {"type": "string", "description": "the item's name"},
                       "quantity": {"type": "integer", "description": "how many (default 1)", "default": 1}}}
    assert described.output_schema == {"type": "number"} and described.source == "smolagents"


def test_a_pool_whose_loop_is_not_running_is_refused() -> None:
    with pytest.raises(SessionOptionError, match="not started"):
        KernelAgentExecutor(pool=KernelPool(size=1))


def test_without_smolagents_the_import_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['smolagents'] = None\n"
            "try:\n    import kernel_agent.integrations.smolagents\n"
            "except ImportError as exc:\n    print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == INSTALL_HINT


def test_after_the_kernel_dies_the_tools_and_the_agent_s_variables_are_there_again(pool: KernelPool) -> None:
    prices = PriceTool()
    with KernelAgentExecutor(pool=pool, default_timeout=60) as executor:
        executor.send_variables({"basket": {"fig": 2}})
        executor.send_tools({"unit_price": prices, "final_answer": FinalAnswerTool()})
        executor("mine = 1")
        with pytest.raises(AgentExecutionError, match="the kernel died") as caught:
            executor("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
        assert "the variables the code defined are gone" in str(caught.value)
        output = executor("print('mine' in globals(), unit_price('fig', basket['fig']))\nfinal_answer(basket)")
        assert output.logs == "False 4.0\n" and output.output == {"fig": 2} and output.is_final_answer


def test_a_managed_agent_is_called_like_a_tool(pool: KernelPool) -> None:
    """The managed agent runs on the host (here with its own KernelAgentExecutor, so its code is confined too)."""
    from smolagents import CodeAgent

    from .smolagents_support import ScriptedCodeModel

    helper = CodeAgent(tools=[], model=ScriptedCodeModel(["final_answer(hint.upper())"]), name="helper",
                       description="Answers sub-questions.", verbosity_level=0,
                       executor=KernelAgentExecutor(pool=pool, default_timeout=60))
    model = ScriptedCodeModel(["report = helper(task='shout', additional_args={'hint': 'quiet'})\n"
                               "final_answer('QUIET' in report)"])
    with helper, CodeAgent(tools=[], model=model, managed_agents=[helper], verbosity_level=0,
                           executor=KernelAgentExecutor(pool=pool, default_timeout=60)) as agent:
        assert agent.run("Ask the helper.") is True


def test_a_step_past_its_timeout_is_interrupted_and_the_state_kept(pool: KernelPool) -> None:
    with KernelAgentExecutor(pool=pool, default_timeout=3) as executor:
        executor("kept = 'still here'")
        with pytest.raises(AgentExecutionError, match="ran past its timeout and was interrupted"):
            executor("print('looping')\nwhile True:\n    pass")
        assert executor("print(kept)").logs == "still here\n"
