"""The host's messaging connection to one kernel: shell, iopub and control sockets.

jupyter_client's blocking-poll clients cost several milliseconds per cell;
this connection keeps one reader task per socket and routes every message to
the request it answers (by ``parent_header.msg_id``), so a trivial cell costs
what the kernel costs.

The kernel is untrusted (it holds the message key, so a valid signature proves
nothing), and everything it sends is handled with bounded cost to the host:

- **Size.** zmq's ``MAXMSGSIZE`` caps every frame before it is allocated:
  64 MiB on shell and control, 40 MiB on iopub (a tool-call request may be up
  to 32 MiB, ``max_request_bytes``, plus its envelope).
- **Host memory.** libzmq queues at most ``IOPUB_QUEUE_MESSAGES`` (8) iopub
  messages for the host, plus the one it is decoding; the reader takes what is
  queued in batches of at most 1024 messages or 4 MiB (or one message over
  that). So one session's iopub holds at most about (8 + 1) x 40 MiB queued,
  44 MiB batched and one 40 MiB message being parsed (about twice that while
  parsing): roughly 0.5 GiB, reached only by a kernel that sends nothing but
  40 MiB comm messages (the one kind always parsed) faster than the host can
  parse them. Output the cell will not keep is dropped as soon as its frame
  lengths are known, so large output floods cost far less (measured: the
  host's RSS peaked 33 MiB up while a kernel sent eight 35 MB stream
  messages; 300 MiB for eight 35 MB comm messages). A full queue does not lose
  messages by itself: libzmq stops reading the socket and the kernel's own
  (sandboxed, memory-limited) PUB queue of 1000 messages takes the backlog;
  messages are dropped (silently: PUB/SUB has no acknowledgements) only when
  that overflows too, and the tool bridge resends lost calls (measured: 5000 gathered calls and 20,000 flushed
  prints complete with this queue; with a queue of 2, prints were lost).
- **Host time.** Routing needs only the small header and parent frames
  (capped at 64 KiB). Output the cell's collector will not keep (over its
  cap) is dropped by its frame lengths, never HMAC-verified or parsed; comm
  messages (the tool bridge) always are. A message over 1 MiB is verified and
  parsed in a worker thread (hashing releases the GIL; JSON parsing does not,
  so a 32 MiB tool request can still hold the loop for a second or two), and
  every reader yields to the event loop after each message, so a burst of
  large messages delays the host's other tasks by at most one message.
- **A cut connection is not silent.** zmq drops a connection that sends a frame over
  ``MAXMSGSIZE`` (an oversized or malformed frame is a protocol error) and
  libzmq never reconnects after that; a monitor on the iopub socket notices
  (a disconnect that libzmq does not follow with its own reconnect attempt,
  as it does when the kernel goes away), reconnects, and tells every request
  in flight that output was lost (:data:`~kernel_agent.runtime.results.OUTPUT_LOST`),
  which its cell reports with a marker and in ``dropped_output_bytes``.
- Malformed or unsigned messages are dropped, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session as ProtocolSession
from zmq.utils.monitor import parse_monitor_message

from kernel_agent.runtime.channels import (
    COMM_MESSAGE_TYPES,
    Channel,
    Message,
    Request,
    delivered,
    parse_kernel_json,
)
from kernel_agent.runtime.results import OUTPUT_LOST

DELIMITER = b"<IDS|MSG>"
READ_POLL_MS = 500
#: Largest frame accepted on shell and control (execute replies carry tracebacks).
MAX_MESSAGE_BYTES = 64 * 1024**2
#: Largest frame accepted on iopub: a 32 MiB tool-call request plus its envelope.
MAX_IOPUB_MESSAGE_BYTES = 40 * 1024**2
#: Messages queued on the host's iopub socket before libzmq stops reading it (see the module docstring).
IOPUB_QUEUE_MESSAGES = 8
# A reader takes up to this much that is already queued at once (see KernelConnection._read).
READ_BATCH_MESSAGES = 1024
READ_BATCH_BYTES = 4 * 1024**2
# Messages this small (status, execute_input, short prints) are always parsed.
SMALL_MESSAGE_BYTES = 64 * 1024
# Header, parent header and metadata frames are small; larger ones are malformed and dropped unparsed.
MAX_HEADER_BYTES = 64 * 1024
# Verifying and parsing a message larger than this happens in a worker thread.
THREAD_MESSAGE_BYTES = 1024**2
# After a disconnect, how long to wait for libzmq's own reconnect attempt before deciding that
# it gave the connection up (a protocol error: an oversized or malformed frame). libzmq announces
# the attempt right after the disconnect, from its I/O thread.
_RECONNECT_NOTICE_SECONDS = 0.25
_CUT_CONNECTION = (f"the kernel sent a message over the host's {MAX_IOPUB_MESSAGE_BYTES // 1024**2} MiB limit, which "
                   "cut the output connection; it was reconnected, but output sent meanwhile is missing")


@dataclass
class _Envelope:
    """A received message with its routing headers parsed; the rest still raw and unverified."""

    signature: memoryview
    header_frame: memoryview
    parent_frame: memoryview
    metadata_frame: memoryview
    content_frame: memoryview
    buffers: list[memoryview]
    header: dict[str, Any]
    parent_header: dict[str, Any]

    @property
    def msg_type(self) -> Any:
        return self.header.get("msg_type")

    @property
    def size(self) -> int:
        return len(self.content_frame) + sum(len(b) for b in self.buffers)


def _frames_size(frames: list[Any]) -> int:
    return sum(len(frame) for frame in frames)


def _verify_and_parse(signer: Any, envelope: _Envelope) -> tuple[Any, Any]:
    """Check the signature, then parse metadata and content (may run in a worker thread)."""
    if signer is not None:
        for part in (envelope.header_frame, envelope.parent_frame, envelope.metadata_frame, envelope.content_frame):
            signer.update(part)
        if not hmac.compare_digest(signer.hexdigest().encode(), bytes(envelope.signature)):
            raise ValueError("invalid message signature")
    return _parse_json(envelope.metadata_frame), _parse_json(envelope.content_frame)


def _parse_json(frame: memoryview) -> Any:
    """Parse a frame as jupyter_client does, within the item budget (see :func:`parse_kernel_json`)."""
    return parse_kernel_json(frame)


class KernelConnection:
    """Sockets to one kernel and the tasks that read them (the zmq :class:`~kernel_agent.runtime.channels.Channels`)."""

    def __init__(self, connection_info: dict[str, Any], context: zmq.asyncio.Context | None = None) -> None:
        self._info = connection_info
        self._context = context or zmq.asyncio.Context.instance()
        self.protocol = ProtocolSession(
            key=connection_info["key"].encode() if isinstance(connection_info["key"], str) else connection_info["key"],
            signature_scheme=connection_info.get("signature_scheme", "hmac-sha256"),
            username="kernel-agent",
        )
        self._signer = self.protocol.auth  # an hmac object, or None without a key
        self._requests: dict[str, Request] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.unrouted_iopub: Callable[[Message], None] = lambda msg: None
        # Comm traffic (the tool bridge) goes here whatever its parent.
        self.on_comm: Callable[[Message], None] | None = None
        #: How often the iopub connection was lost to a protocol error and reconnected.
        self.iopub_reconnects = 0
        # Requests in flight when iopub output was lost, until a probe shows that the loss is over.
        self._lost_requests: dict[str, Request] = {}
        self._probes: set[str] = set()  # msg_ids of the probes sent after a loss, until they are seen
        self.shell = self._socket(zmq.DEALER, "shell_port")
        self.control = self._socket(zmq.DEALER, "control_port")
        self.iopub = self._socket(zmq.SUB, "iopub_port", connect=False)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self._iopub_monitor = self.iopub.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED)
        self.iopub.connect(self._url("iopub_port"))
        self._sockets: dict[Channel, zmq.asyncio.Socket] = {"shell": self.shell, "control": self.control}

    def _url(self, port_key: str) -> str:
        transport, ip, port = self._info["transport"], self._info["ip"], self._info[port_key]
        return f"ipc://{ip}-{port}" if transport == "ipc" else f"tcp://{ip}:{port}"

    def _socket(self, kind: int, port_key: str, *, connect: bool = True) -> zmq.asyncio.Socket:
        socket = self._context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        if kind == zmq.SUB:
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_IOPUB_MESSAGE_BYTES)
            socket.setsockopt(zmq.RCVHWM, IOPUB_QUEUE_MESSAGES)
        else:
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            socket.setsockopt(zmq.RCVHWM, 1000)
        if connect:
            socket.connect(self._url(port_key))
        return socket

    def start(self) -> None:
        """Start reading the sockets (on the running event loop)."""
        self._tasks = [
            asyncio.create_task(self._read(self.shell, self._on_reply)),
            asyncio.create_task(self._read(self.control, self._on_reply)),
            asyncio.create_task(self._read(self.iopub, self._on_iopub)),
            asyncio.create_task(self._watch_iopub()),
        ]

    async def close(self) -> None:
        """Stop the readers and close the sockets."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(zmq.ZMQError):
            self.iopub.disable_monitor()
        self._iopub_monitor.close(linger=0)
        for socket in (self.shell, self.control, self.iopub):
            socket.close(linger=0)
        for request in self._requests.values():
            if not request.reply.done():
                request.reply.cancel()
        self._requests.clear()

    def send(
        self,
        channel: Channel,
        msg_type: str,
        content: dict[str, Any],
        *,
        on_iopub: Callable[[Message], None] = lambda msg: None,
        wants_content: Callable[[int], bool] = lambda size: True,
    ) -> Request:
        """Send a request and return the handle its replies arrive on."""
        message = self.protocol.msg(msg_type, content)
        request = Request(message["header"]["msg_id"], on_iopub, wants_content)
        self._requests[request.msg_id] = request
        self.protocol.send(self._sockets[channel], message)
        return request

    def post(self, channel: Channel, msg_type: str, content: dict[str, Any],
             buffers: list[bytes] | None = None) -> None:
        """Send a message that gets no reply (comm messages to the kernel)."""
        frames: list[bytes | memoryview[bytes]] | None = list(buffers) if buffers else None
        self.protocol.send(self._sockets[channel], msg_type, content, buffers=frames)

    def forget(self, request: Request) -> None:
        """Stop routing messages to a finished request."""
        self._requests.pop(request.msg_id, None)

    # -- reading -------------------------------------------------------------

    async def _read(self, socket: zmq.asyncio.Socket, handle: Callable[[list[Any]], Awaitable[None]]) -> None:
        batch: deque[list[Any]] = deque()
        while True:
            # Readiness is edge-triggered, and these sockets are also written from this loop: a
            # missed wake-up would strand a message (the class of bug of ipykernel #1554). So the
            # wait is bounded, and a non-blocking read follows it either way.
            # pyzmq types the async socket's poll and recv as the base class's (no flags, a plain Awaitable).
            await socket.poll(timeout=READ_POLL_MS, flags=zmq.POLLIN)  # type: ignore[call-arg]
            try:
                batch.append(socket.recv_multipart(zmq.NOBLOCK, copy=False).result())  # type: ignore[attr-defined]
            except zmq.Again:
                continue
            # Take what is already queued without waiting (much cheaper than a waiting receive, and it
            # keeps libzmq's small queue from filling during bursts), up to a bounded batch.
            held = _frames_size(batch[0])
            while len(batch) < READ_BATCH_MESSAGES and held < READ_BATCH_BYTES:
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK, copy=False).result()  # type: ignore[attr-defined]
                except zmq.Again:
                    break
                batch.append(frames)
                held += _frames_size(frames)
            while batch:
                frames = batch.popleft()
                try:
                    await handle(frames)
                except Exception:  # noqa: BLE001 - a malformed or unsigned message is dropped, never fatal
                    pass
                del frames
                # Awaiting a receive that is already complete does not yield: without this, queued
                # messages would be handled in one go while every other task on the loop waits.
                await asyncio.sleep(0)

    def _envelope(self, frames: list[Any]) -> tuple[_Envelope, Request | None]:
        """Split a message into its frames and parse only the (small, unverified) routing headers.

        jupyter_client's deserialize would verify and parse everything (and
        parse every header date with dateutil, which costs more than the rest
        of a trivial cell's host work).
        """
        raw = [frame.buffer if hasattr(frame, "buffer") else memoryview(frame) for frame in frames]
        delimiter = next(i for i, part in enumerate(raw) if len(part) == len(DELIMITER) and part == DELIMITER)
        signature, header, parent, metadata, content, *buffers = raw[delimiter + 1 :]
        if max(len(header), len(parent), len(metadata), len(signature)) > MAX_HEADER_BYTES:
            raise ValueError("oversized message header")
        envelope = _Envelope(signature, header, parent, metadata, content, buffers,
                             _parse_json(header), _parse_json(parent))
        if not isinstance(envelope.header, dict) or not isinstance(envelope.parent_header, dict):
            raise ValueError("malformed message header")
        parent_id = envelope.parent_header.get("msg_id")
        return envelope, self._requests.get(parent_id) if isinstance(parent_id, str) else None

    async def _open(self, envelope: _Envelope) -> Message:
        """Verify the signature and parse the content: in a worker thread when the message is large."""
        signer = self._signer.copy() if self._signer is not None else None
        if len(envelope.content_frame) > THREAD_MESSAGE_BYTES:
            metadata, content = await asyncio.to_thread(_verify_and_parse, signer, envelope)
        else:
            metadata, content = _verify_and_parse(signer, envelope)
        return delivered(envelope.header, envelope.parent_header, metadata, content, envelope.buffers, envelope.size)

    async def _on_reply(self, frames: list[Any]) -> None:
        envelope, request = self._envelope(frames)
        if request is None or request.reply.done():
            return
        message = await self._open(envelope)
        if not request.reply.done():
            request.reply.set_result(message)

    async def _on_iopub(self, frames: list[Any]) -> None:
        envelope, request = self._envelope(frames)
        msg_type, size = envelope.msg_type, envelope.size
        if msg_type in COMM_MESSAGE_TYPES and self.on_comm is not None:
            # The tool bridge: always verified and parsed (the bridge caps requests itself).
            self.on_comm(await self._open(envelope))
            return
        if size <= SMALL_MESSAGE_BYTES:
            message = await self._open(envelope)
            if request is None:
                if msg_type == "iopub_welcome" and self._lost_requests:
                    self._probe_after_loss()
                self.unrouted_iopub(message)
            elif msg_type == "status" and isinstance(message["content"], dict) \
                    and message["content"].get("execution_state") == "idle":
                request.idle.set()
            else:
                request.on_iopub(message)
            return
        # A large message: only output for a request that still has room is worth verifying and
        # parsing. Everything else is dropped by its frame lengths (wants_content counts it).
        if request is not None and msg_type != "status" and request.wants_content(size):
            request.on_iopub(await self._open(envelope))

    # -- watching the iopub connection ----------------------------------------

    async def _watch_iopub(self) -> None:
        """Reconnect iopub when libzmq gives it up, and tell the requests in flight that output was lost.

        libzmq drops a connection that sends a frame over ``MAXMSGSIZE`` (or
        a malformed one) as a protocol error and, unlike after the peer went
        away, never reconnects: the session would silently get no output
        from then on. The two cases are told apart by libzmq's own reconnect
        attempt, which it announces right after an ordinary disconnect.
        """
        monitor = self._iopub_monitor
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] != zmq.EVENT_DISCONNECTED or await self._reconnect_announced(monitor):
                continue
            self.iopub_reconnects += 1
            url = self._url("iopub_port")
            with contextlib.suppress(zmq.ZMQError):
                self.iopub.disconnect(url)
            self.iopub.connect(url)
            self._output_lost()

    def _probe_after_loss(self) -> None:
        """The new subscription is live (the kernel welcomed it): find out when lost output is over.

        A request whose idle status was lost would make its cell wait out
        the session's settle time. The kernel handles shell requests in
        order, so once a probe sent now is seen on iopub, everything the
        kernel published for the earlier requests has arrived or is lost.
        """
        waiting, self._lost_requests = list(self._lost_requests.values()), {}

        def settled(message: Message) -> None:
            if message.get("msg_type") != "status":
                return  # e.g. a note that output was lost again: the probe's own status is what counts
            for request in [*waiting, probe]:
                request.idle.set()
                if request.msg_id in self._probes:  # this probe, or an earlier one whose status was lost
                    self._probes.discard(request.msg_id)
                    self.forget(request)

        probe = self.send("shell", "kernel_info_request", {}, on_iopub=settled)
        self._probes.add(probe.msg_id)

    @staticmethod
    async def _reconnect_announced(monitor: zmq.asyncio.Socket) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _RECONNECT_NOTICE_SECONDS
        while (remaining := deadline - loop.time()) > 0:
            if not await monitor.poll(remaining * 1000, zmq.POLLIN):  # type: ignore[call-arg]
                return False
            if parse_monitor_message(await monitor.recv_multipart())["event"] == zmq.EVENT_CONNECT_RETRIED:
                return True
        return False

    def _output_lost(self) -> None:
        """Tell every request in flight that iopub messages addressed to it may have been lost."""
        for request in list(self._requests.values()):
            self._lost_requests[request.msg_id] = request
            with contextlib.suppress(Exception):
                request.on_iopub({
                    "header": {"msg_type": OUTPUT_LOST},
                    "parent_header": {"msg_id": request.msg_id},
                    "metadata": {},
                    "content": {"min_bytes": MAX_IOPUB_MESSAGE_BYTES + 1, "reason": _CUT_CONNECTION},
                    "buffers": [],
                    "msg_type": OUTPUT_LOST,
                })
