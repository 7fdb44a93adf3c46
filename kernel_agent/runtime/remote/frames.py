"""Kernel messages as they travel over a Jupyter server's websocket: the two encodings, checked as hostile input.

**v1** (``v1.kernel.websocket.jupyter.org``, Jupyter Server 2 and Kernel
Gateway 3) is one binary frame a message: an 8-byte little-endian count of
offsets, the offsets, the channel name, then the message's parts exactly as
the kernel sent them over zmq (header, parent header, metadata, content,
binary buffers). The server forwards the kernel's parts without parsing them,
so routing needs only the two small header parts and output nobody keeps is
never parsed. Sent messages are parts too; the server signs them for the
kernel (no HMAC travels on a websocket).

**Legacy** (no subprotocol) is one JSON text frame a message, with its
``channel`` as a field; a message with buffers is a binary frame instead: a
4-byte big-endian count, 4-byte big-endian offsets, the JSON, the buffers.
The whole JSON must be parsed before anything is known of the message.

Every count, offset and part length is checked against the frame before any
slice is taken, and a frame has at most :data:`MAX_PARTS` parts, so a small
frame cannot make the host build a large list. Slices are memoryviews of the
received frame: nothing is copied.
"""

from __future__ import annotations

import datetime
import itertools
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from jupyter_client import protocol_version  # type: ignore[attr-defined]
from jupyter_client.session import json_packer

from kernel_agent.runtime.channels import Message, delivered, parse_kernel_json
from kernel_agent.runtime.connection import MAX_HEADER_BYTES

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CHANNELS = frozenset({"shell", "control", "iopub", "stdin"})
#: Binary buffers a message may carry (a tool call with more is not one the bridge would make).
MAX_BUFFERS = 4096
MAX_PARTS = 4 + MAX_BUFFERS


class MalformedFrame(ValueError):
    """A websocket frame that is not a kernel message: dropped, never fatal."""


@dataclass
class Envelope:
    """A received message with its routing headers parsed; metadata and content still raw (v1) or parsed (legacy)."""

    channel: str
    header: dict[str, Any]
    parent_header: dict[str, Any]
    metadata: Any  # memoryview (v1, unparsed) or the parsed value (legacy)
    content: Any
    buffers: list[memoryview]
    #: Bytes of the content as received (for legacy frames, of the whole JSON it arrived in).
    content_bytes: int

    @property
    def msg_type(self) -> Any:
        return self.header.get("msg_type")

    @property
    def parsed(self) -> bool:
        """Whether metadata and content are parsed already (legacy frames are parsed whole)."""
        return not isinstance(self.content, memoryview)

    @property
    def size(self) -> int:
        """Content and buffer bytes, as the host's output caps count them."""
        return self.content_bytes + sum(len(buffer) for buffer in self.buffers)


def parse_json(part: memoryview | bytes | str) -> Any:
    """Parse JSON as jupyter_client does (UTF-8, errors replaced), within the item budget of every channel."""
    return parse_kernel_json(part)


def open_envelope(envelope: Envelope) -> Message:
    """The message as channels deliver it: metadata and content parsed (may run in a worker thread)."""
    metadata, content = envelope.metadata, envelope.content
    if not envelope.parsed:
        metadata, content = parse_json(metadata), parse_json(content)
    return delivered(envelope.header, envelope.parent_header, metadata, content, envelope.buffers, envelope.size)


def _offsets(data: memoryview, order: str, kind: str) -> list[int]:
    """Read a count and that many offsets, checking that they fit ``data`` and only go forward."""
    width = struct.calcsize(kind)
    if len(data) < width:
        raise MalformedFrame("frame shorter than its count")
    (count,) = struct.unpack_from(f"{order}{kind}", data, 0)
    if not 1 <= count <= MAX_PARTS + 2 or width * (count + 1) > len(data):
        raise MalformedFrame("bad part count")
    offsets = list(struct.unpack_from(f"{order}{count}{kind}", data, width))
    if offsets[0] != width * (count + 1) or any(b < a for a, b in itertools.pairwise(offsets)) \
            or offsets[-1] > len(data):
        raise MalformedFrame("bad part offsets")
    return offsets


def _header_dict(part: memoryview | bytes, what: str) -> dict[str, Any]:
    if len(part) > MAX_HEADER_BYTES:
        raise MalformedFrame(f"oversized {what}")
    value = parse_json(part)
    if not isinstance(value, dict):
        raise MalformedFrame(f"{what} is not an object")
    return value


def decode_v1(frame: bytes) -> Envelope:
    """Split a v1 frame; parse only its header and parent header."""
    data = memoryview(frame)
    offsets = _offsets(data, "<", "Q")
    # The channel's start and end, then the ends of header, parent, metadata, content and each buffer;
    # the last part ends where the frame does.
    if len(offsets) < 6 or offsets[-1] != len(data):
        raise MalformedFrame("too few parts, or bytes after the last")
    channel = bytes(data[offsets[0]:offsets[1]]).decode("ascii", "replace")
    if channel not in CHANNELS:
        raise MalformedFrame("unknown channel")
    parts = [data[start:end] for start, end in itertools.pairwise(offsets[1:])]
    header, parent, metadata, content, *buffers = parts
    if len(metadata) > MAX_HEADER_BYTES:
        raise MalformedFrame("oversized metadata")
    return Envelope(channel, _header_dict(header, "header"), _header_dict(parent, "parent header"),
                    metadata, content, buffers, len(content))


def decode_legacy(frame: bytes | str) -> Envelope:
    """Parse a legacy frame whole: JSON text, or the binary form that carries buffers."""
    buffers: list[memoryview] = []
    if isinstance(frame, str):
        message, json_bytes = parse_json(frame), len(frame)
    else:
        data = memoryview(frame)
        offsets = _offsets(data, "!", "I")
        parts = [data[start:end] for start, end in zip(offsets, [*offsets[1:], len(data)], strict=True)]
        message, buffers, json_bytes = parse_json(parts[0]), parts[1:], len(parts[0])
    if not isinstance(message, dict):
        raise MalformedFrame("not an object")
    channel, header, parent = message.get("channel"), message.get("header"), message.get("parent_header")
    if channel not in CHANNELS or not isinstance(header, dict) or not isinstance(parent, dict):
        raise MalformedFrame("missing channel or headers")
    return Envelope(channel, header, parent, message.get("metadata", {}), message.get("content", {}), buffers,
                    json_bytes)


def new_header(msg_type: str, session_id: str) -> dict[str, Any]:
    """The header of a message this host sends."""
    return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "kernel-agent", "session": session_id,
            "date": datetime.datetime.now(datetime.UTC).isoformat(), "version": protocol_version}


def encode_v1(channel: str, header: dict[str, Any], content: dict[str, Any],
              buffers: list[bytes] | None = None) -> bytes:
    """A v1 frame: the parts as the kernel would get them over zmq, unsigned."""
    parts = [json_packer(header), b"{}", b"{}", json_packer(content), *(buffers or [])]
    name = channel.encode("ascii")
    offsets = [8 * (len(parts) + 3)]
    offsets.append(offsets[-1] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return b"".join([struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets), name, *parts])


def encode_legacy(channel: str, header: dict[str, Any], content: dict[str, Any],
                  buffers: list[bytes] | None = None) -> bytes | str:
    """A legacy frame: JSON text, or the binary form when there are buffers."""
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": channel}
    if not buffers:
        return json_packer(message).decode("utf-8", "replace")
    parts = [json_packer(message), *buffers]
    offsets = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    return b"".join([struct.pack(f"!{len(offsets) + 1}I", len(parts), *offsets), *parts])
