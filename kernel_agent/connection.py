"""The host's messaging connection to one kernel: shell, iopub and control sockets.

jupyter_client's blocking-poll clients cost several milliseconds per cell;
this connection keeps one reader task per socket and routes every message to
the request it answers (by ``parent_header.msg_id``), so a trivial cell costs
what the kernel costs. Message size is capped at the socket (zmq drops the
connection on an oversized message instead of allocating it), and message
content is only parsed when the request still wants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session as ProtocolSession

Message = dict[str, Any]
DELIMITER = b"<IDS|MSG>"
COMM_MESSAGE_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
MAX_MESSAGE_BYTES = 64 * 1024**2
# Bounded so a stalled host cannot queue without limit; large enough that
# bursts (gathered tool calls are capped at 256 in flight) are not dropped.
IOPUB_QUEUE_MESSAGES = 2048
# Messages this small (status, execute_input, short prints) are always parsed.
SMALL_MESSAGE_BYTES = 64 * 1024


@dataclass
class Request:
    """One request in flight: the messages that answer it are delivered here."""

    msg_id: str
    on_iopub: Callable[[Message], None]
    wants_content: Callable[[int], bool] = lambda size: True
    reply: asyncio.Future[Message] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class KernelConnection:
    """Sockets to one kernel and the tasks that read them."""

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
        self.shell = self._socket(zmq.DEALER, "shell_port")
        self.control = self._socket(zmq.DEALER, "control_port")
        self.iopub = self._socket(zmq.SUB, "iopub_port")
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")

    def _socket(self, kind: int, port_key: str) -> zmq.asyncio.Socket:
        socket = self._context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.RCVHWM, IOPUB_QUEUE_MESSAGES if kind == zmq.SUB else 1000)
        transport, ip, port = self._info["transport"], self._info["ip"], self._info[port_key]
        socket.connect(f"ipc://{ip}-{port}" if transport == "ipc" else f"tcp://{ip}:{port}")
        return socket

    def start(self) -> None:
        """Start reading the sockets (on the running event loop)."""
        self._tasks = [
            asyncio.create_task(self._read(self.shell, self._on_reply)),
            asyncio.create_task(self._read(self.control, self._on_reply)),
            asyncio.create_task(self._read(self.iopub, self._on_iopub)),
        ]

    async def close(self) -> None:
        """Stop the readers and close the sockets."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for socket in (self.shell, self.control, self.iopub):
            socket.close(linger=0)
        for request in self._requests.values():
            if not request.reply.done():
                request.reply.cancel()
        self._requests.clear()

    def send(
        self,
        socket: zmq.asyncio.Socket,
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
        self.protocol.send(socket, message)
        return request

    def post(self, socket: zmq.asyncio.Socket, msg_type: str, content: dict[str, Any],
             buffers: list[bytes] | None = None) -> None:
        """Send a message that gets no reply (comm messages to the kernel)."""
        self.protocol.send(socket, msg_type, content, buffers=buffers or None)

    def forget(self, request: Request) -> None:
        """Stop routing messages to a finished request."""
        self._requests.pop(request.msg_id, None)

    async def _read(self, socket: zmq.asyncio.Socket, handle: Callable[[list[Any]], None]) -> None:
        while True:
            frames = await socket.recv_multipart(copy=False)
            try:
                handle(frames)
            except Exception:  # a malformed or unsigned message is dropped, never fatal
                continue

    def _unpack(self, frames: list[Any]) -> tuple[Message, Request | None]:
        """Check the signature and parse the headers; the content stays raw until wanted.

        jupyter_client's deserialize also parses every header date with
        dateutil, which costs more than the rest of a trivial cell's host work.
        """
        raw = [frame.buffer if hasattr(frame, "buffer") else frame for frame in frames]
        delimiter = next(i for i, frame in enumerate(raw) if bytes(frame) == DELIMITER)
        signature, header, parent, metadata, content, *buffers = raw[delimiter + 1 :]
        if self._signer is not None:
            signer = self._signer.copy()
            for part in (header, parent, metadata, content):
                signer.update(part)
            if not hmac.compare_digest(signer.hexdigest().encode(), bytes(signature)):
                raise ValueError("invalid message signature")
        message: Message = {
            "header": json.loads(bytes(header)),
            "parent_header": json.loads(bytes(parent)),
            "metadata": json.loads(bytes(metadata)),
            "content": content,
            "buffers": buffers,
        }
        message["msg_type"] = message["header"].get("msg_type")
        parent_id = message["parent_header"].get("msg_id") if isinstance(message["parent_header"], dict) else None
        return message, self._requests.get(parent_id) if parent_id else None

    @staticmethod
    def _parse_content(message: Message) -> None:
        message["content"] = json.loads(bytes(message["content"]))

    def _on_reply(self, frames: list[Any]) -> None:
        message, request = self._unpack(frames)
        if request is not None and not request.reply.done():
            self._parse_content(message)
            request.reply.set_result(message)

    def _on_iopub(self, frames: list[Any]) -> None:
        message, request = self._unpack(frames)
        size = len(message["content"])
        if message["msg_type"] in COMM_MESSAGE_TYPES and self.on_comm is not None:
            self._parse_content(message)
            message["size"] = size + sum(len(b) for b in message["buffers"])
            self.on_comm(message)
            return
        if request is None:
            if size <= SMALL_MESSAGE_BYTES:
                self._parse_content(message)
                self.unrouted_iopub(message)
            return
        if size <= SMALL_MESSAGE_BYTES or request.wants_content(size):
            self._parse_content(message)
        else:
            message["content"] = {"__dropped_bytes__": size}
        msg_type = message["header"]["msg_type"]
        if msg_type == "status" and message["content"].get("execution_state") == "idle":
            request.idle.set()
        else:
            request.on_iopub(message)
