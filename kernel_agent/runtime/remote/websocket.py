"""The channels of a kernel on a Jupyter server, over its websocket (the remote :class:`Channels`).

One websocket, ``/api/kernels/{id}/channels?session_id=...``, carries
shell, control and iopub; the server relays them to the kernel's zmq
sockets, and signs what it relays (no HMAC travels here). Jupyter Server's
``v1.kernel.websocket.jupyter.org`` subprotocol is asked for and used when
the server accepts it (Jupyter Server 2, Kernel Gateway 3): binary buffers
travel both ways and routing reads only the small header parts. Otherwise
the legacy JSON protocol is spoken (see :mod:`.frames`).

The kernel is untrusted, and so is everything relayed from it. The
protections of the zmq connection (:mod:`kernel_agent.runtime.connection`)
hold here too:

- **Size.** ``max_size`` caps a message before it is held: 40 MiB (the iopub
  cap of the zmq connection, which admits a 32 MiB tool request) plus 1 MiB
  for the envelope. A larger one makes the websockets library close the
  connection without reading it; the connection is then reopened under the
  same session id (Jupyter Server keeps what arrives meanwhile for a
  session that had a single connection and replays it) and every request in
  flight is told its output may be lost
  (:data:`~kernel_agent.runtime.results.OUTPUT_LOST`). The other way,
  Jupyter Server refuses a message over its ``websocket_max_message_size``
  (10 MiB by default) by closing the websocket: the message is dropped
  (resending it would cut every new websocket too), the websocket reopened,
  and the kernel's bridge resends a call whose answer never came.
- **Host memory.** At most ``QUEUE_FRAMES`` (4) received frames wait for
  the reader (then the library stops reading the socket, and the server
  holds the backlog), plus the message being handled: about 4 x 41 MiB
  queued and one 41 MiB message being parsed (twice that while parsing),
  about 0.25 GiB, reached only by a kernel sending nothing but 40 MiB comm
  messages. Compression is not negotiated: inflating happens on the event
  loop, and a small compressed frame could inflate to the whole cap.
- **Host time.** Output the request will not keep (over its cap) is
  dropped by its length, never parsed (v1); comm messages always are. A
  message over 1 MiB is parsed in a worker thread, and the reader yields to
  the event loop after every message. A legacy frame must be parsed whole
  before it can be routed (in a worker thread when large): the reason v1 is
  preferred.
- **Malformed messages are dropped, never fatal.**
- **Death is noticed.** The server tells its websocket clients when the
  kernel died (an iopub ``status`` of ``restarting`` or ``dead`` with no
  parent); a ``shutdown_reply`` on iopub that answers nobody here means
  someone else shut the kernel down or restarted it (a REST call, the idle
  culler); a closed websocket means the server or the network went away.
  Each ends the channels with a precise reason (``ended``, ``end_reason``).

Round trips: Jupyter Server leaves Nagle's algorithm on for these
websockets, so the host acknowledges every frame at once (see
``_ack_quickly``); without that a cell cost 40 ms more than over zmq.

The token travels in the handshake's ``Authorization`` header, and the
websockets library's debug log (which prints handshake headers) is never
enabled for these connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Close, CloseCode
from websockets.typing import Subprotocol

from kernel_agent.errors import KernelStartError
from kernel_agent.runtime.channels import COMM_MESSAGE_TYPES, Channel, Message, Request
from kernel_agent.runtime.connection import MAX_IOPUB_MESSAGE_BYTES, SMALL_MESSAGE_BYTES, THREAD_MESSAGE_BYTES
from kernel_agent.runtime.remote import frames
from kernel_agent.runtime.remote.errors import JupyterServerError, KernelNotFoundError, ServerUnreachableError
from kernel_agent.runtime.remote.rest import Rest
from kernel_agent.runtime.results import OUTPUT_LOST

#: Largest websocket message accepted: the zmq connection's iopub cap plus room for the envelope.
MAX_WS_MESSAGE_BYTES = MAX_IOPUB_MESSAGE_BYTES + 1024**2
#: Received frames the websockets library holds before it stops reading the socket.
QUEUE_FRAMES = 4
#: An iopub status from the server with one of these states means the kernel (as this host knew it) is gone.
DEATH_STATES = {
    "restarting": "it died and the server restarted it (killed for exceeding a memory limit, crashed or exited); "
                  "its state is lost",
    "autorestarting": "it died and the server restarted it (killed for exceeding a memory limit, crashed or "
                      "exited); its state is lost",
    "dead": "it died and the server could not restart it",
}
_SHUT_DOWN = "it was shut down on the server by someone else (a REST shutdown, or the server's idle culling)"
_RESTARTED = "it was restarted on the server by someone else (a REST restart); its state is lost"
_CUT = (f"the kernel sent a message over the host's {MAX_IOPUB_MESSAGE_BYTES // 1024**2} MiB limit; it was dropped "
        "unread and the websocket reopened, but output sent meanwhile may be missing")
_REFUSED = ("the Jupyter server refused a message from the host as too big (its websocket_max_message_size, "
            "10 MiB unless configured) and closed the websocket; it was reopened, but output sent meanwhile may be "
            "missing")


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
logger = logging.getLogger(__name__)


def _closed_with(close: Close | None, code: int) -> bool:
    return close is not None and close.code == code



def _ack_quickly(ws: ClientConnection) -> None:
    """Acknowledge what the server sends at once (Linux ``TCP_QUICKACK``; Linux turns it off again, hence per message).

    Jupyter Server leaves Nagle's algorithm on for its websockets, so its
    second small write (a reply after a status) waits for the ACK of the
    first, and a client that delays its ACKs (40 ms on Linux) adds that to
    every round trip. Measured through Jupyter Server on 127.0.0.1: a
    kernel_info round trip 48 ms -> 4 ms, a trivial cell 52 ms -> 9-14 ms
    (a local kernel over zmq: 8 ms).
    """
    if _QUICKACK is None:
        return
    sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


class _QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """The websockets library's logger with debug off: its debug log prints handshake headers (the token)."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_LOGGER = _QuietLogger(logging.getLogger("websockets.client"), {})


class WebSocketChannels:
    """Requests to a kernel on a Jupyter server and what answers them, over one websocket."""

    def __init__(self, rest: Rest, kernel_id: str, *, open_timeout: float) -> None:
        self._rest = rest
        self.kernel_id = kernel_id
        self._open_timeout = open_timeout
        # The server's zmq identity for this client; kept when a cut connection is reopened, so that the
        # server replays what it kept meanwhile.
        self.session_id = uuid.uuid4().hex
        self._url = (rest.base_url.replace("http", "ws", 1)
                     + f"api/kernels/{kernel_id}/channels?session_id={self.session_id}")
        self._ws: ClientConnection | None = None
        self._writable = asyncio.Event()
        self._outbox: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._requests: dict[str, Request] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.unrouted_iopub: Callable[[Message], None] = lambda message: None
        self.on_comm: Callable[[Message], None] | None = None
        #: "v1" (the binary subprotocol) or "legacy" (JSON), as the server chose.
        self.protocol = ""
        #: How often the websocket was reopened after an oversized message cut it.
        self.reconnects = 0
        #: Messages from the host the server refused as too big (dropped; see ``_write``).
        self.refused_sends = 0
        #: Set once the kernel is known gone or the websocket closed for good; ``end_reason`` says why.
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        #: Whether the server said it restarted the kernel after it died (it runs fresh, under the same id).
        self.server_restarted = False

    async def open(self) -> None:
        """Connect and start reading.

        Raises the named error of a refused or failed handshake, or
        :class:`~kernel_agent.errors.KernelStartError` when the server does not
        open the websocket in time (it waits for the kernel to answer first).
        """
        self._ws = await self._connect()
        self.protocol = "v1" if self._ws.subprotocol == frames.V1_PROTOCOL else "legacy"
        self._writable.set()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]

    async def _connect(self) -> ClientConnection:
        where = f"the websocket of kernel {self.kernel_id} on {self._rest.url}"
        try:
            return await connect(
                self._url, additional_headers=self._rest.auth_headers,
                subprotocols=[Subprotocol(frames.V1_PROTOCOL)], compression=None,
                max_size=MAX_WS_MESSAGE_BYTES, max_queue=QUEUE_FRAMES, open_timeout=self._open_timeout,
                ping_interval=20, ping_timeout=40, close_timeout=5, logger=_LOGGER)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 404:
                raise KernelNotFoundError(f"the Jupyter server at {self._rest.url} has no kernel "
                                          f"{self.kernel_id}") from None
            raise await self._rest.status_error(status, bytes(exc.response.body or b""), "the kernel's websocket") \
                from None
        except TimeoutError:
            # Jupyter Server opens a kernel's websocket only once the kernel answers a kernel_info request.
            raise KernelStartError(f"{where} did not open within {self._open_timeout:.3g} s (the server opens it "
                                   "once the kernel answers)") from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            reason = self._rest.redact(str(exc) or type(exc).__name__)
            raise ServerUnreachableError(f"cannot open {where}: {reason}") from None

    # -- the Channels protocol -------------------------------------------------

    def send(
        self,
        channel: Channel,
        msg_type: str,
        content: dict[str, Any],
        *,
        on_iopub: Callable[[Message], None] = lambda message: None,
        wants_content: Callable[[int], bool] = lambda size: True,
    ) -> Request:
        """Send a request and return the handle its replies arrive on."""
        header = frames.new_header(msg_type, self.session_id)
        request = Request(header["msg_id"], on_iopub, wants_content)
        self._requests[request.msg_id] = request
        self._enqueue(channel, header, content, None)
        return request

    def post(self, channel: Channel, msg_type: str, content: dict[str, Any],
             buffers: list[bytes] | None = None) -> None:
        """Send a message that gets no reply (comm messages to the kernel)."""
        self._enqueue(channel, frames.new_header(msg_type, self.session_id), content, buffers)

    def forget(self, request: Request) -> None:
        """Stop routing messages to a finished request."""
        self._requests.pop(request.msg_id, None)

    async def close(self) -> None:
        """Stop reading and writing and close the websocket (idempotent); the kernel is left as it is."""
        self._end("the host closed its connection")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        for request in self._requests.values():
            if not request.reply.done():
                request.reply.cancel()
        self._requests.clear()

    # -- writing ---------------------------------------------------------------

    def _enqueue(self, channel: str, header: dict[str, Any], content: dict[str, Any],
                 buffers: list[bytes] | None) -> None:
        if self.ended.is_set() and not self._tasks:
            return  # closed: nothing will read the outbox
        encode = frames.encode_v1 if self.protocol == "v1" else frames.encode_legacy
        self._outbox.put_nowait(encode(channel, header, content, buffers))

    async def _write(self) -> None:
        """Send queued frames in order; while a cut websocket is reopened they wait, and are sent on the new one."""
        while True:
            frame = await self._outbox.get()
            while True:
                await self._writable.wait()
                ws = self._ws
                if ws is None:
                    return
                try:
                    await ws.send(frame)
                    break
                except ConnectionClosed as exc:
                    if ws is self._ws:
                        self._writable.clear()  # the reader reopens the websocket, or ends the channels
                    if _closed_with(exc.rcvd, CloseCode.MESSAGE_TOO_BIG) and len(frame) > SMALL_MESSAGE_BYTES:
                        # The server refused this frame: sending it again would only cut the next websocket
                        # too. The kernel's bridge resends a call whose answer never came, and gets an error.
                        self.refused_sends += 1
                        logger.warning("the Jupyter server at %s refused a %d-byte message to kernel %s as too big; "
                                       "dropped", self._rest.url, len(frame), self.kernel_id)
                        break

    # -- reading ---------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            ws = self._ws
            if ws is None:
                return
            try:
                frame = await ws.recv()
                _ack_quickly(ws)
            except ConnectionClosed as exc:
                self._writable.clear()
                cut = _CUT if _closed_with(exc.sent, CloseCode.MESSAGE_TOO_BIG) else \
                    _REFUSED if _closed_with(exc.rcvd, CloseCode.MESSAGE_TOO_BIG) else None
                if cut is not None and await self._reopen(cut):
                    continue
                self._end(self._closed_reason(exc))
                return
            try:
                await self._handle(frame)
            except Exception:  # noqa: BLE001 - a malformed message is dropped, never fatal
                pass
            del frame
            # A frame already queued is returned without yielding: without this, a burst would be
            # handled in one go while every other task on the loop waits.
            await asyncio.sleep(0)

    def _closed_reason(self, exc: ConnectionClosed) -> str:
        close = exc.rcvd
        if close is None:
            return "the connection to the Jupyter server was lost (the websocket closed without a close frame)"
        said = f": {self._rest.redact(close.reason)[:200]}" if close.reason else ""
        return f"the Jupyter server closed the kernel's websocket (code {close.code}{said})"

    async def _reopen(self, cut: str) -> bool:
        """Reconnect under the same session id after a cut, and tell the requests in flight; False if it failed."""
        self.reconnects += 1
        try:
            self._ws = await self._connect()
        except (JupyterServerError, KernelStartError) as exc:
            self._end(f"its websocket was cut by an oversized message and could not be reopened: {exc}")
            return False
        self._writable.set()
        self._output_lost(cut)
        return True

    def _end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.ended.set()

    async def _handle(self, frame: bytes | str) -> None:
        if self.protocol == "v1":
            if not isinstance(frame, bytes):
                return
            envelope = frames.decode_v1(frame)
        elif len(frame) > THREAD_MESSAGE_BYTES:
            envelope = await asyncio.to_thread(frames.decode_legacy, frame)
        else:
            envelope = frames.decode_legacy(frame)
        parent_id = envelope.parent_header.get("msg_id")
        request = self._requests.get(parent_id) if isinstance(parent_id, str) else None
        if envelope.channel == "iopub":
            await self._on_iopub(envelope, request)
        elif envelope.channel in ("shell", "control") and request is not None and not request.reply.done():
            message = await self._open(envelope)
            if not request.reply.done():
                request.reply.set_result(message)

    async def _open(self, envelope: frames.Envelope) -> Message:
        """Parse metadata and content: in a worker thread when the message is large."""
        if envelope.content_bytes > THREAD_MESSAGE_BYTES and not envelope.parsed:
            return await asyncio.to_thread(frames.open_envelope, envelope)
        return frames.open_envelope(envelope)

    async def _on_iopub(self, envelope: frames.Envelope, request: Request | None) -> None:
        msg_type, size = envelope.msg_type, envelope.size
        if msg_type in COMM_MESSAGE_TYPES and self.on_comm is not None:
            # The tool bridge: always parsed (the bridge caps requests itself).
            self.on_comm(await self._open(envelope))
            return
        if size <= SMALL_MESSAGE_BYTES:
            message = await self._open(envelope)
            content = message["content"]
            if request is None:
                self._notice_death(msg_type, content)
                self.unrouted_iopub(message)
            elif msg_type == "status" and isinstance(content, dict) and content.get("execution_state") == "idle":
                request.idle.set()
            else:
                request.on_iopub(message)
            return
        # A large message: only output for a request that still has room is worth parsing. Everything
        # else is dropped by its length (wants_content counts it).
        if request is not None and msg_type != "status" and request.wants_content(size):
            request.on_iopub(await self._open(envelope))

    def _notice_death(self, msg_type: Any, content: Any) -> None:
        """A message that answers nobody here may say the kernel is gone (see the module docstring)."""
        if not isinstance(content, dict):
            return
        if msg_type == "status" and content.get("execution_state") in DEATH_STATES:
            self.server_restarted = self.server_restarted or content["execution_state"] != "dead"
            self._end(DEATH_STATES[content["execution_state"]])
        elif msg_type == "shutdown_reply":
            self._end(_RESTARTED if content.get("restart") is True else _SHUT_DOWN)

    def _output_lost(self, reason: str) -> None:
        """Tell every request in flight that messages addressed to it may have been lost."""
        for request in list(self._requests.values()):
            with contextlib.suppress(Exception):
                request.on_iopub({
                    "header": {"msg_type": OUTPUT_LOST},
                    "parent_header": {"msg_id": request.msg_id},
                    "metadata": {},
                    "content": {"min_bytes": MAX_WS_MESSAGE_BYTES + 1 if reason == _CUT else 0, "reason": reason},
                    "buffers": [],
                    "msg_type": OUTPUT_LOST,
                })
