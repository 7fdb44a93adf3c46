"""The agent loop: the model writes cells, the session runs them, bounded observations go back.

task -> model -> code -> Session.execute -> (tools on the host) -> outputs ->
observation -> model ... until ``final_answer(value)``, a plain-text answer, or
a limit. The session records every step into the run's notebook; the loop
only adds what the session cannot know (the model's messages, each step's
observation and token usage).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from kernel_agent.agent.background import BackgroundSteps
from kernel_agent.agent.images import ImageLimits, ImageSelection, has_images, newest_images_only, select_images
from kernel_agent.agent.observation import bound, cell_notes, cell_output_text
from kernel_agent.agent.prompt import system_prompt
from kernel_agent.agent.result import AgentResult, Execution, Pricing, Step, StopReason
from kernel_agent.agent.resume import RecordedRun, load_agent_run, resumed_session
from kernel_agent.agent.transcript import NOTE, malformed_observation, message_details
from kernel_agent.errors import ModelError, SessionOptionError
from kernel_agent.models import model_from_spec
from kernel_agent.models.base import (
    CODE_TOOL,
    AssistantTurn,
    CodeRequest,
    Model,
    ModelReply,
    Observation,
    ObservationTurn,
    Turn,
    Usage,
    UserTurn,
    conversation_as_text,
    takes_images,
)
from kernel_agent.models.fenced import fenced_code
from kernel_agent.runtime.pool import WarmPool
from kernel_agent.runtime.results import CellResult
from kernel_agent.runtime.streaming import OutputChunk
from kernel_agent.sandbox.policy import SandboxPolicy
from kernel_agent.session.session import Session
from kernel_agent.tools.calls import ProgressEvent


@dataclass(frozen=True)
class AgentEvent:
    """Something a run did, for live display: ``kind`` is one of
    ``start``, ``reply``, ``output`` (a running cell's output as it arrives: ``output``, its text in ``text``),
    ``cell``, ``progress``, ``answer_rejected``, ``end``."""

    kind: str
    step: int
    text: str = ""
    code: str = ""
    cell: CellResult | None = None
    observation: str = ""
    progress: ProgressEvent | None = None
    result: AgentResult | None = None
    output: OutputChunk | None = None


@dataclass
class _Run:
    """The state of one run in progress (kept so an interrupted run can still report)."""

    task: str
    started: float
    conversation: list[Turn] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    answer: Any = None
    stop: StopReason | None = None
    error: str | None = None
    running_code: str | None = None  # the code in the kernel right now (named if the run is interrupted)
    background: BackgroundSteps | None = None  # the cell running on in the background (agent/background.py)
    step_offset: int = 0  # a resumed run numbers its steps after the recorded ones (its limits count its own)


class Agent:
    """A model working in a sandboxed, recorded kernel with tools, until it answers.

    ``model`` is a :class:`~kernel_agent.models.Model` or a spec string
    (``anthropic:MODEL``, ``openai:MODEL``, ``openai:MODEL@URL``,
    ``scripted:PATH``). ``tools`` are what :class:`~kernel_agent.Session`
    takes. Each run gets its own session, recorded to ``notebook`` (default: the
    host's record directory, out of the sandbox's reach, see
    :mod:`kernel_agent.record.location`; ``False``: not recorded). Limits: ``max_steps`` model replies,
    ``max_tokens`` in all, ``max_cost`` dollars (with ``pricing``),
    ``max_seconds`` of wall time. ``observation_limit`` bounds, in
    characters, what one cell sends back to the model; ``image_limits`` bound the
    images (plots) sent with it to a model with vision (see
    :mod:`kernel_agent.agent.images`). ``output_type`` (a
    pydantic model or any type pydantic validates) checks the value given to
    ``final_answer``; a mismatch goes back to the model. ``on_event`` gets an
    :class:`AgentEvent` for each step as it happens. ``session_options`` go to
    the Session (timeouts, tool policy, call budget...). With
    ``background_after`` (seconds), a cell still running then runs on in the
    background (until ``cell_timeout``) and the model may wait for or cancel
    it (see :mod:`kernel_agent.agent.background`). With ``pool`` (a started
    :class:`~kernel_agent.KernelPool`) each run's session takes one of the
    pool's kernels (and its workspace) instead of launching one.
    """

    def __init__(
        self,
        model: Model | str,
        tools: Iterable[Any] | Any = (),
        *,
        workspace: str | os.PathLike[str] | None = None,
        notebook: str | os.PathLike[str] | bool | None = None,
        policy: SandboxPolicy | None = None,
        max_steps: int = 30,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        pricing: Pricing | None = None,
        max_seconds: float | None = None,
        observation_limit: int = 4000,
        image_limits: ImageLimits | None = None,
        cell_timeout: float = 300.0,
        output_type: Any = None,
        instructions: str | None = None,
        on_event: Callable[[AgentEvent], Any] | None = None,
        session_options: dict[str, Any] | None = None,
        background_after: float | None = None,
        pool: WarmPool | None = None,
    ) -> None:
        if max_cost is not None and pricing is None:
            raise ValueError("max_cost needs pricing=Pricing(input=..., output=...) (US dollars per million tokens)")
        if max_steps < 1 or observation_limit < 200:
            raise ValueError("max_steps must be at least 1 and observation_limit at least 200 characters")
        self.model = model_from_spec(model)
        self.tools = list(tools) if isinstance(tools, (list, tuple, set)) else [tools] if tools else []
        self.workspace = workspace
        self.notebook = notebook
        self.policy = policy
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.pricing = pricing
        self.max_seconds = max_seconds
        self.observation_limit = observation_limit
        self.image_limits = image_limits or ImageLimits()
        self.cell_timeout = cell_timeout
        self.output_type = output_type
        self._output_adapter = TypeAdapter(output_type) if output_type is not None else None
        self.instructions = instructions
        self.on_event = on_event
        self.session_options = dict(session_options or {})
        self.background_after = background_after
        self.pool = pool
        self.last_result: AgentResult | None = None

    # -- running --------------------------------------------------------------------

    async def run(self, task: str | None = None, *, session: Session | None = None,
                  resume: str | os.PathLike[str] | None = None) -> AgentResult:
        """Work on ``task`` until an answer or a limit; the result says which.

        With ``session`` (started), the run uses it and leaves it open;
        otherwise it makes one and closes it, which finalises the notebook.
        Cancelling the run (Ctrl-C) closes its session too, keeping the
        notebook; ``last_result`` then holds what was done, and the
        cancellation propagates. With ``resume`` (a recorded run's
        notebook), the run continues that one, ``task`` being an optional
        follow-up: see :mod:`kernel_agent.agent.resume`.
        """
        # A recorded run is read and checked before any kernel starts.
        prior = None if resume is None else await asyncio.to_thread(
            load_agent_run, resume, follow_up=task, image_limits=self.image_limits)
        if (prior is None and not task) or (prior is not None and session is not None):
            raise ValueError("run needs a task, or resume=NOTEBOOK (and then no session=)")
        run = _Run(task=task or (prior.task if prior else ""), started=time.monotonic())
        run.background = BackgroundSteps(self.background_after, self.observation_limit)
        owned = session is None
        if session is None:
            session = await self._start_session(run, prior)
        try:
            system = system_prompt(session.manifest, observation_limit=self.observation_limit,
                                   tool_name=CODE_TOOL.name, output_schema=self._output_schema(),
                                   instructions=self.instructions, background_after=self.background_after)
            if task:  # a resumed run without a follow-up continues the recorded task
                session.record_message("task", task)
                run.conversation.append(UserTurn(task))
            self._emit(AgentEvent("start", run.step_offset, text=run.task))
            await self._loop(run, session, system)
        except asyncio.CancelledError:
            run.stop, run.error = StopReason.INTERRUPTED, "the run was cancelled"
            note = f"*Run interrupted after {len(run.steps)} step(s).*"
            if run.running_code is not None:
                note = (f"*Run interrupted in step {run.step_offset + len(run.steps)} while this code was running (the "
                        f"cell above has its output until then):*\n\n```python\n{run.running_code}\n```")
            with _suppress_all():
                session.record_message(NOTE, note)
            raise
        finally:
            notebook = session.notebook
            await asyncio.shield(run.background.finish(session))
            if owned:
                await asyncio.shield(session.close())
            self.last_result = self._result(run, system if "system" in locals() else "", notebook, prior)
        self._emit(AgentEvent("end", len(run.steps), result=self.last_result))
        return self.last_result

    async def _loop(self, run: _Run, session: Session, system: str) -> None:
        while run.stop is None:
            if (limit := self._limit_reached(run)) is not None:
                run.stop, run.error = limit
                return
            step_index = run.step_offset + len(run.steps) + 1
            sent = newest_images_only(run.conversation, self.image_limits.max_in_conversation)
            asked = time.monotonic()
            try:
                reply = await asyncio.wait_for(
                    self.model.complete(system, sent, CODE_TOOL), self._time_left(run))
            except TimeoutError:
                run.stop = StopReason.MAX_TIME
                run.error = f"the model did not answer within the {self.max_seconds} s limit"
                return
            except ModelError as exc:
                run.stop, run.error = StopReason.MODEL_ERROR, str(exc)
                session.record_message(NOTE, f"*The run stopped: {exc}*")
                return
            model_seconds = time.monotonic() - asked
            run.usage = run.usage + reply.usage
            requests = reply.code or self._fenced(reply, step_index)
            run.conversation.append(AssistantTurn(_with_code(reply, requests)))
            if reply.text or reply.malformed:  # with its step: a resume rebuilds the conversation from the record
                session.record_message("message", reply.text, message_details(step_index, reply))
            self._emit(AgentEvent("reply", step_index, text=reply.text, code="\n\n".join(r.code for r in requests)))
            step = Step(index=step_index, text=reply.text, executions=[], usage=reply.usage,
                        model_stop_reason=reply.stop_reason, model_seconds=model_seconds)
            run.steps.append(step)
            if not requests and not reply.malformed:
                run.stop, run.answer = StopReason.ANSWERED, reply.text
                return
            observations = [await self._execute(run, session, step, request) for request in requests]
            observations += [malformed_observation(call_id, raw) for call_id, raw in reply.malformed]
            run.conversation.append(ObservationTurn(tuple(observations)))

    async def _execute(self, run: _Run, session: Session, step: Step, request: CodeRequest) -> Observation:
        timeout = min(self.cell_timeout, self._time_left(run) or self.cell_timeout)
        extras: dict[str, Any] = {"step": step.index, "call_id": request.call_id, "code_via": request.via,
                                  "model_stop_reason": step.model_stop_reason}
        if not step.executions:
            extras["usage"] = step.usage.model_dump()
        observed: list[Execution] = []

        async def record_extras(cell: CellResult) -> dict[str, Any]:
            # Called by the session before it records the cell, so the notebook keeps the
            # observation exactly as the model will see it (images: which outputs, not their bytes).
            observed.append(await self._observe(run, session, step, request, cell))
            execution = observed[0]
            return {**extras, "observation": {"text": execution.observation, "truncated": execution.truncated,
                                              "spill_file": execution.spill_file,
                                              **({"images": list(execution.image_record)}
                                                 if execution.image_record else {})}}

        run.running_code = request.code
        assert run.background is not None
        cell = await run.background.run(session, request.code, timeout, self._time_left(run), record_extras, observed,
                                        step={key: extras[key] for key in ("step", "call_id", "code_via")},
                                        on_output=self._stream_to_events(step.index))
        run.running_code = None
        if isinstance(cell, str):  # the cell runs on in the background, or the host answered a %wait/%cancel
            step.executions.append(Execution(request.code, None, cell))
            self._emit(AgentEvent("cell", step.index, code=request.code, observation=cell))
            return Observation(request.call_id, cell, via=request.via)
        execution = observed[0] if observed else await self._observe(run, session, step, request, cell)
        step.executions.append(execution)
        step.cell_seconds += cell.duration
        self._emit(AgentEvent("cell", step.index, code=request.code, cell=cell, observation=execution.observation))
        return Observation(request.call_id, execution.observation or "(no output)", is_error=cell.error is not None,
                           via=request.via, images=execution.images)

    async def _observe(self, run: _Run, session: Session, step: Step, request: CodeRequest,
                       cell: CellResult) -> Execution:
        """The bounded observation of a cell (and the run's answer, when the cell gave a valid one)."""
        answer_note = self._take_answer(run, cell)
        where = f"the notebook (cell In[{cell.execution_count}])" if session.notebook else "the cell's outputs"
        bounded = bound(cell_output_text(cell), self.observation_limit, where=where, spill_to=session.local_workspace,
                        spill_name=f"step-{step.index:03d}-{len(step.executions) + 1}.txt")
        images = ImageSelection()
        if has_images(cell):  # decoding (and Pillow) off the event loop
            images = await asyncio.to_thread(select_images, cell, self.image_limits, vision=takes_images(self.model),
                                             room=self.image_limits.max_images - step.images_sent,
                                             model=self.model.spec)
        text = "\n".join(part for part in (bounded.text.rstrip("\n"), images.text, cell_notes(cell), answer_note)
                         if part)
        return Execution(request.code, cell, text, bounded.truncated, bounded.spill_file, images.images, images.record)

    def _take_answer(self, run: _Run, cell: CellResult) -> str:
        """Accept the cell's final_answer (validated when there is an output_type); else say why not."""
        if not cell.has_final_answer:
            return ""
        value = cell.final_answer
        if self._output_adapter is not None:
            try:
                value = self._output_adapter.validate_python(value)
            except ValidationError as exc:
                self._emit(AgentEvent("answer_rejected", len(run.steps), text=str(exc)))
                return (f"[final_answer was rejected: it does not match the expected type.\n{_errors(exc)}\n"
                        "Fix the value and call final_answer again.]")
        run.stop, run.answer = StopReason.FINAL_ANSWER, value
        return ""

    # -- limits -------------------------------------------------------------------------

    def _limit_reached(self, run: _Run) -> tuple[StopReason, str] | None:
        if len(run.steps) >= self.max_steps:
            return StopReason.MAX_STEPS, f"reached the limit of {self.max_steps} steps"
        if self.max_tokens is not None and run.usage.total_tokens >= self.max_tokens:
            return StopReason.MAX_TOKENS, f"used {run.usage.total_tokens:,} tokens (limit {self.max_tokens:,})"
        cost = self._cost(run.usage)
        if self.max_cost is not None and cost is not None and cost >= self.max_cost:
            return StopReason.MAX_COST, f"spent ${cost:.4f} (limit ${self.max_cost:.4f})"
        if self.max_seconds is not None and time.monotonic() - run.started >= self.max_seconds:
            return StopReason.MAX_TIME, f"ran for the limit of {self.max_seconds} s"
        return None

    def _time_left(self, run: _Run) -> float | None:
        if self.max_seconds is None:
            return None
        return max(0.001, self.max_seconds - (time.monotonic() - run.started))

    def _cost(self, usage: Usage) -> float | None:
        return self.pricing.cost(usage) if self.pricing is not None else None

    # -- pieces ---------------------------------------------------------------------------

    async def resume(self, notebook: str | os.PathLike[str], task: str | None = None) -> AgentResult:
        """Continue the agent run recorded in ``notebook`` (``task``: a follow-up); see :meth:`run`."""
        return await self.run(task, resume=notebook)

    async def _start_session(self, run: _Run, prior: RecordedRun | None) -> Session:
        """A new recorded session, or the resumed run's (its kernel state rebuilt, its conversation given back)."""
        if prior is None:
            session = self._make_session(run.task, run)
            await session.start()
            return session
        session = await resumed_session(
            prior, tools=self.tools, workspace=self.workspace, policy=self.policy,
            on_progress=lambda event: self._emit(AgentEvent("progress", len(run.steps), progress=event)),
            options={"default_timeout": self.cell_timeout, **self.session_options})
        run.conversation, run.step_offset = list(prior.conversation), prior.steps
        return session

    def _make_session(self, task: str, run: _Run) -> Session:
        return self.new_session(task, on_progress=lambda event: self._emit(
            AgentEvent("progress", len(run.steps), progress=event)))

    def new_session(self, task: str, *, on_progress: Callable[[ProgressEvent], Any] | None = None) -> Session:
        """The (unstarted) session a run of ``task`` gets, recorded with the run's metadata.

        :meth:`run` makes one itself; a caller that prepares the workspace
        first (an experiment's input files) starts it and passes it as ``session=``.
        """
        # Every run is recorded unless asked not to: by default in the host's record directory (never the
        # current directory, nor a workspace the kernel could write).
        notebook = True if self.notebook is None else self.notebook
        options = {"default_timeout": self.cell_timeout, **self.session_options}
        # pool= and session_options={"pool": ...} (the older spelling, in the README) are one option
        pool = options.pop("pool", None)
        if self.pool is not None and pool is not None and pool is not self.pool:
            raise SessionOptionError("two pools given: pool= and session_options['pool']; give one")
        return Session(
            self.workspace, policy=self.policy, tools=self.tools, notebook=notebook,
            pool=self.pool if self.pool is not None else pool,
            on_progress=on_progress,
            record_metadata={
                "task": task,
                "model": {"spec": self.model.spec, "provider": self.model.provider},
                "agent": {"max_steps": self.max_steps, "max_tokens": self.max_tokens, "max_cost": self.max_cost,
                          "max_seconds": self.max_seconds, "observation_limit": self.observation_limit,
                          "cell_timeout": self.cell_timeout, "output_schema": self._output_schema()},
            },
            **options,
        )

    def _fenced(self, reply: ModelReply, step_index: int) -> tuple[CodeRequest, ...]:
        code = fenced_code(reply.text) if reply.text else None
        return () if code is None else (CodeRequest(call_id=f"fenced-{step_index}", code=code, via="fenced"),)

    def _output_schema(self) -> dict[str, Any] | None:
        return self._output_adapter.json_schema() if self._output_adapter is not None else None

    def _result(self, run: _Run, system: str, notebook: Path | None, prior: RecordedRun | None) -> AgentResult:
        return AgentResult(
            resumed_after_step=prior.steps if prior else None, resume_differences=prior.differences if prior else [],
            task=run.task, answer=run.answer, stop_reason=run.stop or StopReason.INTERRUPTED, steps=run.steps,
            usage=run.usage, seconds=time.monotonic() - run.started, notebook=notebook, model=self.model.spec,
            cost=self._cost(run.usage), error=run.error, conversation=conversation_as_text(system, run.conversation),
        )

    def _stream_to_events(self, step: int) -> Callable[[OutputChunk], None] | None:
        """A running cell's output as ``output`` events (nothing to stream when nobody listens)."""
        if self.on_event is None:
            return None
        return lambda chunk: self._emit(AgentEvent("output", step, text=chunk.text, output=chunk))

    def _emit(self, event: AgentEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def close(self) -> None:
        """Release the model's HTTP client."""
        await self.model.close()


def _with_code(reply: ModelReply, requests: tuple[CodeRequest, ...]) -> ModelReply:
    """The reply as it goes back into the conversation, with fenced code taken as its code."""
    if reply.code or not requests:
        return reply
    return ModelReply(text=reply.text, code=requests, usage=reply.usage, stop_reason=reply.stop_reason,
                      model=reply.model, malformed=reply.malformed)


def _errors(exc: ValidationError) -> str:
    return "\n".join(f"- {'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
                     for error in exc.errors())


class _suppress_all:
    """Recording a note must never hide the reason a run stopped."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
