"""The bridge's replies: batched per loop turn, recent ones kept for resends.

The kernel resends a call it got no answer to (iopub can drop messages),
so recent answers are kept (:data:`REPLY_CACHE_SIZE` of them, each at most
:data:`REPLY_CACHE_VALUE_BYTES`; a bigger one is kept as a short error) and
a duplicate is answered from them without its tool running twice. Replies
finished in the same event-loop turn leave as one ``replies`` message;
a reply with binary buffers leaves alone, at once.

What to answer is decided by :class:`kernel_agent.tools.bridge.ToolBridge`;
this module only delivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kernel_agent.protocol import wire
from kernel_agent.tools.calls import CallError

# The kernel resends a call it got no answer to (iopub can drop messages);
# recent answers are kept to answer such duplicates without running twice.
REPLY_CACHE_SIZE = 1024
# Replies bigger than this are not kept for resends (a resend of an answered call is rare: the
# shell channel does not lose replies), so the cache holds at most about 1024 x 64 KiB.
REPLY_CACHE_VALUE_BYTES = 64 * 1024

SendReply = Callable[[str, dict[str, Any], list[bytes]], None]


class Replies:
    """Delivers one session's replies to its kernel: batched per loop turn, recent ones kept for resends."""

    def __init__(self) -> None:
        #: Where replies go (the kernel's shell channel); None until a kernel is bound.
        self.send: SendReply | None = None
        self._outbox: dict[str, list[dict[str, Any]]] = {}
        self._recent: OrderedDict[str, tuple[str, dict[str, Any], list[bytes]]] = OrderedDict()

    def answered(self, call_id: str) -> bool:
        """Whether ``call_id`` was answered recently (its reply is kept for a resend)."""
        return call_id in self._recent

    def answer_again(self, comm_id: str, call_id: str) -> bool:
        """Answer a resent call from the kept reply; False if there is none."""
        kept = self._recent.get(call_id)
        if kept is None:
            return False
        _, data, buffers = kept
        if self.send is not None:
            with contextlib.suppress(Exception):  # a dead kernel cannot take the reply
                self.send(comm_id, data, buffers)
        return True

    def reply(self, comm_id: str, call_id: str, value: Any, error: CallError | None, buffers: list[bytes],
              size: int = 0) -> None:
        """Answer ``call_id`` with ``value`` (wire-encoded, ``size`` bytes with ``buffers``) or ``error``."""
        if self.send is None:
            return
        if error is None:
            data: dict[str, Any] = {"type": "reply", "id": call_id, "ok": True, "value": value}
        else:
            data = {"type": "reply", "id": call_id, "ok": False,
                    "error": {"kind": error.kind.value, "message": error.message, "details": _details(error.details)}}
        self._recent[call_id] = (comm_id, data, buffers) if size <= REPLY_CACHE_VALUE_BYTES else (comm_id, {
            "type": "reply", "id": call_id, "ok": False, "error": {
                "kind": "error", "message": "this call was answered already; its (large) reply is not kept"}}, [])
        if len(self._recent) > REPLY_CACHE_SIZE:
            self._recent.popitem(last=False)
        if buffers:
            with contextlib.suppress(Exception):  # a dead kernel cannot take the reply
                self.send(comm_id, data, buffers)
            return
        # Replies finished in the same loop turn leave as one message.
        outbox = self._outbox.setdefault(comm_id, [])
        outbox.append(data)
        if len(outbox) == 1:
            asyncio.get_running_loop().call_soon(self.flush, comm_id)

    def flush(self, comm_id: str) -> None:
        """Send the replies waiting for ``comm_id`` (scheduled for the loop turn after the first of them)."""
        replies = self._outbox.pop(comm_id, [])
        if not replies or self.send is None:
            return
        data = replies[0] if len(replies) == 1 else {"type": "replies", "replies": replies}
        with contextlib.suppress(Exception):  # a dead kernel cannot take the reply
            self.send(comm_id, data, [])


def _details(details: Any) -> Any:
    """An error's details as JSON the kernel decodes (their text, if part of them has no such form)."""
    try:
        return wire.encode(details, ())[0]
    except wire.UnserializableValue:
        return str(details)[:10_000]
