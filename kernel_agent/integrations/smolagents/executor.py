"""KernelAgentExecutor: smolagents' CodeAgent runs its code in a sandboxed, recorded kernel-agent session.

smolagents drives an executor with three calls: ``send_variables(state)`` and ``send_tools(tools)`` at
the start of every ``agent.run``, then ``executor(code)`` for each step, expecting a ``CodeOutput``
(the step's value, its printed logs, whether ``final_answer`` was called) or an exception whose text the
model sees. The session starts at the first ``send_tools`` (its tools make its SDK), so one executor is
one kernel: variables persist across steps and across runs until ``cleanup()`` (the agent's own
``cleanup()`` and ``with agent:`` call it).

smolagents is synchronous; a session lives on an event loop (see :mod:`.runner`, which also closes the
session of an executor dropped without ``cleanup()``). One executor runs one step at a time: a second
call meanwhile, from another thread or from a host tool of the running step, is refused at once
(ExecutorBusyError) rather than waiting for the step that waits for it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from smolagents.local_python_executor import CodeOutput, PythonExecutor
from smolagents.monitoring import AgentLogger, LogLevel
from smolagents.utils import AgentExecutionError, truncate_content

from kernel_agent.errors import SessionClosedError, SessionOptionError
from kernel_agent.integrations.smolagents import prelude
from kernel_agent.integrations.smolagents.errors import (
    ExecutorBusyError,
    SmolagentsToolError,
    SmolagentsVariableError,
)
from kernel_agent.integrations.smolagents.runner import SessionRunner
from kernel_agent.integrations.smolagents.tools import FinalAnswers, Variables, global_name, tool_from_smolagents
from kernel_agent.protocol import wire
from kernel_agent.runtime.results import CellResult, CellStatus
from kernel_agent.session.pool import KernelPool
from kernel_agent.session.session import Session
from kernel_agent.terminal_text import terminal_safe
from kernel_agent.tools.tool import Tool

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
        self._unbound = False  # the kernel lacks the tools' names (a fresh kernel replaced a lost one)
        # Not reentrant on purpose: a tool of the running step calling back into its executor is refused.
        self._busy = threading.Lock()
        # smolagents' errors log themselves; the agent logs the step's error again, so ours stays quiet.
        self._logger = AgentLogger(level=LogLevel.OFF)
        self._runner = SessionRunner(pool)
        # Closes the session (and the executor's loop) when the executor is collected, if cleanup() was not
        # called: the runner holds no reference back to the executor. At exit the runner closes itself (earlier
        # than a finalizer's exit hook could).
        self._finalizer = weakref.finalize(self, self._runner.close)
        self._finalizer.atexit = False

    # -- the session ------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The kernel-agent session (None until the first ``send_tools`` or step, and after ``cleanup()``)."""
        return self._runner.session

    @property
    def notebook(self) -> os.PathLike[str] | None:
        """Where the session is recorded (None: not recorded, or not started yet)."""
        session = self._runner.session
        return session.notebook if session is not None else None

    @contextlib.contextmanager
    def _turn(self, what: str) -> Iterator[None]:
        """Hold the executor for one call of smolagents'; refuse at once when a step of it still runs."""
        if not self._busy.acquire(blocking=False):
            raise ExecutorBusyError(
                f"cannot {what}: this KernelAgentExecutor is running a step (called from another thread, or by "
                "a host tool of that step, such as a managed agent given its manager's executor); one executor "
                "serves one agent, one step at a time: give each agent its own KernelAgentExecutor")
        try:
            yield
        finally:
            self._busy.release()

    def _start(self, tools: Mapping[str, Any]) -> Session:
        runner = self._runner
        if runner.closed:
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
            if runner.closed:  # cleaned up from another thread while it started: nothing may outlive that
                await session.close()
                raise SessionClosedError("this executor was cleaned up while its session started")
            runner.session = session
            return session

        session = runner.call(start())
        self._sent_tools = dict(tools)
        registry = session.registry
        assert registry is not None  # a started session has its registry
        self._names_cell = prelude.names_cell(registry, [name for name in tools if name != "final_answer"])
        self._unbound = True
        self._bind_names()
        return session

    def _bind_names(self) -> None:
        """Bind the tools' smolagents names in a kernel that lacks them; failing, the next step tries again."""
        if self._unbound:
            self._run_setup(self._names_cell, "binding the tools' names")
            self._unbound = False

    def _run_setup(self, code: str, what: str) -> None:
        """Run a cell of the executor's own (recorded like the agent's); failing is the host's error."""
        result = self._execute(code)
        if not result.ok:
            error = result.error
            detail = f"{error.ename}: {error.evalue}" if error is not None else result.status.value
            raise AgentExecutionError(truncate_content(terminal_safe(f"kernel-agent: {what} in the kernel failed: "
                                                                     f"{detail}"),
                                                       max_length=self.max_print_outputs_length), self._logger)

    def _execute(self, code: str) -> CellResult:
        session = self._runner.session
        if session is None:
            raise SessionClosedError("the executor has no session")
        result = self._runner.call(session.execute(code))
        if result.state_lost:
            # Whatever cell it was (the agent's or one of ours), the fresh kernel needs the names and variables.
            self._unbound = True
            self._variables.send_again()
        return result

    # -- smolagents' PythonExecutor -----------------------------------------------------------

    def send_tools(self, tools: dict[str, Any]) -> None:
        """Start the session with these tools; a later call must send the same ones (the kernel's SDK is fixed)."""
        with self._turn("take the agent's tools"):
            if self._runner.session is None:
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
        with self._turn("take the agent's variables"):
            checked: dict[str, Any] = {}
            taken = set(self._sent_tools or ()) | {"final_answer"}
            for name, value in variables.items():
                if not isinstance(name, str) or not name.isidentifier() or name.startswith("__") \
                        or name in taken or name in prelude.KERNEL_GLOBALS:
                    raise SmolagentsVariableError(
                        f"the variable name {name!r:.80} cannot be a global of the kernel (not an identifier, or "
                        "it would hide a tool or the SDK): rename it")
                try:
                    wire.encode(value, root=name)
                except wire.UnserializableValue as exc:
                    raise SmolagentsVariableError(f"the variable {name} cannot go to the kernel: {exc}") from None
                checked[name] = value
            self._variables.put(checked)

    def __call__(self, code_action: str) -> CodeOutput:
        """Run one step's code; raise AgentExecutionError (with the traceback) when it fails."""
        with self._turn("run a step"):
            if self._runner.session is None:
                self._start({})
            self._prepare()
            self._answers.clear()
            result = self._execute(code_action)
            given, answer = self._answers.take()
            logs = truncate_content(terminal_safe(_logs(result)), max_length=self.max_print_outputs_length)
            if given and (result.ok or (result.error is not None
                                        and result.error.ename == prelude.FINAL_ANSWER_EXCEPTION)):
                return CodeOutput(output=answer, logs=logs, is_final_answer=True)
            if not result.ok:
                if result.state_lost:  # the agent's names again now; if that fails, the next step tries again
                    with contextlib.suppress(AgentExecutionError):  # the step's own error is what the model needs
                        self._prepare()
                raise AgentExecutionError(_error_text(result, logs, self.max_print_outputs_length), self._logger)
            output = result.result
            return CodeOutput(output=None if output is None else terminal_safe(output), logs=logs,
                              is_final_answer=False)

    def _prepare(self) -> None:
        """Before a step: the tools' names (after a lost kernel) and the variables the agent sent."""
        self._bind_names()
        if self._variables.pending and self._runner.session is not None \
                and self._runner.session.registry is not None:
            self._run_setup(prelude.variables_cell(self._runner.session.registry), "receiving the agent's variables")

    # -- closing ---------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Close the session (its notebook is sealed) and stop the executor's own loop; idempotent.

        From another thread while a step runs, the step's cell is interrupted (and recorded) first, and the
        step raises SessionClosedError.
        """
        self._finalizer()

    def __enter__(self) -> KernelAgentExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()


def _logs(result: CellResult) -> str:
    """What the step printed (stdout and stderr, in order), as smolagents' logs."""
    return "".join(o["text"] for o in result.outputs if o.get("output_type") == "stream")


def _error_text(result: CellResult, logs: str, max_length: int) -> str:
    """The model's view of a failed step: its logs, then the error with its traceback (as smolagents words it).

    The error is the kernel's text (up to the session's output cap, megabytes): it is cut to ``max_length``
    like the logs, or one ``raise ValueError(huge)`` would fill the model's next prompt.
    """
    head = f"{logs}\n" if logs else ""
    if result.status is CellStatus.ERROR and result.error is not None:
        error = result.error
        text = truncate_content(terminal_safe(f"{error.ename}: {error.evalue}\n{error.plain_traceback}"),
                                max_length=max_length)
        return f"{head}Executing code yielded an error:\n{text}"
    why = {CellStatus.TIMEOUT: "it ran past its timeout and was interrupted",
           CellStatus.KERNEL_DIED: "the kernel died (out of memory, or killed)",
           CellStatus.CANCELLED: "it was cancelled"}.get(result.status, result.status.value)
    lost = (" A fresh kernel replaced it: the variables the code defined are gone (the tools and the agent's "
            "variables are there again)." if result.state_lost else "")
    return f"{head}Executing code failed: {why}.{lost}"
