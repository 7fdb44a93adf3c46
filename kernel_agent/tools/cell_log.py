"""What one cell did through the tool bridge, kept within a byte budget.

Everything a cell's code sends through the bridge is kernel-controlled, so
the host keeps at most ``max_bytes`` of it per cell (call records with their
arguments, results and error details; progress events); the final answer
has a cap of its own, as only the last one is kept.
What is over the budget is not kept but counted, and :meth:`CellLog.notes`
names it for the cell's output. A call whose record would not fit is refused
before its tool runs: no tool runs unrecorded.
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from kernel_agent.tools.calls import ProgressEvent, ToolCall

#: Default byte budget of one cell's bridge records.
DEFAULT_MAX_CELL_RECORD_BYTES = 32 * 1024**2
#: What one record costs the host beyond its values (Python objects), counted against the budget.
RECORD_OVERHEAD_BYTES = 512


def wire_size(data: Any, buffers: list[bytes] | None = None) -> int:
    """Bytes of a wire-encoded value (its JSON plus its binary buffers)."""
    try:
        text = len(json.dumps(data, ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        text = 0
    return text + sum(len(b) for b in buffers or [])


class CellLog:
    """What one cell did through the bridge: call records, progress, the final answer; within a budget."""

    def __init__(self, index: int | None, msg_id: str | None = None,
                 max_bytes: int = DEFAULT_MAX_CELL_RECORD_BYTES) -> None:
        self.index = index
        #: The msg_id of the execute request running the cell (kernel calls are stamped with it).
        self.msg_id = msg_id
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        self.calls: list[ToolCall] = []
        self.progress: list[ProgressEvent] = []
        #: Only the last final answer is kept (it is the one the cell's result reports).
        self.final_answers: list[Any] = []
        #: Values waiting to be decoded in a worker thread (kind, payload, buffers), in order of arrival,
        #: and the task decoding them; awaited when the cell ends.
        self.waiting: collections.deque[tuple[str, Any, list[bytes]]] = collections.deque()
        self.pending: set[asyncio.Task[None]] = set()
        #: Set when the cell's result has been built: nothing may be added any more.
        self.closed = False
        self._dropped: dict[str, list[int]] = {}  # what was not kept: kind -> [count, bytes]

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes of the budget if they fit."""
        if self.closed or self.kept_bytes + size > self.max_bytes:
            return False
        self.kept_bytes += size
        return True

    def drop(self, kind: str, size: int = 0) -> None:
        """Count something not kept (``kind`` names it in the notes)."""
        entry = self._dropped.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += size

    def notes(self) -> list[str]:
        """One line per kind of thing not kept, for the cell's output."""
        return [f"{count:,} {kind}" + (f" ({size:,} bytes)" if size else "")
                for kind, (count, size) in self._dropped.items()]
