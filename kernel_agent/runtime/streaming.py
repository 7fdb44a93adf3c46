"""A running cell's output, delivered to a caller's callback as it arrives (OutputChunk, OutputStream).

The collector (:mod:`.outputs`) hands every piece of output it keeps to an
:class:`OutputStream`, which calls the caller's ``on_output`` from its own
task on the event loop. The collector's work (on the connection's reader
task, shared by every session) is then a queue append, whatever the callback
does: a coroutine callback that takes its time delays only the delivery of
its own cell's later chunks; a callback that raises is logged and not called
again for that cell; neither touches the cell, its result or other sessions.
What waits in the queue is bounded: consecutive stream text merges into one
chunk, and past :data:`MAX_PENDING_CHUNKS` waiting chunks, or
:data:`MAX_PENDING_CHARS` of their text and data, the rest is counted, not
queued (a note says so): the cell's output cap does not bound the queue,
since a ``clear_output`` starts the cell's budget again. A plain function is called on the
event loop: like any asyncio callback it must return quickly.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

logger = logging.getLogger("kernel_agent.streaming")

#: What one chunk is: kernel output (nbformat's output types, and clear_output), or a note of kernel-agent's.
ChunkType = Literal["stream", "display_data", "execute_result", "error", "clear_output", "note"]

#: Chunks waiting for a slow callback at most; past this they are counted and dropped (a note says so).
MAX_PENDING_CHUNKS = 256
#: Characters of text and data waiting for a slow callback at most (display data counted by its JSON length).
MAX_PENDING_CHARS = 8 * 1024**2
#: After the cell ends, what is still queued gets this long to reach the callback before it is dropped.
DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class OutputChunk:
    """One piece of a running cell's output, as it arrived (within the session's output cap).

    ``output_type`` is ``stream`` (``name`` is ``stdout`` or ``stderr``),
    ``display_data``, ``execute_result``, ``error``, ``clear_output`` (what
    was shown before may be cleared), or ``note`` (kernel-agent's: output past
    the cap, or chunks the callback was too slow for, were not delivered).
    ``text`` is the stream's text, a display's ``text/plain``, an error's
    ``ename: evalue``, or the note; ``data`` a display's MIME bundle. The text
    is the kernel's: untrusted (it may hold terminal control sequences).
    """

    output_type: ChunkType
    text: str = ""
    name: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


#: What ``Session.execute(on_output=...)`` takes: a function or a coroutine function of one chunk.
OutputCallback = Callable[[OutputChunk], "Awaitable[None] | None"]


class _Pending:
    """A chunk waiting for the callback; stream text keeps merging into it until it is sent."""

    def __init__(self, chunk: OutputChunk, awaiting: Awaitable[Any] | None = None, size: int = 0) -> None:
        self.chunk = chunk
        self.size = size  # characters counted against MAX_PENDING_CHARS (merged text included)
        self.awaiting = awaiting  # what a plain function returned for this chunk: awaited in order
        self.text: io.StringIO | None = None
        if chunk.output_type == "stream":
            self.text = io.StringIO()
            self.text.write(chunk.text)

    def merge(self, chunk: OutputChunk) -> bool:
        """Take ``chunk``'s text if it continues this stream; say whether it did."""
        if (self.text is None or self.awaiting is not None or chunk.output_type != "stream"
                or chunk.name != self.chunk.name):
            return False
        self.text.write(chunk.text)
        self.size += len(chunk.text)
        return True

    def ready(self) -> OutputChunk:
        if self.text is None:
            return self.chunk
        return OutputChunk("stream", self.text.getvalue(), self.chunk.name)


class OutputStream:
    """Delivers one cell's chunks to ``callback`` in order, from a task of its own, without ever blocking the cell."""

    def __init__(self, callback: OutputCallback) -> None:
        self._callback = callback
        # A plain function is called right away (no task hop per chunk: a flood of output costs the loop
        # no more than the callback itself); a coroutine function's calls are awaited by the task.
        self._inline = not _is_coroutine_function(callback)
        self._pending: deque[_Pending] = deque()
        self._pending_chars = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._skipped = 0
        self._failed = False
        self._task = asyncio.get_running_loop().create_task(self._deliver())

    def put(self, chunk: OutputChunk) -> None:
        """Queue ``chunk`` (called from the event loop; never waits)."""
        if self._failed or self._closing:
            return
        if self._inline and not self._pending:
            try:
                returned = self._callback(chunk)
            except Exception:  # noqa: BLE001 - the caller's callback: logged in _fail, never the cell's problem
                self._fail()
                return
            if inspect.isawaitable(returned):  # it returned a coroutine after all: await it, and what follows
                self._inline = False
                self._pending.append(_Pending(chunk, returned))
                self._wake.set()
            return
        size = _chunk_chars(chunk)
        if self._pending_chars + size > MAX_PENDING_CHARS:
            self._skipped += 1
            return
        if self._pending and self._pending[-1].merge(chunk):
            self._pending_chars += size
            return  # a flood of small writes is one chunk to a slow callback (StringIO: no quadratic joins)
        if len(self._pending) >= MAX_PENDING_CHUNKS:
            self._skipped += 1
            return
        self._pending_chars += size
        self._pending.append(_Pending(chunk, size=size))
        self._wake.set()

    async def _deliver(self) -> None:
        while True:
            if not self._pending:
                if self._skipped:
                    self._pending.append(_Pending(OutputChunk(
                        "note", f"{self._skipped:,} pieces of output were not delivered here: the callback fell "
                                "behind (the cell's result has them)")))
                    self._skipped = 0
                elif self._closing:
                    return
                else:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
            pending = self._pending.popleft()
            self._pending_chars -= pending.size
            try:
                returned = pending.awaiting or self._callback(pending.ready())
                if inspect.isawaitable(returned):
                    await returned
            except Exception:  # noqa: BLE001 - the caller's callback: logged in _fail, never the cell's problem
                self._fail()
                return

    def _fail(self) -> None:
        self._failed = True
        self._pending.clear()
        self._pending_chars = 0
        logger.warning("an on_output callback raised; it gets no more output of this cell (the cell and its "
                       "result are unaffected)", exc_info=True)

    async def close(self, grace: float | None = None) -> None:
        """Deliver what is queued within ``grace`` seconds (default :data:`DRAIN_SECONDS`), then stop.

        What is left then is dropped (and logged): the cell's result has it.
        """
        grace = DRAIN_SECONDS if grace is None else grace
        self._closing = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})
            logger.warning("an on_output callback did not take the cell's output within %.1f s of the cell's end; "
                           "the rest was not delivered (the cell's result has it)", grace)

    def abort(self) -> None:
        """Stop delivering now (the cell's run was cancelled); nothing waits."""
        self._closing = True
        if not self._task.done():
            self._task.cancel()


def _chunk_chars(chunk: OutputChunk) -> int:
    """What ``chunk`` holds while it waits: its text, and its data (a text value's length, else its JSON's)."""
    size = len(chunk.text)
    for value in chunk.data.values():
        size += len(value) if isinstance(value, (str, bytes)) else len(json.dumps(value, default=str))
    return size


def _is_coroutine_function(callback: object) -> bool:
    """Whether calling ``callback`` makes a coroutine (a coroutine function, or an object whose __call__ is one)."""
    call = inspect.getattr_static(type(callback), "__call__", None)
    return inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(call)
