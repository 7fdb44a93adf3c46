"""KernelAgentExecutor: smolagents' CodeAgent runs its code in a sandboxed, recorded kernel-agent session.

smolagents drives an executor with three calls: ``send_variables(state)`` and ``send_tools(tools)`` at
the start of every ``agent.run``, then ``executor(code)`` for each step, expecting a ``CodeOutput``
(the step's value, its printed logs, whether ``final_answer`` was called) or an exception whose text the
model sees. The session starts at the first ``send_tools`` (its tools make its SDK), so one executor is
one kernel: variables persist across steps and across runs until ``cleanup()`` (the agent's own
``cleanup()`` and ``with agent:`` call it).

smolagents is synchronous; a session lives on an event loop. The executor owns a loop in a thread of
its own (that thread starts and stops the kernel: the sandbox's parent-death signal follows it), or uses
the loop of the :class:`~kernel_agent.KernelPool` it is given, which must run in another thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

from smolagents.local_python_executor import CodeOutput, PythonExecutor
from smolagents.monitoring import AgentLogger, LogLevel
from smolagents.utils import AgentExecutionError, truncate_content

from kernel_agent.errors import SessionClosedError, SessionOptionError
from kernel_agent.integrations.smolagents import prelude
from kernel_agent.integrations.smolagents.errors import SmolagentsToolError, SmolagentsVariableError
from kernel_agent.integrations.smolagents.tools import FinalAnswers, Variables, global_name, tool_from_smolagents
from kernel_agent.protocol import wire
from kernel_agent.runtime.results import CellResult, CellStatus
from kernel_agent.session.pool import KernelPool
from kernel_agent.session.session import Session
from kernel_agent.tools.tool import Tool

T = TypeVar("T")
#: smolagents' own cap on a step's printed output (LocalPythonExecutor's default).
DEFAULT_MAX_PRINT_OUTPUTS_LENGTH = 50_000


class _Default:
    """smolagents' FinalAnswerTool behaviour for an executor that was never sent tools: the answer as given."""

    name = "final_answer"
    description = "Provides a final answer to the given problem."
    inputs: dict[str, Any] = {"answer": {"type": "any", "description": "The final answer to the problem"}}  # noqa: RUF012
    output_type = "any"

    def __call__(self, answer: Any) -> Any:
        return answer


class KernelAgentExecutor(PythonExecutor):  # type: ignore[misc]  # smolagents has no type information
    """A smolagents ``PythonExecutor`` whose code runs in a kernel-agent :class:`~kernel_agent.Session`.

    ``CodeAgent(tools=[...], model=model, executor=KernelAgentExecutor(notebook="run.ipynb"))``. The
    agent's tools stay on the host and are called through the bridge; in the kernel each is a global
    function of its smolagents name and ``tools.<name>``. ``workspace`` and ``**session_options`` are
    :class:`~kernel_agent.Session`'s (``notebook`` defaults to True: recorded in the default place;
    ``tools`` adds kernel-agent tools); with ``pool`` the kernel comes from that started
    :class:`~kernel_agent.KernelPool`, whose event loop must run in another thread.
    """

    def __init__(
        self,
        workspace: str | os.PathLike[str] | None = None,
        *,
        pool: KernelPool | None = None,
        max_print_outputs_length: int = DEFAULT_MAX_PRINT_OUTPUTS_LENGTH,
        **session_options: Any,
    ) -> None:
        for reserved in ("server", "connection_file"):
            if reserved in session_options and pool is not None:
                raise SessionOptionError(f"{reserved}= and pool= cannot go together")
        self._workspace = workspace
        self._pool = pool
        self._options = {"notebook": True, **session_options}
        self.max_print_outputs_length = max_print_outputs_length
        self._answers = FinalAnswers()
        self._variables = Variables()
        self._sent_tools: dict[str, Any] | None = None
        self._names_cell = ""
        self._session: Session | None = None
        self._closed = False
        # smolagents' errors log themselves; the agent logs the step's error again, so ours stays quiet.
        self._logger = AgentLogger(level=LogLevel.OFF)
        self._thread: threading.Thread | None = None
        if pool is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="kernel-agent-smolagents",
                                            daemon=True)
            self._thread.start()
        else:
            self._loop = _running_loop_of(pool)

    # -- the session ------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            coroutine.close()
            raise SessionOptionError("the executor was called on its pool's own event loop, which it would block: "
                                     "run the agent in another thread (asyncio.to_thread(agent.run, ...))")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def session(self) -> Session | None:
        """The kernel-agent session (None until the first ``send_tools`` or step)."""
        return self._session

    @property
    def notebook(self) -> os.PathLike[str] | None:
        """Where the session is recorded (None: not recorded, or not started yet)."""
        return self._session.notebook if self._session is not None else None

    def _start(self, tools: Mapping[str, Any]) -> Session:
        if self._closed:
            raise SessionClosedError("this executor was cleaned up; make a new one")
        final_tool = tools.get("final_answer", _Default())
        described: list[Tool] = [self._answers.tool(final_tool), self._variables.tool()]
        described += [tool_from_smolagents(tool, global_name(name)) for name, tool in tools.items()
                      if name != "final_answer"]
        options = dict(self._options)
        extra = options.pop("tools", ())
        extra = list(extra) if isinstance(extra, (list, tuple)) else [extra]

        async def start() -> Session:
            session = Session(self._workspace, pool=self._pool, tools=[*described, *extra], **options)
            await session.start()
            return session

        self._session = session = self._call(start())
        self._sent_tools = dict(tools)
        registry = session.registry
        assert registry is not None  # a started session has its registry
        self._names_cell = prelude.names_cell(registry, [name for name in tools if name != "final_answer"])
        self._run_setup(self._names_cell, "binding the tools' names")
        return session

    def _run_setup(self, code: str, what: str) -> None:
        """Run a cell of the executor's own (recorded like the agent's); failing is the host's error."""
        result = self._execute(code)
        if not result.ok:
            error = result.error
            detail = f"{error.ename}: {error.evalue}" if error is not None else result.status.value
            raise AgentExecutionError(f"kernel-agent: {what} in the kernel failed: {detail}", self._logger)

    def _execute(self, code: str) -> CellResult:
        session = self._session
        if session is None:
            raise SessionClosedError("the executor has no session")
        return self._call(session.execute(code))

    # -- smolagents' PythonExecutor -----------------------------------------------------------

    def send_tools(self, tools: dict[str, Any]) -> None:
        """Start the session with these tools; a later call must send the same ones (the kernel's SDK is fixed)."""
        if self._session is None:
            self._start(tools)
            return
        sent = {name: tool for name, tool in (self._sent_tools or {}).items() if name != "final_answer"}
        others = {name: tool for name, tool in tools.items() if name != "final_answer"}
        if sent.keys() != others.keys() or any(sent[name] is not others[name] for name in others):
            raise SmolagentsToolError(
                "the agent's tools changed after its kernel-agent session started (the kernel's SDK is made "
                f"once): it has {sorted(sent)}, sent now {sorted(others)}; use a new executor for other tools")
        self._answers.replace(tools.get("final_answer", _Default()))
        self._sent_tools = dict(tools)

    def send_variables(self, variables: dict[str, Any]) -> None:
        """Put ``variables`` in the kernel's namespace before the next step (through the bridge, never pickle)."""
        checked: dict[str, Any] = {}
        taken = set(self._sent_tools or ()) | {"final_answer"}
        for name, value in variables.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("__") or name in taken \
                    or name in prelude.KERNEL_GLOBALS:
                raise SmolagentsVariableError(
                    f"the variable name {name!r:.80} cannot be a global of the kernel (not an identifier, or it "
                    "would hide a tool or the SDK): rename it")
            try:
                wire.encode(value, root=name)
            except wire.UnserializableValue as exc:
                raise SmolagentsVariableError(f"the variable {name} cannot go to the kernel: {exc}") from None
            checked[name] = value
        self._variables.put(checked)

    def __call__(self, code_action: str) -> CodeOutput:
        """Run one step's code; raise AgentExecutionError (with the traceback) when it fails."""
        if self._session is None:
            self._start({})
        self._send_pending_variables()
        self._answers.clear()
        result = self._execute(code_action)
        given, answer = self._answers.take()
        logs = truncate_content(_logs(result), max_length=self.max_print_outputs_length)
        if given and (result.ok or (result.error is not None and result.error.ename == prelude.FINAL_ANSWER_EXCEPTION)):
            return CodeOutput(output=answer, logs=logs, is_final_answer=True)
        if not result.ok:
            if result.state_lost:  # a fresh kernel replaced a dead or stuck one: the agent's names again
                self._variables.send_again()
                self._run_setup(self._names_cell, "binding the tools' names again")
                self._send_pending_variables()
            raise AgentExecutionError(_error_text(result, logs), self._logger)
        return CodeOutput(output=result.result, logs=logs, is_final_answer=False)

    def _send_pending_variables(self) -> None:
        if self._variables.pending and self._session is not None and self._session.registry is not None:
            self._run_setup(prelude.variables_cell(self._session.registry), "receiving the agent's variables")

    # -- closing ---------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Close the session (its notebook is sealed) and stop the executor's own loop; idempotent."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        try:
            if session is not None:
                self._call(session.close())
        finally:
            if self._thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
                self._loop.close()

    def __enter__(self) -> KernelAgentExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


def _running_loop_of(pool: KernelPool) -> asyncio.AbstractEventLoop:
    """The event loop a started pool serves sessions on."""
    loop = getattr(pool, "_loop", None)  # WarmPool keeps the loop it was started on
    if not isinstance(loop, asyncio.AbstractEventLoop) or not loop.is_running():
        raise SessionOptionError("the pool is not started, or its event loop does not run: start the pool on a "
                                 "loop that keeps running in another thread")
    return loop


def _logs(result: CellResult) -> str:
    """What the step printed (stdout and stderr, in order), as smolagents' logs."""
    return "".join(o["text"] for o in result.outputs if o.get("output_type") == "stream")


def _error_text(result: CellResult, logs: str) -> str:
    """The model's view of a failed step: its logs, then the error with its traceback (as smolagents words it)."""
    head = f"{logs}\n" if logs else ""
    if result.status is CellStatus.ERROR and result.error is not None:
        error = result.error
        return (f"{head}Executing code yielded an error:\n{error.ename}: {error.evalue}\n"
                f"{error.plain_traceback}")
    why = {CellStatus.TIMEOUT: "it ran past its timeout and was interrupted",
           CellStatus.KERNEL_DIED: "the kernel died (out of memory, or killed)",
           CellStatus.CANCELLED: "it was cancelled"}.get(result.status, result.status.value)
    lost = (" A fresh kernel replaced it: the variables the code defined are gone (the tools and the agent's "
            "variables are there again)." if result.state_lost else "")
    return f"{head}Executing code failed: {why}.{lost}"
