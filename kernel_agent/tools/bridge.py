"""The host end of the tool bridge: the authority over every call a kernel makes.

Everything arriving from the kernel is untrusted (the kernel holds the
message key, so a valid signature proves nothing). For each request the
bridge checks, in order: the comm is a bridge comm; the message has the
expected shape and an id; it fits the size cap; its values decode (JSON and
tagged values only, never pickle); the tool exists in *this* session; the
call budget; the policy (and approver); the arguments against the schema.
Only then does the tool run, under a timeout. Every request that gets that
far is recorded as a :class:`ToolCall` before its reply is sent.

Protocol: see :mod:`kernel_agent.kernel.bridge` (the kernel end).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kernel_agent import wire
from kernel_agent.tools.calls import CallError, CallStatus, ProgressEvent, ToolCall
from kernel_agent.tools.policy import Approver, CallRequest, Policy, allow_all, decide
from kernel_agent.tools.tool import ArgumentsInvalid, Tool

TARGET_NAME = "kernel_agent.tools"  # must match kernel_agent.kernel.bridge.TARGET_NAME
MAX_CALL_ID_LENGTH = 64
# The kernel resends a call it got no answer to (iopub can drop messages);
# recent answers are kept to answer such duplicates without running twice.
REPLY_CACHE_SIZE = 1024

SendReply = Callable[[str, dict[str, Any], list[bytes]], None]


class _Refused(Exception):
    """A call stopped before its tool ran; becomes the reply's error."""

    def __init__(self, status: CallStatus, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


class CellLog:
    """What one cell did through the bridge."""

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.calls: list[ToolCall] = []
        self.progress: list[ProgressEvent] = []
        self.final_answers: list[Any] = []


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
    ) -> None:
        self._lookup = lookup
        self.policy = policy
        self.approver = approver
        self.call_timeout = call_timeout
        self.max_calls = max_calls
        self.max_request_bytes = max_request_bytes
        self.max_queued = max_queued
        self.on_progress = on_progress
        self._slots = asyncio.Semaphore(max_in_flight)
        self._send: SendReply | None = None
        self._comm_ids: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._active_ids: set[str] = set()
        self._reply_outbox: dict[str, list[dict[str, Any]]] = {}
        self._recent_replies: OrderedDict[str, tuple[str, dict[str, Any], list[bytes]]] = OrderedDict()
        self.calls_started = 0
        self.log = CellLog(None)  # outside any cell until begin_cell
        self.rejected_messages = 0

    # -- wiring ----------------------------------------------------------------------

    def bind(self, send: SendReply) -> None:
        """Serve a (new) kernel: replies go through ``send``; comms of an earlier kernel are forgotten."""
        self._send = send
        self._comm_ids.clear()

    def begin_cell(self, index: int) -> None:
        """Attribute what arrives from now on to cell ``index``."""
        self.log = CellLog(index)

    def end_cell(self) -> CellLog:
        """Stop attributing to the current cell and return what it did."""
        log, self.log = self.log, CellLog(None)
        return log

    async def close(self) -> None:
        """Cancel calls still running (the kernel is gone)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    # -- receiving (called by the connection's iopub reader) ------------------------------

    def on_comm_message(self, message: dict[str, Any]) -> None:
        """Take a comm_open / comm_msg / comm_close from the kernel; never raises."""
        try:
            self._on_comm_message(message)
        except Exception:
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
            return
        if msg_type == "comm_close":
            self._comm_ids.discard(comm_id)
            return
        if msg_type != "comm_msg" or comm_id not in self._comm_ids:
            return
        data = content.get("data")
        if not isinstance(data, dict):
            raise ValueError("bridge message data is not an object")
        kind = data.get("type")
        buffers = [bytes(b) for b in message.get("buffers", [])]
        if kind == "call":
            self._accept_call(comm_id, data, buffers, message.get("size", 0))
        elif kind == "calls" and isinstance(data.get("calls"), list):
            size = message.get("size", 0) // max(1, len(data["calls"]))
            for call in data["calls"]:
                if isinstance(call, dict):
                    with contextlib.suppress(ValueError):
                        self._accept_call(comm_id, call, [], size)
        elif kind == "progress":
            self._record_progress(data, buffers)
        elif kind == "final_answer":
            payload = wire.decode(data.get("payload"), buffers)
            if isinstance(payload, dict) and "value" in payload:
                self.log.final_answers.append(payload["value"])

    def _record_progress(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        payload = wire.decode(data.get("payload"), buffers)
        if not isinstance(payload, dict):
            raise ValueError("progress payload is not an object")
        fields = payload.get("fields") if isinstance(payload.get("fields"), dict) else {}
        event = ProgressEvent(message=str(payload.get("message", ""))[:10_000], fields=wire.encode(fields)[0],
                              time=time.time(), cell=self.log.index)
        self.log.progress.append(event)
        if self.on_progress is not None:
            with contextlib.suppress(Exception):  # a failing callback must not break the bridge
                self.on_progress(event)

    def _accept_call(self, comm_id: str, data: dict[str, Any], buffers: list[bytes], size: int) -> None:
        call_id = data.get("id")
        if not isinstance(call_id, str) or not 0 < len(call_id) <= MAX_CALL_ID_LENGTH:
            raise ValueError("call without a usable id")  # nobody to answer
        if call_id in self._active_ids:
            return  # a resend of a call still running
        if call_id in self._recent_replies:
            _, data_sent, buffers_sent = self._recent_replies[call_id]
            if self._send is not None:
                with contextlib.suppress(Exception):
                    self._send(comm_id, data_sent, buffers_sent)
            return
        if len(self._tasks) >= self.max_queued:
            self._reply(comm_id, call_id, None, CallError(kind=CallStatus.ERROR,
                        message=f"too many calls in flight ({self.max_queued}); wait for some to finish"), [])
            return
        self._active_ids.add(call_id)
        task = asyncio.get_running_loop().create_task(self._serve(comm_id, call_id, data, buffers, size, self.log))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._active_ids.discard(call_id))

    # -- serving ----------------------------------------------------------------------

    async def _serve(
        self, comm_id: str, call_id: str, data: dict[str, Any], buffers: list[bytes], size: int, log: CellLog
    ) -> None:
        started = time.time()
        tool_name = data.get("tool") if isinstance(data.get("tool"), str) else "?"
        arguments_wire = data.get("args")
        result_wire: Any = None
        result_buffers: list[bytes] = []
        error: CallError | None = None
        try:
            result = await self._run(tool_name, arguments_wire, buffers, size, log.index)
            result_wire, result_buffers = wire.encode(result)
        except _Refused as refused:
            error = CallError(kind=refused.status, message=refused.message, details=refused.details)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the tool itself failed
            error = CallError(kind=CallStatus.ERROR, message=f"{type(exc).__name__}: {exc}",
                              details={"traceback": traceback.format_exception(exc)[-6:]})
        # Built without re-validation (every field is already of its type): at
        # thousands of calls a second pydantic's checks are a visible cost.
        record = ToolCall.model_construct(
            id=call_id, tool=str(tool_name)[:200], arguments=arguments_wire if size <= self.max_request_bytes else None,
            status=error.kind if error else CallStatus.OK, result=result_wire, error=error,
            started_at=started, ended_at=time.time(), cell=log.index,
        )
        log.calls.append(record)
        self._reply(comm_id, call_id, result_wire, error, result_buffers)

    async def _run(self, tool_name: str, arguments_wire: Any, buffers: list[bytes], size: int, cell: int | None) -> Any:
        if size > self.max_request_bytes:
            raise _Refused(CallStatus.INVALID, f"the request is {size:,} bytes; the limit is {self.max_request_bytes:,}")
        tool = self._lookup(tool_name)
        if tool is None:
            raise _Refused(CallStatus.UNKNOWN_TOOL, f"this session has no tool {tool_name!r}; see dir(tools)")
        try:
            arguments = wire.decode(arguments_wire, buffers)
        except wire.DecodeError as exc:
            raise _Refused(CallStatus.INVALID, f"the arguments could not be decoded: {exc}") from None
        if not isinstance(arguments, dict):
            raise _Refused(CallStatus.INVALID, "the arguments must be an object of named values")
        self.calls_started += 1
        if self.max_calls is not None and self.calls_started > self.max_calls:
            raise _Refused(CallStatus.BUDGET, f"the session's budget of {self.max_calls} tool calls is spent")
        allowed, reason = await decide(self.policy, self.approver, CallRequest(tool, arguments, cell))
        if not allowed:
            raise _Refused(CallStatus.DENIED, reason)
        async with self._slots:
            try:
                async with asyncio.timeout(self.call_timeout):
                    return await tool.invoke(arguments)
            except ArgumentsInvalid as invalid:
                raise _Refused(CallStatus.INVALID, f"invalid arguments: {invalid}", details=invalid.errors) from None
            except TimeoutError:
                raise _Refused(CallStatus.TIMEOUT, f"the tool did not finish within {self.call_timeout} s") from None

    def _reply(self, comm_id: str, call_id: str, value: Any, error: CallError | None, buffers: list[bytes]) -> None:
        if self._send is None:
            return
        if error is None:
            data: dict[str, Any] = {"type": "reply", "id": call_id, "ok": True, "value": value}
        else:
            data = {"type": "reply", "id": call_id, "ok": False,
                    "error": {"kind": error.kind.value, "message": error.message,
                              "details": wire.encode(error.details)[0]}}
        self._recent_replies[call_id] = (comm_id, data, buffers)
        if len(self._recent_replies) > REPLY_CACHE_SIZE:
            self._recent_replies.popitem(last=False)
        if buffers:
            with contextlib.suppress(Exception):  # a dead kernel cannot take the reply
                self._send(comm_id, data, buffers)
            return
        # Replies finished in the same loop turn leave as one message.
        outbox = self._reply_outbox.setdefault(comm_id, [])
        outbox.append(data)
        if len(outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush_replies, comm_id)

    def _flush_replies(self, comm_id: str) -> None:
        replies = self._reply_outbox.pop(comm_id, [])
        if not replies or self._send is None:
            return
        data = replies[0] if len(replies) == 1 else {"type": "replies", "replies": replies}
        with contextlib.suppress(Exception):  # a dead kernel cannot take the reply
            self._send(comm_id, data, [])
