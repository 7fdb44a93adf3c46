"""The message channels to one kernel, however they are carried: the :class:`Channels` seam.

A local kernel is reached over zmq sockets
(:class:`~kernel_agent.runtime.connection.KernelConnection`); a kernel behind
Jupyter Server, Kernel Gateway or Enterprise Gateway over one websocket
(:class:`~kernel_agent.runtime.remote.websocket.WebSocketChannels`). Everything
above this layer (cells, the tool bridge, the SDK install, warm-up) sends
requests on a named channel and receives what answers them through a
:class:`Request`, so it never knows which.

Whatever carries them, channels treat the kernel as untrusted: messages are
size-capped before they are held, malformed ones are dropped, and output a
request will not keep is dropped unparsed where the carrier allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Message = dict[str, Any]
#: The channels a host sends on: code and comm replies on shell, interrupts on control.
Channel = Literal["shell", "control"]
COMM_MESSAGE_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


@dataclass
class Request:
    """One request in flight: the messages that answer it are delivered here."""

    msg_id: str
    on_iopub: Callable[[Message], None]
    wants_content: Callable[[int], bool] = lambda size: True
    reply: asyncio.Future[Message] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class Channels(Protocol):
    """Requests to a kernel and the messages that answer them, routed by ``parent_header.msg_id``.

    ``on_comm`` receives every comm message (the tool bridge) whatever its
    parent; ``unrouted_iopub`` iopub messages no request is waiting for.
    Messages delivered carry ``header``, ``parent_header``, ``metadata``,
    ``content``, ``buffers``, ``msg_type`` and ``size`` (content and buffer bytes).
    """

    on_comm: Callable[[Message], None] | None
    unrouted_iopub: Callable[[Message], None]

    def send(
        self,
        channel: Channel,
        msg_type: str,
        content: dict[str, Any],
        *,
        on_iopub: Callable[[Message], None] = ...,
        wants_content: Callable[[int], bool] = ...,
    ) -> Request:
        """Send a request and return the handle its replies arrive on."""
        ...

    def post(self, channel: Channel, msg_type: str, content: dict[str, Any],
             buffers: list[bytes] | None = None) -> None:
        """Send a message that gets no reply (comm messages to the kernel)."""
        ...

    def forget(self, request: Request) -> None:
        """Stop routing messages to a finished request."""
        ...

    async def close(self) -> None:
        """Stop reading and close the transport (idempotent)."""
        ...
