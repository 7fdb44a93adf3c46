"""The host end of the tool bridge: the authority over every call a kernel makes.

Everything arriving from the kernel is untrusted (the kernel holds the
message key, so a valid signature proves nothing). For each request the
bridge checks, in order: the comm is a bridge comm; the message has the
expected shape and an id; it fits the size cap; its values decode (JSON and
tagged values only, never pickle); the tool exists in *this* session; the
call budget; the policy (and approver); the arguments against the schema.
Only then does the tool run, under a timeout. Every request that gets that
far is recorded as a :class:`ToolCall` before its reply is sent.

Attribution: a call is served only while a cell of this session runs, and
is recorded in that cell's :class:`CellLog`. The kernel stamps each call
with the msg_id of the execute request whose code made it (a thread carries
the cell that started it); a call stamped with another cell (a thread left
running by an earlier cell) or arriving between cells is refused and never
runs. Calls still running when their cell ends are cancelled and recorded
as such in that cell. A hostile kernel can lie about the stamp: its calls
are then attributed to the cell running when they arrive, and still never
escape the record.

Cost: kernel-sent values are size-capped before they are decoded, decoding
is bounded (:mod:`kernel_agent.protocol.wire`), and large values are decoded and
validated in a worker thread, so one session cannot stall the event loop
that other sessions share. What a cell may make the host keep is bounded
too (:mod:`kernel_agent.tools.cell_log`).

Beside this module, which accepts, attributes, refuses, serves and records
calls: :mod:`kernel_agent.tools.batches` bounds 'calls' messages and measures
their calls one by one, :mod:`kernel_agent.tools.notices` takes progress
events and final answers, :mod:`kernel_agent.tools.replies` delivers the
answers (batched per loop turn, kept for resends).

Protocol: see :mod:`kernel_agent.kernel.bridge` (the kernel end).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kernel_agent.protocol import wire
from kernel_agent.protocol.names import TOOLS_COMM_TARGET
from kernel_agent.tools.batches import MAX_BATCH_CALLS, Batches
from kernel_agent.tools.call_context import CURRENT_CALL, CallContext
from kernel_agent.tools.calls import CallError, CallStatus, ProgressEvent, ToolCall
from kernel_agent.tools.cell_log import (
    DEFAULT_MAX_CELL_RECORD_BYTES,
    RECORD_OVERHEAD_BYTES,
    UNMEASURABLE_BYTES,
    CellLog,
    wire_size,
)
from kernel_agent.tools.crossing import encode_result, kernel_accepts, log_notes
from kernel_agent.tools.notices import THREAD_DECODE_BYTES, Notices
from kernel_agent.tools.policy import Approver, CallRequest, Policy, allow_all, decide
from kernel_agent.tools.replies import Replies, SendReply
from kernel_agent.tools.tool import ArgumentsInvalid, Tool

TARGET_NAME = TOOLS_COMM_TARGET
MAX_CALL_ID_LENGTH = 64
# Calls still running when their cell ends get this long to finish before they are cancelled.
END_OF_CELL_GRACE_SECONDS = 1.0
_OUTSIDE_CELLS = ("no cell of this session is running: tool calls are served only while the cell that makes "
                  "them runs (a thread left running by an earlier cell cannot call tools)")
_STALE_CELL = ("a tool call from an earlier cell's thread arrived after that cell ended: tool calls are served "
               "only while the cell that makes them runs")

__all__ = ["MAX_BATCH_CALLS", "TARGET_NAME", "THREAD_DECODE_BYTES", "SendReply", "ToolBridge"]


class _Refused(Exception):
    """A call stopped before its tool ran; becomes the reply's error."""

    def __init__(self, status: CallStatus, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


@dataclass
class _InFlight:
    """A call being served: enough to record it whatever happens to its task."""

    comm_id: str
    call_id: str
    tool: str
    arguments: Any
    started: float
    log: CellLog
    recorded: bool = False
    task: asyncio.Task[None] | None = None
    #: The binary buffers that came with the arguments (a recording keeps their arrays and tables inline).
    buffers: tuple[bytes, ...] = ()


class ToolBridge:
    """Serves one session's tool calls; one instance per session, rebound to each new kernel."""

    def __init__(
        self,
        lookup: Callable[[str], Tool | None],
        *,
        policy: Policy = allow_all,
        approver: Approver | None = None,
        call_timeout: float = 60.0,
        max_calls: int | None = None,
        max_request_bytes: int = 32 * 1024**2,
        max_in_flight: int = 64,
        max_queued: int = 4096,
        on_progress: Callable[[ProgressEvent], Any] | None = None,
        max_cell_record_bytes: int = DEFAULT_MAX_CELL_RECORD_BYTES,
        max_progress_bytes: int = 64 * 1024,
        max_final_answer_bytes: int = 4 * 1024**2,
    ) -> None:
        self._lookup = lookup
        self.policy = policy
        self.approver = approver
        self.call_timeout = call_timeout
        self.max_calls = max_calls
        self.max_request_bytes = max_request_bytes
        self.max_queued = max_queued
        self.on_progress = on_progress
        #: Per cell: bytes of records kept (see cell_log); per message: progress and final-answer caps.
        self.max_cell_record_bytes = max_cell_record_bytes
        self.max_progress_bytes = max_progress_bytes
        self.max_final_answer_bytes = max_final_answer_bytes
        #: What the session says of itself to the tools it serves (see kernel_agent.tools.call_context).
        self.session_facts: Callable[[], dict[str, Any]] = dict
        self._slots = asyncio.Semaphore(max_in_flight)
        self._comm_ids: set[str] = set()
        #: What each bridge comm's kernel decodes besides JSON (its comm_open says; see wire.local_accepts).
        self._accepts: dict[str, frozenset[str]] = {}
        self._inflight: dict[str, _InFlight] = {}
        #: Delivers the replies (kept for resends, batched per loop turn).
        self.replies = Replies()
        self._notices = Notices(self._progress, self._count_rejected)
        self._batches = Batches(self._admit_measured, self._refuse_batch, self._count_rejected)
        self.calls_started = 0
        self.log = CellLog(None)  # outside any cell until begin_cell
        self.rejected_messages = 0
        #: Calls refused because no cell was running or they came from an earlier cell (never run).
        self.refused_outside_cells = 0

    # -- wiring ----------------------------------------------------------------------

    def bind(self, send: SendReply) -> None:
        """Serve a (new) kernel: replies go through ``send``; comms of an earlier kernel are forgotten."""
        self.replies.send = send
        self._comm_ids.clear()
        self._accepts.clear()

    def begin_cell(self, index: int, msg_id: str | None = None) -> None:
        """Serve and record calls of cell ``index`` (run by the execute request ``msg_id``) from now on."""
        self.log = CellLog(index, msg_id, self.max_cell_record_bytes)

    async def end_cell(self, grace: float = END_OF_CELL_GRACE_SECONDS) -> CellLog:
        """Stop serving the current cell and return what it did, complete.

        Its calls still running get ``grace`` seconds, then are cancelled and
        recorded as cancelled; values still being decoded are awaited. From
        now until the next :meth:`begin_cell`, calls are refused.
        """
        if self.log.admitting:
            # Batches that arrived while the cell ran and are still being measured are its calls: admit
            # them first. Only these: a batch arriving from now on is refused as outside any cell.
            await asyncio.wait(set(self.log.admitting))
        log, self.log = self.log, CellLog(None)
        running = [c.task for c in self._inflight.values() if c.log is log and c.task is not None]
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:  # a task that swallows its cancellation is recorded below all the same
                await asyncio.wait(late, timeout=grace)
        for call in [c for c in self._inflight.values() if c.log is log and not c.recorded]:
            self._record(call, None, CallError(kind=CallStatus.CANCELLED, message=_cancelled_message(grace)), [])
        if log.pending:
            await asyncio.wait(set(log.pending))
        log.closed = True
        return log

    async def close(self) -> None:
        """Cancel calls still running (the kernel is gone)."""
        tasks = [c.task for c in self._inflight.values() if c.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # -- receiving (called by the connection's iopub reader) ------------------------------

    def on_comm_message(self, message: dict[str, Any]) -> None:
        """Take a comm_open / comm_msg / comm_close from the kernel; never raises."""
        try:
            self._on_comm_message(message)
        except Exception:  # noqa: BLE001 - kernel input is hostile: a bad message is counted, never raised
            self.rejected_messages += 1

    def _on_comm_message(self, message: dict[str, Any]) -> None:
        msg_type, content = message["msg_type"], message["content"]
        if not isinstance(content, dict):
            raise ValueError("comm content is not an object")
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str):
            raise ValueError("comm message without comm_id")
        if msg_type == "comm_open":
            if content.get("target_name") == TARGET_NAME:
                self._comm_ids.add(comm_id)
                self._accepts[comm_id] = kernel_accepts(content.get("data"))
            return
        if msg_type == "comm_close":
            self._comm_ids.discard(comm_id)
            self._accepts.pop(comm_id, None)
            return
        if msg_type != "comm_msg" or comm_id not in self._comm_ids:
            return
        data = content.get("data")
        if not isinstance(data, dict):
            raise ValueError("bridge message data is not an object")
        kind = data.get("type")
        size = int(message.get("size", 0))
        buffers = message.get("buffers", [])
        if kind == "call":
            self._accept_call(comm_id, data, [bytes(b) for b in buffers], size)
        elif kind == "calls":
            self._batches.accept(comm_id, data.get("calls"), size, self.log, self.max_request_bytes)
        elif kind in ("progress", "final_answer"):
            cap = self.max_progress_bytes if kind == "progress" else self.max_final_answer_bytes
            self._notices.accept(kind, data, buffers, size, self.log, cap)

    def _admit_measured(self, comm_id: str, call: dict[str, Any], size: int, log: CellLog) -> None:
        self._accept_call(comm_id, call, [], size, log)

    def _refuse_batch(self, comm_id: str, calls: Any, reason: str | None = None) -> None:
        """Answer the ids of a refused batch with an error, so no honest caller waits for its timeout.

        Only the first :data:`MAX_BATCH_CALLS` entries are looked at: no kernel
        waits for more calls than that, and answering a million ids would
        itself hold the loop.
        """
        if not isinstance(calls, list):
            return
        error = CallError(kind=CallStatus.REFUSED if reason else CallStatus.INVALID, message=reason or (
            f"the 'calls' message was refused: a batch holds at most {MAX_BATCH_CALLS} calls, each an object"))
        for call in calls[:MAX_BATCH_CALLS]:
            call_id = call.get("id") if isinstance(call, dict) else None
            if isinstance(call_id, str) and 0 < len(call_id) <= MAX_CALL_ID_LENGTH \
                    and call_id not in self._inflight and not self.replies.answered(call_id):
                self.replies.reply(comm_id, call_id, None, error, [])

    def _progress(self, event: ProgressEvent) -> None:
        if self.on_progress is not None:
            with contextlib.suppress(Exception):  # a failing callback must not break the bridge
                self.on_progress(event)

    def _count_rejected(self) -> None:
        self.rejected_messages += 1

    def _accept_call(self, comm_id: str, data: dict[str, Any], buffers: list[bytes], size: int,
                     log: CellLog | None = None) -> None:
        """Start serving a call in ``log``'s cell (default: the cell running now), or answer why not."""
        call_id = data.get("id")
        if not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_CALL_ID_LENGTH:
            raise ValueError("call without a usable id")  # nobody to answer
        if call_id in self._inflight or self.replies.answer_again(comm_id, call_id):
            return  # a resend of a call still running, or of one answered
        log = self.log if log is None else log
        refusal = self._refusal(log, data.get("cell"), size)
        if refusal is not None:
            self.replies.reply(comm_id, call_id, None, CallError(kind=CallStatus.REFUSED, message=refusal), [])
            return
        if len(self._inflight) >= self.max_queued:
            log.drop("tool call(s) were refused: too many in flight")
            self.replies.reply(comm_id, call_id, None, CallError(kind=CallStatus.ERROR,
                        message=f"too many calls in flight ({self.max_queued}); wait for some to finish"), [])
            return
        tool_name = data.get("tool") if isinstance(data.get("tool"), str) else "?"
        call = _InFlight(comm_id, call_id, str(tool_name)[:200],
                         data.get("args") if size <= self.max_request_bytes else None, time.time(), log,
                         buffers=tuple(buffers) if size <= self.max_request_bytes else ())
        self._inflight[call_id] = call
        call.task = asyncio.get_running_loop().create_task(self._serve(call, data.get("args"), buffers, size))
        call.task.add_done_callback(lambda _: self._inflight.pop(call_id, None))

    def _refusal(self, log: CellLog, stamp: Any, size: int) -> str | None:
        """Why a call may not run in ``log``'s cell (None: it may). Refusals are counted, not recorded."""
        # ``log`` is not the current one when its cell ended while a batch of its calls was being measured.
        if log.index is None or log is not self.log or (isinstance(stamp, str) and log.msg_id is not None
                                                        and stamp != log.msg_id):
            self.refused_outside_cells += 1
            if log.index is not None:
                log.drop("tool call(s) from threads of earlier cells were refused")
            return _OUTSIDE_CELLS if log.index is None else _STALE_CELL
        if not log.reserve(min(size, self.max_request_bytes) + RECORD_OVERHEAD_BYTES):
            log.drop("tool call(s) were refused: the cell's record cap was reached")
            return (f"this cell's tool-call records reached their cap ({log.max_bytes:,} bytes): no more calls run "
                    "in this cell (every call that runs is recorded); make fewer or smaller calls per cell")
        return None

    # -- serving ----------------------------------------------------------------------

    async def _serve(self, call: _InFlight, arguments_wire: Any, buffers: list[bytes], size: int) -> None:
        result_wire: Any = None
        result_buffers: list[bytes] = []
        error: CallError | None = None
        try:
            result = await self._run(call.tool, arguments_wire, buffers, size, call.log.index)
            result_wire, result_buffers = await encode_result(
                call.tool, result, self._accepts.get(call.comm_id, frozenset()))
        except wire.UnserializableValue as exc:
            error = CallError(kind=CallStatus.UNSERIALIZABLE, message=(
                f"{call.tool} returned a value that cannot cross to the kernel: {exc}"[:10_000]))
        except _Refused as refused:
            error = CallError(kind=refused.status, message=refused.message, details=refused.details)
        except asyncio.CancelledError:
            self._record(call, None, CallError(kind=CallStatus.CANCELLED, message=_cancelled_message()), [])
            raise
        except Exception as exc:  # noqa: BLE001 - the tool itself failed: any error goes back to the kernel
            error = CallError(kind=CallStatus.ERROR, message=f"{type(exc).__name__}: {exc}"[:10_000],
                              details={"traceback": traceback.format_exception(exc)[-6:]})
        self._record(call, result_wire, error, result_buffers)

    def _record(self, call: _InFlight, result_wire: Any, error: CallError | None, buffers: list[bytes]) -> None:
        """Record a call in its cell's log (once) and reply to the kernel."""
        if call.recorded:
            return
        call.recorded = True
        omitted = None
        kept_result = result_wire
        # A recording keeps arrays and tables inline, as base64: a third more than their buffers.
        size = min(UNMEASURABLE_BYTES, wire_size(result_wire, buffers) + sum(len(b) for b in buffers) // 3
                   + (wire_size(error.details) if error is not None else 0))
        if not call.log.reserve(size):
            measured = size < UNMEASURABLE_BYTES  # a value too deep to serialise is never kept
            call.log.drop("tool result(s) over the cell's record cap were not kept in its records",
                          size if measured else 0)
            kept_result = None
            omitted = (f"the result ({size:,} bytes) is not kept: the cell's record cap was reached" if measured
                       else "the result is not kept: it is too deeply nested to be recorded")
            if error is not None:
                error = CallError(kind=error.kind, message=error.message)
        elif buffers:
            kept_result = wire.inline_buffers(result_wire, buffers)
        arguments = wire.inline_buffers(call.arguments, list(call.buffers)) if call.buffers else call.arguments
        # Built without re-validation (every field is already of its type): at
        # thousands of calls a second pydantic's checks are a visible cost.
        record = ToolCall.model_construct(
            id=call.call_id, tool=call.tool, arguments=arguments, status=error.kind if error else CallStatus.OK,
            result=kept_result, error=error, started_at=call.started, ended_at=time.time(), cell=call.log.index,
            omitted=omitted,
        )
        if not call.log.closed:
            call.log.calls.append(record)
        self.replies.reply(call.comm_id, call.call_id, result_wire, error, buffers, size)

    async def _run(self, tool_name: str, arguments_wire: Any, buffers: list[bytes], size: int, cell: int | None) -> Any:
        if size > self.max_request_bytes:
            raise _Refused(CallStatus.INVALID,
                           f"the request is {size:,} bytes; the limit is {self.max_request_bytes:,}")
        tool = self._lookup(tool_name)
        if tool is None:
            raise _Refused(CallStatus.UNKNOWN_TOOL, f"this session has no tool {tool_name!r}; see dir(tools)")
        # Binary buffers (arrays, Arrow tables) decode to far more than their size (an Arrow list of nulls has no
        # data at all): never on the event loop other sessions share.
        large = size > THREAD_DECODE_BYTES or bool(buffers)
        notes: list[str] = []
        try:
            arguments = await asyncio.to_thread(wire.decode, arguments_wire, buffers, notes=notes) if large \
                else wire.decode(arguments_wire, buffers, notes=notes)
        except wire.DecodeError as exc:
            raise _Refused(CallStatus.INVALID, f"the arguments could not be decoded: {exc}") from None
        log_notes(f"arguments of {tool_name}", notes)
        if not isinstance(arguments, dict):
            raise _Refused(CallStatus.INVALID, "the arguments must be an object of named values")
        self.calls_started += 1
        if self.max_calls is not None and self.calls_started > self.max_calls:
            raise _Refused(CallStatus.BUDGET, f"the session's budget of {self.max_calls} tool calls is spent")
        allowed, reason = await decide(self.policy, self.approver, CallRequest(tool, arguments, cell))
        if not allowed:
            raise _Refused(CallStatus.DENIED, reason)
        CURRENT_CALL.set(CallContext(self, cell, self.session_facts))  # this call's task only
        async with self._slots:
            try:
                async with asyncio.timeout(self.call_timeout):
                    return await tool.invoke(arguments, validate_in_thread=large)
            except ArgumentsInvalid as invalid:
                raise _Refused(CallStatus.INVALID, f"invalid arguments: {invalid}", details=invalid.errors) from None
            except TimeoutError:
                raise _Refused(CallStatus.TIMEOUT, f"the tool did not finish within {self.call_timeout} s") from None


def _cancelled_message(grace: float | None = None) -> str:
    within = f" within {grace:g} s" if grace is not None else ""
    return (f"the cell that made this call ended before the call finished{within}, so it was cancelled "
            "(a tool already running in a worker thread may still complete; its result is discarded)")
