"""Attacks on the smolagents executor from inside the kernel: the agent's code cannot reach the host's tool
objects, cannot make the host unpickle anything, cannot fake a final answer or plant one from an earlier step,
cannot leave the executor without its tools, flood the model's prompt, or run a managed agent twice at once."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from textwrap import dedent
from typing import Any

import pytest
from smolagents import CodeAgent, FinalAnswerTool, Tool
from smolagents.utils import AgentExecutionError

from kernel_agent.integrations.smolagents import KernelAgentExecutor

from ..integrations.smolagents_support import PriceTool, ScriptedCodeModel

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


# -- the executor's own cells, its error texts, its managed agents and its final answer, attacked from the kernel --


class _Signal(Tool):  # type: ignore[misc]
    """A host tool that sets one event and waits (bounded) for another: the kernel and the test take turns."""

    inputs: dict[str, Any] = {}  # noqa: RUF012
    output_type = "boolean"

    def __init__(self, name: str, sets: threading.Event, waits_for: threading.Event | None = None) -> None:
        self.name, self.description = name, f"{name} (a test signal)"
        super().__init__()
        self.sets, self.waits_for = sets, waits_for

    def forward(self) -> bool:
        self.sets.set()
        return self.waits_for.wait(120) if self.waits_for is not None else True


def test_a_kernel_killed_during_the_executor_s_own_cell_gets_the_tools_back() -> None:
    """The agent's code plants a kernel-killer where the executor fetches the variables: the fresh kernel that
    replaces it must get the tools' names and the variables again (they were lost for the rest of the run)."""
    prices = PriceTool()
    with KernelAgentExecutor(notebook=False, default_timeout=60) as executor:
        executor.send_tools({"unit_price": prices, "final_answer": FinalAnswerTool()})
        executor(dedent("""
            import os, signal, sys
            sys.modules["kernel_agent_tools.smolagents"].variables = lambda: os.kill(os.getpid(), signal.SIGKILL)
        """))
        executor.send_variables({"basket": {"fig": 3}})
        with pytest.raises(AgentExecutionError, match="receiving the agent's variables"):
            executor("print('never runs')")
        output = executor("print(unit_price('fig', basket['fig']))\nfinal_answer(basket)")
        assert output.logs == "6.0\n" and output.output == {"fig": 3} and output.is_final_answer


def test_a_huge_exception_does_not_fill_the_model_s_next_prompt() -> None:
    """The kernel's error text goes into the next prompt: it is cut like the logs (the session keeps megabytes)."""
    with KernelAgentExecutor(notebook=False, default_timeout=60, max_print_outputs_length=5_000) as executor, \
            pytest.raises(AgentExecutionError) as caught:
        executor("print('x' * 1_000_000)\nraise ValueError('y' * 1_500_000)")
    text = str(caught.value)
    assert len(text) < 3 * 5_000 and "Executing code yielded an error:\nValueError: yyy" in text


def test_a_managed_agent_given_its_manager_s_executor_is_refused_at_once() -> None:
    """The helper's run would wait for the step that waits for it (until the step's timeout), then run its code
    in its manager's kernel: it is refused with a named error the model reads, and the executor goes on."""
    executor = KernelAgentExecutor(notebook=False, default_timeout=600)
    helper = CodeAgent(tools=[], model=ScriptedCodeModel(["final_answer('from the helper')"]), name="helper",
                       description="Answers sub-questions.", executor=executor, verbosity_level=0)
    model = ScriptedCodeModel(["try:\n    helper(task='help')\nexcept Exception as exc:\n    final_answer(str(exc))",
                               "final_answer(40 + 2)"])
    with CodeAgent(tools=[], model=model, managed_agents=[helper], executor=executor, verbosity_level=0) as agent:
        refused = agent.run("Ask the helper.")
        assert "ExecutorBusyError" in refused and "one step at a time" in refused
        assert agent.run("Then answer yourself.", reset=False) == 42
    assert helper.model.replies == ["final_answer('from the helper')"]  # the helper never ran a step


def test_the_kernel_cannot_run_one_managed_agent_twice_at_once() -> None:
    """Concurrent calls (``.aio`` gathered) would reset the first task's memory and interleave both in its kernel."""
    asked, released = threading.Event(), threading.Event()

    class GatedModel(ScriptedCodeModel):
        def generate(self, messages: list[Any], stop_sequences: list[str] | None = None, **kwargs: Any) -> Any:
            asked.set()
            released.wait(120)
            return super().generate(messages, stop_sequences, **kwargs)

    helper = CodeAgent(tools=[], model=GatedModel(["final_answer('first done')"]), name="helper",
                       description="Answers sub-questions.", verbosity_level=0,
                       executor=KernelAgentExecutor(notebook=False, default_timeout=60))
    signals = [_Signal("helper_asked", threading.Event(), asked), _Signal("release", released)]
    code = dedent("""
        import asyncio
        first = asyncio.ensure_future(tools.helper.aio(task="slow"))
        await tools.helper_asked.aio()          # the first task is running on the host
        try:
            await tools.helper.aio(task="second")
            second = "accepted"
        except Exception as exc:
            second = str(exc)
        await tools.release.aio()
        final_answer({"first": await first, "second": second})
    """)
    with helper, CodeAgent(tools=signals, model=ScriptedCodeModel([code]), managed_agents=[helper],
                           executor=KernelAgentExecutor(notebook=False, default_timeout=120),
                           verbosity_level=0) as manager:
        answer = manager.run("Ask the helper twice at once.")
    assert "first done" in answer["first"] and "working on another task" in answer["second"]


def test_a_final_answer_left_running_by_a_step_does_not_answer_a_later_one() -> None:
    """A slow final_answer tool fired and forgotten in one step ends in the next: that step gave no answer."""
    running, released, returned = threading.Event(), threading.Event(), threading.Event()

    class SlowFinalAnswer(FinalAnswerTool):  # type: ignore[misc]
        def forward(self, answer: Any) -> Any:
            running.set()
            released.wait(120)
            returned.set()
            return answer

    tools = {"final_answer": SlowFinalAnswer(), "answer_running": _Signal("answer_running", threading.Event(),
                                                                          running),
             "release_answer": _Signal("release_answer", released, returned)}
    with KernelAgentExecutor(notebook=False, default_timeout=60) as executor:
        executor.send_tools(tools)
        first = executor(dedent("""
            import asyncio
            late = asyncio.ensure_future(tools.final_answer.aio(answer="planted"))
            await tools.answer_running.aio()
        """))
        assert not first.is_final_answer
        later = executor("release_answer()\nprint('no answer here')")
        assert later.is_final_answer is False and later.logs == "no answer here\n"
        assert executor("final_answer('real')").output == "real"


def test_a_tool_s_backtracking_pattern_does_not_stall_the_host() -> None:
    """A schema's ``^(a+)+$`` against 60 characters the kernel sends: hours of Python ``re`` on the event loop
    (holding the GIL) before; the host's linear engine refuses it at once, and the session goes on."""

    class Code(Tool):  # type: ignore[misc]
        name = "redeem"
        description = "Redeems a code."
        inputs = {"code": {"type": "string", "description": "the code", "pattern": "^(a+)+$"}}  # noqa: RUF012
        output_type = "string"

        def forward(self, code: str) -> str:
            return f"redeemed {len(code)}"

    with KernelAgentExecutor(notebook=False, default_timeout=60) as executor:
        executor.send_tools({"redeem": Code()})
        with pytest.raises(AgentExecutionError, match=r"ToolValidationError.*does not match"):
            executor("redeem('a' * 60 + '!')")
        assert executor("print(redeem('aaaa'))").logs == "redeemed 4\n"


def test_the_kernel_s_text_reaches_smolagents_without_terminal_sequences(executor: KernelAgentExecutor) -> None:
    """smolagents' logger prints the logs, the output and the error on the user's terminal (rich keeps ESC):
    an OSC 52 there writes the clipboard, others retitle the window or hide text."""
    osc = "\\x1b]52;c;cHduZWQ=\\x1b\\\\"
    output = executor(f"print('logs {osc}')\ntype('Shown', (), {{'__repr__': lambda self: 'output {osc}'}})()")
    assert output.logs == "logs \n" and output.output == "output "
    with pytest.raises(AgentExecutionError) as caught:
        executor(f"raise ValueError('error {osc}\\x1b[2J')")
    assert "\x1b" not in str(caught.value) and "ValueError: error" in str(caught.value)
