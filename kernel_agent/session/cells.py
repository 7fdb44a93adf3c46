"""Running a cell: send it, wait with its timeout, interrupt, notice a death, and build its CellResult.

:func:`run_cell` says how one execute_request ended; :class:`CellRunner`
runs a session's cells with it, has a lost kernel replaced, restores state
when asked to (restore_on_death) and keeps the session's totals. Output
streams to an ``on_output`` callback while the cell runs (see
:mod:`kernel_agent.runtime.streaming`). A cell whose caller is cancelled
(Ctrl-C, a timeout around ``Session.execute``) is interrupted, and its
outputs so far become a ``cancelled`` result, handed to ``on_interrupted``
(the session records it) before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kernel_agent.runtime.execute import WaitOutcome, await_reply, send_execute
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.runtime.outputs import OutputCollector
from kernel_agent.runtime.results import (
    OUTPUT_LOST,
    CellError,
    CellResult,
    CellStatus,
    execution_count_of,
    lines_of,
    text_of,
)
from kernel_agent.runtime.streaming import OutputCallback, OutputStream
from kernel_agent.session.restore import HISTORY_OVERFLOW, CellHistory, restore_state
from kernel_agent.session.toolbox import SessionTools
from kernel_agent.tools.bridge import ToolBridge
from kernel_agent.tools.cell_log import CellLog

# After the execute reply, outputs still in flight on iopub get this long.
# After the reply, a cell's output still on its way is waited for while it keeps arriving: up to
# IOPUB_SETTLE_SECONDS of silence (the idle status lost, or a kernel that never sends one), and never more
# than IOPUB_SETTLE_MAX_SECONDS in all (a kernel forging messages addressed to the cell cannot hold it open).
# A burst the host read slower than the kernel wrote (a loaded machine: 4,500 queued lines) took longer
# than 2 s to read, and a fixed 2 s cut it off with "output lost".
IOPUB_SETTLE_SECONDS = 10.0
IOPUB_SETTLE_MAX_SECONDS = 60.0
_STATE_LOST = "variables from earlier cells are lost."
_STATE_BACK = "the earlier cells were re-run with their recorded tool results, so their state is back."
_INTERRUPTED = CellError(ename="CellInterrupted", evalue="The cell was interrupted because its run was cancelled "
                         "(Ctrl-C, or Session.execute was cancelled); its outputs are what it produced until then.")
_STILL_RUNNING = ("the kernel did not answer the interrupt within interrupt_grace: the cell may still be running, "
                  "and the next cell waits for it")


@dataclass
class CellRun:
    """How one execute_request ended, before the result is built.

    ``outcome``: the kernel replied, died, or was stuck (it did not stop
    within the grace after an interrupt, so its kernel must be replaced).
    ``caller_cancelled``: the task waiting for the cell was cancelled (the
    cell was interrupted if it still ran, and is then ``cancelled`` too); the
    cancellation goes on once the result is recorded.
    """

    code: str
    outcome: Literal["replied", "died", "stuck"]
    timed_out: bool
    started: float
    timeout: float | None
    collector: OutputCollector
    reply: dict[str, Any]
    cancelled: bool = False  # stopped early by its CellControl or its caller's cancellation (then interrupted)
    caller_cancelled: bool = False

    @property
    def kernel_lost(self) -> bool:
        """Whether the kernel is gone (died) or must be killed (stuck); a cancelled caller does not wait for that."""
        return self.outcome != "replied" and not self.caller_cancelled


@dataclass
class CellControl:
    """A caller's hold on a cell while it runs (a background cell): its outputs so far, and a stop.

    ``collector`` is set when the cell is sent; setting ``cancel`` ends the
    wait early, and the cell is then interrupted as after a timeout (killed
    with its kernel if it does not stop within the grace).
    """

    collector: OutputCollector | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


async def _await_reply_or_cancel(kernel: Kernel, reply: asyncio.Future[Any], deadline: float | None,
                                 control: CellControl | None) -> Literal["replied", "timeout", "died", "cancelled"]:
    """:func:`await_reply`, ended early (``"cancelled"``) when the control's cancel is set."""
    if control is None:
        return await await_reply(kernel, reply, deadline)
    waiting = asyncio.ensure_future(await_reply(kernel, reply, deadline))
    cancel = asyncio.ensure_future(control.cancel.wait())
    try:
        await asyncio.wait({waiting, cancel}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancel.cancel()
        if not waiting.done():
            waiting.cancel()
    return waiting.result() if waiting.done() and not waiting.cancelled() else "cancelled"


async def run_cell(
    kernel: Kernel,
    code: str,
    timeout: float | None,
    *,
    bridge: ToolBridge,
    cell_number: int,
    max_output_bytes: int,
    interrupt_grace: float,
    control: CellControl | None = None,
    on_output: OutputCallback | None = None,
) -> CellRun:
    """Send ``code`` as a cell and wait for it; past ``timeout`` interrupt it and give it ``interrupt_grace``.

    Cancelled while it waits, it interrupts the cell too, gives it
    ``interrupt_grace``, and returns a run marked ``caller_cancelled`` (the
    caller re-raises once the partial result is recorded); a second
    cancellation meanwhile goes straight through.
    """
    started = time.monotonic()
    stream = OutputStream(on_output) if on_output is not None else None
    collector = OutputCollector(max_output_bytes, on_chunk=stream.put if stream is not None else None)
    request = send_execute(kernel, code, silent=False, on_iopub=collector.add, wants_content=collector.wants_content)
    # No await since the send: the kernel's calls for this request cannot have been read yet.
    bridge.begin_cell(cell_number, request.msg_id)
    if control is not None:
        control.collector = collector
    deadline = None if timeout is None else started + timeout
    caller_cancelled = False
    try:
        try:
            first = await _await_reply_or_cancel(kernel, request.reply, deadline, control)
        except asyncio.CancelledError:
            first, caller_cancelled = "cancelled", True
        timed_out, cancelled = first == "timeout", first == "cancelled"
        outcome: WaitOutcome = "timeout" if first == "cancelled" else first
        if timed_out or cancelled:
            if caller_cancelled:
                with contextlib.suppress(Exception):  # a failed interrupt must not hide the cancellation
                    await kernel.interrupt()
            else:
                await kernel.interrupt()
            outcome = await await_reply(kernel, request.reply, time.monotonic() + interrupt_grace)
        if outcome == "replied":
            try:
                await _settle_iopub(request.idle, collector)
            except asyncio.CancelledError:
                caller_cancelled = True
        if stream is not None:
            try:
                await stream.close()
            except asyncio.CancelledError:
                caller_cancelled = True
    finally:
        if stream is not None:
            stream.abort()
        if kernel.connection is not None:
            kernel.connection.forget(request)
    ended: Literal["replied", "died", "stuck"] = "stuck" if outcome == "timeout" else outcome
    reply = request.reply.result()["content"] if ended == "replied" else {}
    if not isinstance(reply, dict):  # the kernel's: a reply whose content is not an object is an empty one
        reply = {}
    return CellRun(code, ended, timed_out, started, timeout, collector, reply, cancelled, caller_cancelled)


async def _settle_iopub(idle: asyncio.Event, collector: OutputCollector) -> None:
    """Wait for the outputs still in flight after the reply while they keep coming; say so if they never end."""
    loop = asyncio.get_running_loop()
    ceiling = loop.time() + IOPUB_SETTLE_MAX_SECONDS
    while True:
        seen = collector.received
        try:
            await asyncio.wait_for(idle.wait(), max(0.0, min(IOPUB_SETTLE_SECONDS, ceiling - loop.time())))
            return
        except TimeoutError:
            if collector.received == seen:
                why = f"none came for {IOPUB_SETTLE_SECONDS:.0f} s"
                break
            if loop.time() >= ceiling:
                why = f"it was still coming {IOPUB_SETTLE_MAX_SECONDS:.0f} s after the cell finished"
                break
    collector.add({"header": {"msg_type": OUTPUT_LOST}, "content": {
        "reason": f"output still in transit after the cell finished was not waited for ({why})", "min_bytes": 0}})


def replied_status(run: CellRun) -> tuple[CellStatus, CellError | None, int | None]:
    """A cell the kernel answered: its status, its error and its execution count."""
    content = run.reply
    status = CellStatus.OK if content.get("status") == "ok" else CellStatus.ERROR
    if run.timed_out:
        status = CellStatus.TIMEOUT
    elif run.cancelled:
        status = CellStatus.CANCELLED
    error = run.collector.error
    if status is not CellStatus.OK and error is None:
        # The reply is the kernel's: any field may hold anything (the result's types are the host's).
        error = CellError(ename=text_of(content.get("ename")) or "Error", evalue=text_of(content.get("evalue")),
                          traceback=lines_of(content.get("traceback")))
    count = execution_count_of(content.get("execution_count"))
    return status, error, count if count is not None else run.collector.execution_count


def lost_kernel_status(run: CellRun, death_reason: str, interrupt_grace: float) -> tuple[CellStatus, CellError]:
    """A cell whose kernel died or was killed: its status and the error that says a fresh kernel took over."""
    if run.outcome == "died":
        return CellStatus.KERNEL_DIED, CellError(
            ename="KernelDied", evalue=f"The kernel died while running this cell: {death_reason}. "
                                       f"A fresh kernel was started; {_STATE_LOST}")
    if run.cancelled:
        return CellStatus.CANCELLED, CellError(
            ename="CellCancelled", evalue=f"The cell was cancelled and did not stop within {interrupt_grace} s of "
                                          f"an interrupt, so its kernel was killed. A fresh kernel was started; "
                                          f"{_STATE_LOST}")
    return CellStatus.TIMEOUT, CellError(
        ename="CellTimeout", evalue=f"The cell ran past its {run.timeout} s timeout and did not stop within "
                                    f"{interrupt_grace} s of an interrupt, so its kernel was killed. "
                                    f"A fresh kernel was started; {_STATE_LOST}")


def state_restored(error: CellError) -> CellError:
    """The error of a lost kernel, once the earlier cells' state was restored in the new one."""
    return CellError(ename=error.ename, evalue=error.evalue.replace(_STATE_LOST, _STATE_BACK))


def cell_result(
    run: CellRun,
    status: CellStatus,
    error: CellError | None,
    execution_count: int | None,
    log: CellLog,
    *,
    restarted: bool,
    state_lost: bool,
) -> CellResult:
    """The CellResult of ``run``, with the tool calls and notes of its cell log."""
    for note in log.notes():
        run.collector.note(note)
    return CellResult(
        code=run.code,
        status=status,
        outputs=run.collector.finish(),
        error=error,
        execution_count=execution_count,
        duration=time.monotonic() - run.started,
        timed_out=run.timed_out,
        kernel_restarted=restarted,
        state_lost=state_lost,
        dropped_output_bytes=run.collector.dropped_bytes,
        tool_calls=log.calls,
        progress=log.progress,
        final_answer=log.final_answers[-1] if log.final_answers else None,
        has_final_answer=bool(log.final_answers),
    )


@dataclass(frozen=True)
class CellLimits:
    """The session's settings a cell runs under (read at each cell: they are public, mutable attributes)."""

    max_output_bytes: int
    interrupt_grace: float
    restore_on_death: bool
    restore_timeout: float | None


class CellRunner:
    """Runs a session's cells in order, replacing a lost kernel; keeps the history restore_on_death needs."""

    def __init__(self, bridge: ToolBridge, tools: SessionTools,
                 replace_kernel: Callable[[], Awaitable[Kernel]]) -> None:
        self.bridge = bridge
        self._tools = tools
        self._replace_kernel = replace_kernel
        self._cells_run = 0
        self._restoring = False
        self._interrupted: CellResult | None = None  # a cancelled caller's cell result, from _run to execute
        self.history = CellHistory()  # cells since the kernel state was last fresh (restore_on_death)
        self.totals: dict[str, Any] = {"cells": 0, "errors": 0, "timeouts": 0, "kernel_deaths": 0,
                                       "tool_calls": 0, "tool_errors": 0, "seconds_in_cells": 0.0}

    async def execute(self, kernel: Kernel, code: str, timeout: float | None, limits: CellLimits,
                      control: CellControl | None = None, *, on_output: OutputCallback | None = None,
                      on_interrupted: Callable[[CellResult], Awaitable[None]] | None = None) -> CellResult:
        """Run a cell, remember it for restore_on_death within its bound, and count it in the totals.

        Cancelled while the cell runs: the cell is interrupted, its result so
        far (status ``cancelled``) is counted and given to ``on_interrupted``,
        and the cancellation propagates.
        """
        try:
            result = await self._run(kernel, code, timeout, limits, control, on_output)
        except asyncio.CancelledError:
            interrupted, self._interrupted = self._interrupted, None
            if interrupted is not None:
                self._count(interrupted)
                if on_interrupted is not None:
                    await on_interrupted(interrupted)
            raise
        if result.state_lost:
            self.history.clear()
        elif limits.restore_on_death:
            self.history.keep(result)
        self._count(result)
        return result

    def _count(self, result: CellResult) -> None:
        self.totals["cells"] += 1
        self.totals["errors"] += result.status is CellStatus.ERROR
        self.totals["timeouts"] += result.status is CellStatus.TIMEOUT
        self.totals["kernel_deaths"] += result.status is CellStatus.KERNEL_DIED
        self.totals["tool_calls"] += len(result.tool_calls)
        self.totals["tool_errors"] += sum(c.status.value != "ok" for c in result.tool_calls)
        self.totals["seconds_in_cells"] += result.duration

    async def _run(self, kernel: Kernel, code: str, timeout: float | None, limits: CellLimits,
                   control: CellControl | None = None, on_output: OutputCallback | None = None) -> CellResult:
        """Run one cell; after a death or a stuck cell, replace the kernel (and restore state if asked to)."""
        number, self._cells_run = self._cells_run, self._cells_run + 1
        run = await run_cell(kernel, code, timeout, bridge=self.bridge, cell_number=number,
                             max_output_bytes=limits.max_output_bytes, interrupt_grace=limits.interrupt_grace,
                             control=control, on_output=on_output)
        if run.caller_cancelled:
            self._interrupted = await self._cancelled_result(run)
            raise asyncio.CancelledError
        if not run.kernel_lost:
            status, error, count = replied_status(run)
            log = await self.bridge.end_cell()
            return cell_result(run, status, error, count, log, restarted=False, state_lost=False)
        status, lost_error = lost_kernel_status(run, kernel.death_reason(), limits.interrupt_grace)
        log = await self.bridge.end_cell()
        fresh = await self._replace_kernel()
        restored = False
        if limits.restore_on_death and self.history.overflow:
            run.collector.note(HISTORY_OVERFLOW)
        elif limits.restore_on_death and not self._restoring:
            restored = await self._restore(fresh, limits)
        error = state_restored(lost_error) if restored else lost_error
        return cell_result(run, status, error, run.collector.execution_count, log,
                           restarted=True, state_lost=not restored)

    async def _cancelled_result(self, run: CellRun) -> CellResult:
        """The result of a cell whose caller was cancelled: what it produced until then (a second cancel wins)."""
        log = await self.bridge.end_cell()
        if run.outcome == "replied":  # interrupted, or it had finished and only its caller was cancelled
            status, error, count = replied_status(run)
            if run.cancelled:
                error = _INTERRUPTED
        else:
            status, error, count = CellStatus.CANCELLED, _INTERRUPTED, run.collector.execution_count
            run.collector.note(_STILL_RUNNING if run.outcome == "stuck" else "the kernel died meanwhile")
        return cell_result(run, status, error, count, log, restarted=False, state_lost=False)

    async def _restore(self, kernel: Kernel, limits: CellLimits) -> bool:
        """Re-run the cells since the last fresh state in the new kernel, tools answered from their records."""
        self._restoring = True
        try:
            return await restore_state(self.history, self._tools,
                                       lambda code: self._run(kernel, code, limits.restore_timeout, limits))
        finally:
            self._restoring = False
