"""The kernel end of the tool bridge: calls out over a Jupyter comm, replies back.

A call is a ``comm_msg`` on iopub: ``{"type": "call", "id", "tool", "args"}``
(values encoded by :mod:`kernel_agent.protocol.wire`, bytes as binary buffers). The
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

Every call is stamped with the cell that made it (``"cell"``: the msg_id of
the execute request whose code runs it), so the host can refuse calls of a
thread an earlier cell left running: code running for a request has it in
:data:`CELL` (set by ``AgentKernel.set_parent``; asyncio tasks and
``asyncio.to_thread`` copy it), a thread carries the cell of the code that
started it, and a ``ThreadPoolExecutor`` job the cell of the code that
submitted it. ipykernel's own ``get_parent()`` cannot serve: from a thread
it answers with the *latest* request, which is exactly the misattribution.
The stamp is a courtesy of an honest kernel; the host does not trust it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kernel_agent.kernel import sdk, skills_import
from kernel_agent.protocol import wire
from kernel_agent.protocol.names import TOOLS_COMM_TARGET

TARGET_NAME = TOOLS_COMM_TARGET
# The kernel gives up this long after the host's own call timeout (the host
# normally answers with a timeout error first).
_TIMEOUT_MARGIN_SECONDS = 5.0
# iopub is PUB/SUB: a message can be dropped when a queue is full (an output
# flood, a burst of calls). Calls are therefore resent under the same id
# until answered (the host answers each id once), and at most this many are
# in flight so that a burst cannot overflow the queues in the first place.
# The host refuses a 'calls' message of more entries than this (its MAX_BATCH_CALLS).
_MAX_IN_FLIGHT = 256
_FIRST_RETRY_SECONDS = 1.0
_MAX_RETRY_SECONDS = 8.0
# What the host sends is not hostile to the kernel: a table or list as large as its memory allows is fine.
_MAX_REPLY_ITEMS = 1 << 62

#: The msg_id of the execute request whose code is running (see the module docstring).
CELL: contextvars.ContextVar[str] = contextvars.ContextVar("kernel_agent_cell")
_STAMP = "_kernel_agent_cell"  # attribute of a thread: the cell of the code that started it
_job_cell = threading.local()  # the cell of the code that submitted the pool job this thread runs


def current_cell() -> str | None:
    """The cell whose code is running here, as far as this kernel can tell (None: unknown)."""
    cell = CELL.get(None)
    if cell is None:
        cell = getattr(_job_cell, "cell", None)
    if cell is None:
        cell = getattr(threading.current_thread(), _STAMP, None)
    return cell


def _stamp_threads() -> None:
    """Make threads and pool jobs carry the cell of the code that started them (once per process)."""
    if getattr(threading.Thread.start, "_kernel_agent", False):
        return
    thread_start = threading.Thread.start
    pool_submit = concurrent.futures.ThreadPoolExecutor.submit

    def start(self: threading.Thread) -> None:
        setattr(self, _STAMP, current_cell())
        thread_start(self)

    def submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /,
               *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        cell = current_cell()

        def job() -> Any:
            outer, _job_cell.cell = getattr(_job_cell, "cell", None), cell
            try:
                return fn(*args, **kwargs)
            finally:
                _job_cell.cell = outer

        return pool_submit(self, job)

    start._kernel_agent = True  # type: ignore[attr-defined]
    threading.Thread.start = start  # type: ignore[method-assign]
    concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign, assignment]


@dataclass
class _Pending:
    tool: str
    message: tuple[dict[str, Any], list[bytes]] = ({}, [])
    event: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[Any] | None = None
    reply: dict[str, Any] | None = None
    buffers: list[bytes] = field(default_factory=list)
    deadline: float = 0.0
    next_send: float = 0.0
    retry_delay: float = _FIRST_RETRY_SECONDS


class BridgeClient:
    """Sends tool calls to the host and matches its replies to them by id.

    Timing is kept off the hot path: no call carries its own timer. One
    daemon thread sweeps the pending calls, resends those unanswered for a
    while and fails those past their timeout.
    """

    def __init__(self, call_timeout: float, host_accepts: Iterable[str] = ()) -> None:
        import comm

        self.call_timeout = call_timeout
        #: What the host decodes besides JSON (arguments are encoded for exactly that).
        self.host_accepts = frozenset(host_accepts)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(_MAX_IN_FLIGHT)
        self._outbox: list[dict[str, Any]] = []
        self._slot_waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            collections.deque())
        self._comm = comm.create_comm(target_name=TARGET_NAME,
                                      data={"protocol": 1, "accepts": sorted(wire.local_accepts())})
        threading.Thread(target=self._sweep_forever, name="kernel-agent-bridge-retry", daemon=True).start()

    @property
    def comm_id(self) -> str:
        """The id of the comm the host replies on."""
        return str(self._comm.comm_id)

    def close(self) -> None:
        """Close the comm (a new host attached): calls still pending here time out as the host is gone."""
        self._comm.close()

    # -- sending ---------------------------------------------------------------

    def _encode(self, tool: str, arguments: dict[str, Any]) -> tuple[Any, list[bytes]]:
        """The arguments as the host decodes them; UnserializableValue (raised in the calling cell) if they
        cannot cross. Done before a call takes a slot or anything is sent."""
        notes: list[str] = []
        try:
            encoded = wire.encode(arguments, self.host_accepts, root="arguments", notes=notes)
        except wire.UnserializableValue as exc:
            raise wire.UnserializableValue(exc.type_name, f"{exc.reason} (in a call of {tool})", exc.path) \
                .with_root("arguments") from None
        if len(encoded[1]) > wire.MAX_BUFFERS:
            raise wire.UnserializableValue(
                type(arguments).__name__, f"they hold {len(encoded[1]):,} binary values (bytes, arrays, frames); "
                f"at most {wire.MAX_BUFFERS:,} cross in one call (in a call of {tool})").with_root("arguments")
        for note in notes:
            warnings.warn(f"{tool}: {note}", sdk.PlainFormWarning, stacklevel=4)
        return encoded

    def _send(self, tool: str, encoded: tuple[Any, list[bytes]], pending: _Pending, *, batch: bool = False) -> str:
        call_id = uuid.uuid4().hex
        data, buffers = encoded
        message: dict[str, Any] = {"type": "call", "id": call_id, "tool": tool, "args": data}
        cell = current_cell()
        if cell is not None:
            message["cell"] = cell
        pending.message = (message, buffers)
        now = time.monotonic()
        pending.deadline = now + self.call_timeout + _TIMEOUT_MARGIN_SECONDS
        pending.next_send = now + pending.retry_delay
        with self._lock:
            self._pending[call_id] = pending
            if batch and not buffers and pending.loop is not None:
                # Calls made in the same event-loop turn (asyncio.gather) leave
                # as one message: per-message costs dominate small calls.
                self._outbox.append(pending.message[0])
                if len(self._outbox) == 1:
                    pending.loop.call_soon(self._flush_outbox)
                return call_id
        self._resend(pending)
        return call_id

    def _flush_outbox(self) -> None:
        with self._lock:
            calls, self._outbox = self._outbox, []
        # The slots already bound a batch to _MAX_IN_FLIGHT; cut it all the same, as the host
        # refuses a bigger one whole.
        for start in range(0, len(calls), _MAX_IN_FLIGHT):
            self._comm.send({"type": "calls", "calls": calls[start:start + _MAX_IN_FLIGHT]})

    def _resend(self, pending: _Pending) -> None:
        data, buffers = pending.message
        self._comm.send(data, buffers=buffers)

    def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call a host tool and wait for its result (any thread)."""
        encoded = self._encode(tool, arguments)
        if not self._slots.acquire(timeout=self.call_timeout):
            raise sdk.ToolTimeoutError(tool, f"{_MAX_IN_FLIGHT} calls were still in flight after "
                                       f"{self.call_timeout} s", kind="timeout")
        pending = _Pending(tool)
        self._send(tool, encoded, pending)
        pending.event.wait()  # the sweeper ends it with a timeout if the host never answers
        return self._outcome(pending)

    async def call_async(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call a host tool without blocking the event loop (``await``, ``asyncio.gather``)."""
        loop = asyncio.get_running_loop()
        encoded = self._encode(tool, arguments)
        await self._acquire_async(loop)
        pending = _Pending(tool, loop=loop, future=loop.create_future())
        self._send(tool, encoded, pending, batch=True)
        assert pending.future is not None
        await pending.future
        return self._outcome(pending)

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        """Send a one-way message (progress, final answer)."""
        data, buffers = wire.encode(payload, self.host_accepts, root=kind)
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
                loop.call_soon_threadsafe(_resolve_all, [waiter])
                return
        self._slots.release()

    # -- retries and timeouts (the sweeper thread) ----------------------------------------

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(0.25)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """Resend calls unanswered past their retry time; fail calls past their deadline."""
        expired: list[_Pending] = []
        resend: list[_Pending] = []
        with self._lock:
            for call_id, pending in list(self._pending.items()):
                if now >= pending.deadline:
                    del self._pending[call_id]
                    self._release_slot()
                    expired.append(pending)
                elif now >= pending.next_send:
                    pending.retry_delay = min(pending.retry_delay * 2, _MAX_RETRY_SECONDS)
                    pending.next_send = now + pending.retry_delay
                    resend.append(pending)
        for pending in resend:
            self._resend(pending)
        for pending in expired:
            pending.reply = {"ok": False, "error": {"kind": "timeout",
                                                    "message": f"no answer from the host within {self.call_timeout} s"}}
            self._wake([pending])

    # -- receiving (on ipykernel's shell-channel thread) ----------------------------

    def deliver(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        """Hand a reply (or a batch of replies) from the host to the calls waiting for them."""
        replies = data.get("replies") if data.get("type") == "replies" else [data]
        answered: list[_Pending] = []
        with self._lock:
            for reply in replies if isinstance(replies, list) else []:
                call_id = reply.get("id") if isinstance(reply, dict) else None
                pending = self._pending.pop(call_id, None) if isinstance(call_id, str) else None
                if pending is None:
                    continue  # timed out already, or a duplicate answer
                self._release_slot()
                pending.reply, pending.buffers = reply, buffers if reply is data else []
                answered.append(pending)
        self._wake(answered)

    @staticmethod
    def _wake(answered: list[_Pending]) -> None:
        """Wake the callers: events for threads, one callback per event loop for coroutines."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] = {}
        for pending in answered:
            if pending.loop is not None and pending.future is not None:
                by_loop.setdefault(pending.loop, []).append(pending.future)
            else:
                pending.event.set()
        for loop, futures in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve_all, futures)

    @staticmethod
    def _outcome(pending: _Pending) -> Any:
        reply = pending.reply or {}
        if reply.get("ok"):
            notes: list[str] = []
            try:
                return wire.decode(reply.get("value"), pending.buffers, notes=notes, max_items=_MAX_REPLY_ITEMS)
            finally:
                for note in notes:
                    warnings.warn(f"{pending.tool}: {note}", sdk.PlainFormWarning, stacklevel=4)
        error = reply.get("error") or {}
        kind = str(error.get("kind", "error"))
        error_class = sdk.ERROR_KINDS.get(kind, sdk.ToolError)
        raise error_class(pending.tool, str(error.get("message", "the tool failed")), kind=kind,
                          details=error.get("details"))


def _resolve_all(futures: list[asyncio.Future[Any]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def install(modules: dict[str, str], call_timeout: float, host_accepts: Iterable[str] = ()) -> None:
    """Attach this kernel to its host: open the bridge and put the SDK in the user namespace.

    Run by the host (a silent cell) right after the kernel starts, and again
    by a host that attaches to a kernel another host detached from: the new
    host learns the bridge's comm from its comm_open, so a fresh client
    (and comm) replaces the old one, whose comm is closed. Variables keep
    working: the SDK's functions call whichever client is attached.
    """
    from ipykernel.kernelbase import Kernel

    kernel: Any = Kernel.instance()  # AgentKernel (an IPython kernel): has a shell; gets a bridge here
    if getattr(kernel, "shell_channel_thread", None) is None:
        raise RuntimeError("this ipykernel has no shell-channel thread: tool replies could not reach a "
                           "blocked cell (kernel-agent supports ipykernel 7.4)")
    _stamp_threads()
    previous = getattr(kernel, "bridge", None)
    if isinstance(previous, BridgeClient):
        previous.close()
    client = BridgeClient(call_timeout, host_accepts)
    kernel.bridge = client
    sdk.attach(client)
    skills_import.install()  # `from skills import NAME` asks the host (see kernel_agent.kernel.skills_import)
    kernel.shell.user_ns["tools"] = sdk.build_tools(modules)
