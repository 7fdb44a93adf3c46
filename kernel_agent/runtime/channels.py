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
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Message = dict[str, Any]
#: The channels a host sends on: code and comm replies on shell, interrupts on control.
Channel = Literal["shell", "control"]
COMM_MESSAGE_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
#: JSON containers, entries and strings one message part may hold: parsing makes each a Python object of 30-80
#: bytes, so a million bound what one part can cost the host (~75 MiB) whatever its byte size (a 39 MB part of
#: empty objects alone made 13 million of them: 972 MiB).
MAX_JSON_ITEMS = 1_000_000
# Parts this small cannot hold enough items to matter: not counted.
_COUNTED_BYTES = 256 * 1024
# A JSON string, unrolled so that runs of plain characters are consumed in C (fast on long strings).
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')


class TooManyItems(ValueError):
    """A message part holds more JSON items than :data:`MAX_JSON_ITEMS` (dropped unparsed)."""


def json_items(data: bytes) -> int:
    """At most how many objects parsing ``data`` makes: strings, and ``{``, ``[``, ``,`` outside strings.

    Counted in C: bytes.count, and a regex run only when the rough count is
    over the budget and there are at most a million strings to strip.
    """
    quotes = data.count(b'"')
    strings = (quotes - data.count(b'\\"')) // 2  # escaped quotes end no string
    rough = data.count(b"{") + data.count(b"[") + data.count(b",")
    if rough + strings <= MAX_JSON_ITEMS or quotes > 4 * MAX_JSON_ITEMS:
        return rough + max(strings, quotes // 4 if quotes > 4 * MAX_JSON_ITEMS else 0)
    stripped = _JSON_STRING.sub(b'""', data)  # commas and brackets inside strings make no objects
    return stripped.count(b"{") + stripped.count(b"[") + stripped.count(b",") + strings


def delivered(header: dict[str, Any], parent_header: dict[str, Any], metadata: Any, content: Any,
              buffers: list[Any], size: int) -> Message:
    """A message as channels deliver it (whatever carried it): parsed parts, buffers, type and size."""
    return {"header": header, "parent_header": parent_header, "metadata": metadata, "content": content,
            "buffers": buffers, "msg_type": header.get("msg_type"), "size": size}


def parse_kernel_json(part: memoryview | bytes | str) -> Any:
    """Parse a message part from the kernel as jupyter_client does (UTF-8, errors replaced), within an item budget.

    The byte caps bound what a message costs to hold, not what it costs
    parsed: a part over :data:`MAX_JSON_ITEMS` raises TooManyItems before
    ``json.loads`` sees it (C-speed counts: milliseconds for 40 MB).
    """
    if len(part) > _COUNTED_BYTES:
        data = part.encode() if isinstance(part, str) else bytes(part)
        if json_items(data) > MAX_JSON_ITEMS:
            raise TooManyItems(f"a message part of {len(data):,} bytes holds over {MAX_JSON_ITEMS:,} JSON items")
    return json.loads(part if isinstance(part, str) else str(part, "utf-8", "replace"))


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
