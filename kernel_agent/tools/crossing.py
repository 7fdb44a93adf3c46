"""How values cross to the kernel that called: in the forms it decodes, off the event loop when large.

The kernel says in its comm_open what it decodes besides JSON (numpy
arrays in buffers, pandas values as Arrow IPC: see
:func:`kernel_agent.protocol.wire.local_accepts`); a tool's result is
encoded for exactly that, and what had to go in a plain form instead is
logged. A result that cannot cross at all raises
:class:`~kernel_agent.protocol.wire.UnserializableValue`, which the bridge
answers with the ``unserializable`` status (``ToolResultError`` in the kernel).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kernel_agent.protocol import wire

_log = logging.getLogger("kernel_agent.tools.bridge")
# A top-level container (or array, frame) with more items than this may take long enough to encode to be
# worth a worker thread.
_LARGE_CONTAINER = 10_000


def kernel_accepts(data: Any) -> frozenset[str]:
    """What a kernel's comm_open says it decodes besides JSON (anything else in it is ignored)."""
    accepts = data.get("accepts") if isinstance(data, dict) else None
    if not isinstance(accepts, list):
        return frozenset()  # a kernel that does not say gets JSON forms only
    return frozenset(a for a in accepts[:8] if a in (wire.NUMPY, wire.ARROW))


async def encode_result(tool: str, result: Any, accepts: frozenset[str]) -> tuple[Any, list[bytes]]:
    """``result`` encoded for a kernel that ``accepts`` these forms; in a worker thread when it may be large."""
    notes: list[str] = []
    try:
        if _may_be_large(result):
            encoded = await asyncio.to_thread(wire.encode, result, accepts, root="result", notes=notes)
        else:
            encoded = wire.encode(result, accepts, root="result", notes=notes)
    except wire.UnserializableValue as exc:
        _log.warning("the result of %s cannot cross to the kernel: %s", tool, exc)  # the tool author's bug
        raise
    log_notes(f"result of {tool}", notes)
    return encoded


def log_notes(what: str, notes: list[str]) -> None:
    """Log what went in a plain form instead of its own type."""
    for note in notes:
        _log.info("%s: %s", what, note)


def _may_be_large(result: Any) -> bool:
    """Whether encoding ``result`` may hold the event loop a while (arrays, frames, big containers)."""
    candidates = [result, *(result.values() if isinstance(result, dict) and len(result) <= 64 else ())]
    for value in candidates:
        if (type(value).__module__.partition(".")[0] in ("numpy", "pandas")
                and getattr(value, "size", 0) > _LARGE_CONTAINER) or (
                isinstance(value, (list, tuple, dict, str, bytes)) and len(value) > _LARGE_CONTAINER):
            return True
    return False
