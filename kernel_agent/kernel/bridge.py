"""The kernel end of the tool bridge: calls out over a Jupyter comm, replies back.

A call is a ``comm_msg`` on iopub: ``{"type": "call", "id", "tool", "args"}``
(values encoded by :mod:`kernel_agent.wire`, bytes as binary buffers). The
host answers with a ``comm_msg`` on the shell channel:
``{"type": "reply", "id", "ok", "value" | "error"}``.

The hard part is receiving that reply while the cell that made the call
blocks the main thread (ipykernel #65). ipykernel 7.4 reads every shell
message on its shell-channel thread first (``shell_channel_thread_main``);
:class:`~kernel_agent.kernel.agent_kernel.AgentKernel` hands bridge replies
to :meth:`BridgeClient.deliver` right there, before any routing to the main
thread or a subshell. So a reply never waits for the thread that is waiting
for it: sync calls (main thread or any other thread) wake on a
``threading.Event``, async calls on their event loop via
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from kernel_agent import wire
from kernel_agent.kernel import sdk

TARGET_NAME = "kernel_agent.tools"
# The kernel gives up this long after the host's own call timeout (the host
# normally answers with a timeout error first).
_TIMEOUT_MARGIN_SECONDS = 5.0
# iopub is PUB/SUB: a message can be dropped when a queue is full (an output
# flood, a burst of calls). Calls are therefore resent under the same id
# until answered (the host answers each id once), and at most this many are
# in flight so that a burst cannot overflow the queues in the first place.
_MAX_IN_FLIGHT = 256
_FIRST_RETRY_SECONDS = 1.0
_MAX_RETRY_SECONDS = 8.0


@dataclass
class _Pending:
    tool: str
    message: tuple[dict[str, Any], list[bytes]] = ({}, [])
    event: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[Any] | None = None
    reply: dict[str, Any] | None = None
    buffers: list[bytes] = field(default_factory=list)


class BridgeClient:
    """Sends tool calls to the host and matches its replies to them by id."""

    def __init__(self, call_timeout: float) -> None:
        import comm

        self.call_timeout = call_timeout
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(_MAX_IN_FLIGHT)
        self._slot_waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            collections.deque())
        self._comm = comm.create_comm(target_name=TARGET_NAME, data={"protocol": 1})

    @property
    def comm_id(self) -> str:
        """The id of the comm the host replies on."""
        return str(self._comm.comm_id)

    # -- sending ---------------------------------------------------------------

    def _send(self, tool: str, arguments: dict[str, Any], pending: _Pending) -> str:
        call_id = uuid.uuid4().hex
        data, buffers = wire.encode(arguments)
        pending.message = ({"type": "call", "id": call_id, "tool": tool, "args": data}, buffers)
        with self._lock:
            self._pending[call_id] = pending
        self._resend(pending)
        return call_id

    def _resend(self, pending: _Pending) -> None:
        data, buffers = pending.message
        self._comm.send(data, buffers=buffers)

    def _retry_delays(self) -> list[float]:
        """Waits between sends of one call, adding up to its timeout."""
        delays, total, delay = [], 0.0, _FIRST_RETRY_SECONDS
        limit = self.call_timeout + _TIMEOUT_MARGIN_SECONDS
        while total < limit:
            step = min(delay, limit - total)
            delays.append(step)
            total += step
            delay = min(delay * 2, _MAX_RETRY_SECONDS)
        return delays

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call a host tool and wait for its result (any thread)."""
        if not self._slots.acquire(timeout=self.call_timeout):
            raise sdk.ToolTimeoutError(tool, f"{_MAX_IN_FLIGHT} calls were still in flight after "
                                       f"{self.call_timeout} s", kind="timeout")
        pending = _Pending(tool)
        call_id = self._send(tool, arguments, pending)
        for delay in self._retry_delays():
            if pending.event.wait(delay):
                return self._outcome(pending)
            self._resend(pending)
        self._forget(call_id)
        raise sdk.ToolTimeoutError(tool, f"no answer from the host within {self.call_timeout} s", kind="timeout")

    async def call_async(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call a host tool without blocking the event loop (``await``, ``asyncio.gather``)."""
        loop = asyncio.get_running_loop()
        await self._acquire_async(loop)
        pending = _Pending(tool, loop=loop, future=loop.create_future())
        call_id = self._send(tool, arguments, pending)
        assert pending.future is not None
        for delay in self._retry_delays():
            done, _ = await asyncio.wait({pending.future}, timeout=delay)
            if done:
                return self._outcome(pending)
            self._resend(pending)
        self._forget(call_id)
        raise sdk.ToolTimeoutError(tool, f"no answer from the host within {self.call_timeout} s", kind="timeout")

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        """Send a one-way message (progress, final answer)."""
        data, buffers = wire.encode(payload)
        self._comm.send({"type": kind, "payload": data}, buffers=buffers)

    async def _acquire_async(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take an in-flight slot without blocking the loop: queue up and be handed one."""
        with self._lock:
            if self._slots.acquire(blocking=False):
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append((loop, waiter))
        await waiter

    def _release_slot(self) -> None:
        """Give the slot to the first queued async caller, else back to the semaphore (lock held)."""
        while self._slot_waiters:
            loop, waiter = self._slot_waiters.popleft()
            if not loop.is_closed():
                loop.call_soon_threadsafe(lambda w=waiter: w.done() or w.set_result(None))
                return
        self._slots.release()

    def _forget(self, call_id: str) -> None:
        with self._lock:
            if self._pending.pop(call_id, None) is not None:
                self._release_slot()

    # -- receiving (on ipykernel's shell-channel thread) ----------------------------

    def deliver(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        """Hand a reply from the host to the call waiting for it."""
        call_id = data.get("id")
        with self._lock:
            pending = self._pending.pop(call_id, None) if isinstance(call_id, str) else None
            if pending is None:
                return  # the caller timed out already, or this is a duplicate answer
            self._release_slot()
        pending.reply, pending.buffers = data, buffers
        if pending.loop is not None and pending.future is not None:
            future = pending.future
            pending.loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))
        else:
            pending.event.set()

    @staticmethod
    def _outcome(pending: _Pending) -> Any:
        reply = pending.reply or {}
        if reply.get("ok"):
            return wire.decode(reply.get("value"), pending.buffers)
        error = reply.get("error") or {}
        kind = str(error.get("kind", "error"))
        error_class = sdk.ERROR_KINDS.get(kind, sdk.ToolError)
        raise error_class(pending.tool, str(error.get("message", "the tool failed")), kind=kind,
                          details=error.get("details"))


def install(modules: dict[str, str], call_timeout: float) -> None:
    """Attach this kernel to its host: open the bridge and put the SDK in the user namespace.

    Run by the host (a silent cell) right after the kernel starts.
    """
    from ipykernel.kernelbase import Kernel

    kernel = Kernel.instance()
    if getattr(kernel, "shell_channel_thread", None) is None:
        raise RuntimeError("this ipykernel has no shell-channel thread: tool replies could not reach a "
                           "blocked cell (kernel-agent supports ipykernel 7.4)")
    client = BridgeClient(call_timeout)
    kernel.bridge = client
    sdk.attach(client)
    kernel.shell.user_ns["tools"] = sdk.build_tools(modules)
