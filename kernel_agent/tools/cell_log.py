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
#: The size given to a value that cannot be measured (too deep to serialise): more than any budget,
#: so such a value is never kept. Charging it nothing would let it past every cap.
UNMEASURABLE_BYTES = 1 << 62


# One encoder for every measure: json.dumps with options builds a new one per call, which costs a
# small value's measure more than the encoding itself.
_MEASURE = json.JSONEncoder(ensure_ascii=False, default=str)


def wire_size(data: Any, buffers: list[bytes] | None = None) -> int:
    """Bytes of a wire-encoded value (its JSON plus its binary buffers); :data:`UNMEASURABLE_BYTES` if it
    cannot be serialised."""
    try:
        # An int's JSON is its repr (an int too long to print raises here as it would in the encoder).
        text = len(int.__repr__(data)) if type(data) is int else len(_MEASURE.encode(data))
    except (TypeError, ValueError, RecursionError, MemoryError):
        return UNMEASURABLE_BYTES
    return text + sum(len(b) for b in buffers or [])


def json_size(value: Any, limit: int) -> int:
    """About how many bytes ``value`` (parsed JSON, as the kernel sent it) takes as UTF-8 JSON.

    What the kernel sends is hostile, so this must be cheap and bounded
    whatever the shape: an iterative walk (no recursion, so any depth is
    fine) that counts string lengths and a few bytes per other value, and
    stops as soon as the total passes ``limit`` (every value counts at least
    one byte, and a container's entries are counted before they are
    visited, so at most about ``limit`` values are visited). It is a Python
    loop, so it lets go of the GIL now and then when run in a worker thread,
    unlike ``json.dumps``, which holds it for a whole large value.
    Returns a number over ``limit`` when the value is bigger than ``limit``.

    It runs for every call a kernel sends, so the common entries of a
    container (ASCII strings, ints: all a small call holds) are counted in
    place, without a trip through the stack; everything else takes the
    general path (:func:`_scalar_size`), which counts the same.
    """
    size = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            size += 2 + 2 * len(item)  # braces, and a colon and a comma per entry
            if size > limit:  # checked before the entries are visited: a huge container is not walked
                return size
            for key, element in item.items():
                if type(key) is str and key.isascii():  # isascii is O(1) on a str
                    size += 2 + len(key)
                else:
                    push(key)
                element_kind = type(element)
                if element_kind is str and element.isascii():
                    size += 2 + len(element)
                elif element_kind is int:
                    size += 2 + element.bit_length() * 3 // 10
                else:
                    push(element)
        elif kind is list:
            size += 2 + len(item)  # brackets and commas
            if size > limit:
                return size
            for element in item:
                element_kind = type(element)
                if element_kind is str and element.isascii():
                    size += 2 + len(element)
                elif element_kind is int:
                    size += 2 + element.bit_length() * 3 // 10
                else:
                    push(element)
        elif isinstance(item, dict):  # a subclass: counted as its base, entries through the stack
            size += 2 + 2 * len(item)
            if size > limit:
                return size
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            size += 2 + len(item)
            if size > limit:
                return size
            stack.extend(item)
        else:
            size += _scalar_size(item)
        if size > limit:
            return size
    return size


def _scalar_size(item: Any) -> int:
    if isinstance(item, str):
        return 2 + (len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass")))
    if isinstance(item, bool) or item is None:
        return 5
    if isinstance(item, int):
        return 2 + item.bit_length() * 3 // 10  # decimal digits, without converting (cheap for any size)
    return 24  # float, or anything else a parser might produce


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
        #: Tasks measuring a large batch of calls off the loop before its calls are admitted to this cell;
        #: awaited before the cell ends, so those calls are served (and recorded) in it.
        self.admitting: set[asyncio.Task[None]] = set()
        #: Bytes of the messages those tasks hold (bounded by the budget: see kernel_agent.tools.batches).
        self.measuring_bytes = 0
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
