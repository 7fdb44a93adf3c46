"""Attacks on the smolagents executor from inside the kernel: the agent's code cannot reach the host's tool
objects, cannot make the host unpickle anything, and cannot fake a final answer or plant one from an earlier step."""

from __future__ import annotations

import os
from collections.abc import Iterator
from textwrap import dedent

import pytest
from smolagents import FinalAnswerTool
from smolagents.utils import AgentExecutionError

from kernel_agent.integrations.smolagents import KernelAgentExecutor

from ..integrations.smolagents_support import PriceTool

PWNED = "KERNEL_AGENT_SMOLAGENTS_PWNED"


@pytest.fixture(scope="module")
def executor() -> Iterator[KernelAgentExecutor]:
    with KernelAgentExecutor(default_timeout=60) as started:
        started.send_tools({"unit_price": PriceTool(), "final_answer": FinalAnswerTool()})
        yield started


def test_the_kernel_holds_no_host_tool_object_and_no_host_secret(executor: KernelAgentExecutor) -> None:
    """Everything reachable in the kernel is searched for the tool's class, its forward() and its api_key."""
    output = executor(dedent('''
        import gc, inspect
        needle = "".join(["host-only-api", "-key-7f3a9c"])      # PriceTool.api_key, never written whole here
        found = []
        for obj in gc.get_objects():
            if type(obj).__name__ == "PriceTool" or getattr(obj, "__name__", None) == "forward":
                found.append(repr(type(obj)))
            values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple, set)) else ()
            for value in list(values):
                if isinstance(value, str) and value is not needle and needle in value:
                    found.append("secret")
        source = inspect.getsource(unit_price)
        print(found, "forward" in source, "api_key" in source, unit_price("fig"))
    '''))
    assert output.logs == "[] False False 2.0\n"


def test_a_pickle_sent_as_the_answer_is_never_unpickled_on_the_host(executor: KernelAgentExecutor) -> None:
    """smolagents' remote executors take ``pickle:`` answers (with allow_pickle); this executor takes values only."""
    assert PWNED not in os.environ
    output = executor(dedent(f'''
        import base64, pickle

        class Boom:
            def __reduce__(self):
                return (exec, ("import os; os.environ[{PWNED!r}] = '1'",))

        payload = pickle.dumps(Boom())
        final_answer({{"raw": payload, "smolagents": "pickle:" + base64.b64encode(payload).decode()}})
    '''))
    assert output.is_final_answer
    assert isinstance(output.output["raw"], bytes) and output.output["smolagents"].startswith("pickle:")
    with pytest.raises(AgentExecutionError, match="cannot cross"):
        executor("final_answer(Boom())")  # an object with __reduce__ is refused in the kernel, not pickled
    assert PWNED not in os.environ


def test_raising_the_end_of_step_without_final_answer_is_no_answer(executor: KernelAgentExecutor) -> None:
    with pytest.raises(AgentExecutionError, match="FinalAnswerException"):
        executor("class FinalAnswerException(BaseException): pass\nraise FinalAnswerException('forged')")


def test_a_thread_of_an_earlier_step_cannot_answer_for_a_later_one(executor: KernelAgentExecutor) -> None:
    executor(dedent("""
        import threading
        go, done, seen = threading.Event(), threading.Event(), []

        def late():
            go.wait()
            try:
                final_answer("planted")
            except BaseException as exc:
                seen.append(type(exc).__name__)
            done.set()

        threading.Thread(target=late, daemon=True).start()
    """))
    output = executor("go.set()\ndone.wait(60)\nprint(seen)")
    assert output.is_final_answer is False and output.output is None
    # Refused by the host's bridge (the call came from a thread of an earlier cell), which says so in the output.
    assert output.logs.startswith("['ToolError']\n") and "from threads of earlier cells were refused" in output.logs


def test_rebinding_the_sdk_names_does_not_stop_the_agent_s_variables(executor: KernelAgentExecutor) -> None:
    executor("tools = None\nglobals()['unit_price'] = None")
    executor.send_variables({"sent": [1, 2, 3]})
    assert executor("print(sum(sent))").logs == "6\n"
