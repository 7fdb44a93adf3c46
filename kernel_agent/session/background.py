"""Cells that run on in the background: a handle to poll, wait for or cancel them (Session.start_cell).

A background cell is an ordinary cell (same timeout, interrupt, kernel
replacement, tool calls and output cap, see :mod:`.cells`) whose caller does
not wait for it: it runs in an asyncio task that holds the session's lock,
so nothing else runs in the kernel meanwhile. ``execute``, ``start_cell``,
``restart`` and ``detach`` raise :class:`~kernel_agent.errors.CellRunningError`
until it ended; ``close`` cancels it. The cell is recorded once, when it ends,
with its real start and end times (``start_time`` = end - duration) and
``background: true``: the journal stays append-only, and nothing else ran in
the kernel in between, so replaying the recorded cells in order rebuilds the
same state.

Why not run other code meanwhile (ipykernel 7.4's subshells could): a
subshell cell past its timeout cannot be interrupted (SIGINT reaches only
the main thread, which runs the background cell), the tool bridge
attributes calls to one running cell at a time, and IPython's shell state
(execution count, ``_`` variables, history) is not made for two cells at
once. See docs/analysis.md, "Long cells that run on".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from kernel_agent.errors import CellRunningError
from kernel_agent.runtime.results import CellResult
from kernel_agent.session.cells import CellControl


@dataclass(frozen=True)
class CellProgress:
    """What a background cell did so far (:meth:`RunningCell.poll`)."""

    running: bool
    seconds: float
    #: Every output kept so far (nbformat dicts, within the session's output cap); the final ones once it ended.
    outputs: list[dict[str, Any]] = field(default_factory=list)
    #: The text (streams and plain-text results) that came since the previous poll.
    new_text: str = ""
    #: The cell's result, once it ended.
    result: CellResult | None = None


def outputs_text(outputs: list[dict[str, Any]]) -> str:
    """The text of outputs as they stand: streams and plain-text results, in order."""
    parts: list[str] = []
    for output in outputs:
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else str(text))
        elif output.get("output_type") in ("execute_result", "display_data"):
            plain = output.get("data", {}).get("text/plain")
            if plain is not None:
                parts.append(("".join(plain) if isinstance(plain, list) else str(plain)) + "\n")
    return "".join(parts)


class RunningCell:
    """A cell running on in the background: :meth:`poll`, :meth:`wait` for or :meth:`cancel` it.

    ``number`` counts the session's background cells from 1. ``started_at``
    is wall time (``time.time()``). Waiting never stops the cell: a wait
    that times out (or is itself cancelled) leaves it running.
    """

    def __init__(self, number: int, code: str, control: CellControl,
                 run: Callable[[CellControl], Coroutine[Any, Any, CellResult]]) -> None:
        self.number = number
        self.code = code
        self.started_at = time.time()
        self._started = time.monotonic()
        self._control = control
        self._seen_chars = 0
        self._task: asyncio.Task[CellResult] = asyncio.get_running_loop().create_task(run(control))

    @property
    def done(self) -> bool:
        """Whether the cell ended (and was recorded)."""
        return self._task.done()

    @property
    def result(self) -> CellResult | None:
        """The cell's result once it ended (None while it runs); a host failure in it is raised here."""
        return self._task.result() if self._task.done() else None

    @property
    def execution_count(self) -> int | None:
        """The cell's In[] number, once the kernel announced it."""
        collector = self._control.collector
        return collector.execution_count if collector is not None else None

    def poll(self) -> CellProgress:
        """Its outputs so far, the text new since the last poll, and its result once it ended."""
        result = self.result
        if result is not None:
            outputs, seconds = list(result.outputs), result.duration
        else:
            collector = self._control.collector
            outputs = collector.finish() if collector is not None else []
            seconds = time.monotonic() - self._started
        text = outputs_text(outputs)
        # Output the cell cleared (clear_output) shrinks the text: then all of it is new.
        new = text[self._seen_chars:] if len(text) >= self._seen_chars else text
        self._seen_chars = len(text)
        return CellProgress(running=result is None, seconds=seconds, outputs=outputs, new_text=new, result=result)

    async def wait(self, timeout: float | None = None) -> CellResult | None:
        """Its result, waiting at most ``timeout`` seconds (None: until it ends); None if it still runs."""
        await asyncio.wait({self._task}, timeout=timeout)
        return self.result

    async def cancel(self) -> CellResult:
        """Interrupt it (state is kept; a cell that ignores the interrupt loses its kernel) and return its result.

        Its status is ``cancelled``; a cell that had already ended keeps its own result.
        """
        if not self._task.done():
            self._control.cancel.set()
        return await asyncio.shield(self._task)


class SyncRunningCell:
    """A :class:`RunningCell` for synchronous code (``SyncSession.start_cell``): the same methods, blocking."""

    def __init__(self, cell: RunningCell, call: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self.cell = cell
        self._call = call  # runs a coroutine on the session's event loop thread and returns its result

    @property
    def done(self) -> bool:
        """Whether the cell ended (and was recorded)."""
        return self.cell.done

    def poll(self) -> CellProgress:
        """See :meth:`RunningCell.poll` (read on the session's loop, which collects the outputs)."""

        async def poll() -> CellProgress:
            return self.cell.poll()
        result: CellProgress = self._call(poll())
        return result

    def wait(self, timeout: float | None = None) -> CellResult | None:
        """See :meth:`RunningCell.wait`."""
        result: CellResult | None = self._call(self.cell.wait(timeout))
        return result

    def cancel(self) -> CellResult:
        """See :meth:`RunningCell.cancel`."""
        result: CellResult = self._call(self.cell.cancel())
        return result


class BackgroundCells:
    """A session's background cell: at most one runs, and nothing else runs in the kernel meanwhile."""

    def __init__(self) -> None:
        self.running: RunningCell | None = None
        self._count = 0

    def refuse_if_running(self, what: str = "run another cell") -> None:
        """Raise CellRunningError while a background cell runs."""
        cell = self.running
        if cell is not None and not cell.done:
            raise CellRunningError(
                f"cannot {what}: background cell {cell.number} (started {time.time() - cell.started_at:.0f} s ago) "
                "is still running; wait for it (RunningCell.wait) or cancel it (RunningCell.cancel) first")

    @property
    def current(self) -> RunningCell | None:
        """The background cell that still runs (None: none does)."""
        cell = self.running
        return cell if cell is not None and not cell.done else None

    async def start(self, code: str, lock: asyncio.Lock,
                    run: Callable[[CellControl], Coroutine[Any, Any, CellResult]]) -> RunningCell:
        """Run ``run`` (which runs and records the cell) in a task holding ``lock``, and return its handle.

        The session's lock is held from here until the cell has ended and been
        recorded, so nothing else runs in the kernel meanwhile.
        """
        self.refuse_if_running()
        await lock.acquire()

        async def hold(control: CellControl) -> CellResult:
            try:
                return await run(control)
            finally:
                lock.release()

        try:
            self.refuse_if_running()  # another start_cell got the lock first
            self._count += 1
            self.running = RunningCell(self._count, code, CellControl(), hold)
        except BaseException:
            lock.release()
            raise
        return self.running

    async def cancel_running(self) -> None:
        """Cancel the background cell, if one runs (the session is closing): it is recorded as cancelled."""
        cell = self.running
        if cell is not None and not cell.done:
            with contextlib.suppress(Exception):  # a host failure in the cell must not stop the close
                await cell.cancel()
