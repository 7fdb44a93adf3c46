"""Progress events and final answers from the kernel, taken within bounds.

A notice is kernel-controlled, so it is capped by size before anything of
it is decoded (``max_progress_bytes``, ``max_final_answer_bytes`` on
:class:`kernel_agent.tools.bridge.ToolBridge`); progress events accumulate,
so they also count against the cell's record budget (:class:`CellLog`).
Small notices are decoded on the event loop; a large one, and every one
after it while it waits, is decoded in a worker thread, in order of arrival
and one at a time per cell, so one session cannot stall the loop other
sessions share. A final answer still waiting is replaced by a newer one,
so waiting answers hold at most one cap's worth.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from kernel_agent.protocol import wire
from kernel_agent.tools.calls import ProgressEvent
from kernel_agent.tools.cell_log import RECORD_OVERHEAD_BYTES, CellLog

# Kernel-sent values bigger than this are decoded (and validated) in a worker thread.
THREAD_DECODE_BYTES = 256 * 1024


class Notices:
    """Takes progress events and final answers into the cell they arrived in."""

    def __init__(self, on_progress: Callable[[ProgressEvent], None], on_rejected: Callable[[], None]) -> None:
        #: Called with each progress event kept; must not raise.
        self._on_progress = on_progress
        #: Called for each notice that could not be decoded or was not an object (counted by the bridge).
        self._on_rejected = on_rejected

    def accept(self, kind: str, data: dict[str, Any], buffers: list[Any], size: int, log: CellLog, cap: int) -> None:
        """A ``progress`` or ``final_answer`` message of ``size`` bytes, in ``log``'s cell, capped at ``cap``."""
        name = kind.replace("_", " ")
        if log.index is None:
            log.drop(f"{name} message(s) arrived while no cell ran and were not kept")
            return
        payload, raw = data.get("payload"), [bytes(b) for b in buffers]
        if size > cap:
            log.drop(f"{name} message(s) over the {cap:,}-byte limit were not kept", size)
            if kind != "final_answer":
                return
            # The cell did give an answer: say what became of it.
            payload, raw, size = {"value": (f"[kernel-agent: the final answer was not kept: {size:,} bytes is over "
                                            f"the {cap:,}-byte limit (max_final_answer_bytes)]")}, [], 0
        # Progress events accumulate, so they count against the cell's record cap; only the last
        # final answer is kept, so its own cap bounds it.
        if kind == "progress" and not log.reserve(size + RECORD_OVERHEAD_BYTES):
            log.drop(f"{name} message(s) over the cell's record cap ({log.max_bytes:,} bytes) were not kept", size)
            return
        if size <= THREAD_DECODE_BYTES and not raw and not log.waiting:  # buffers may decode to far more (bridge)
            self._take(kind, log, wire.decode(payload, raw))
            return
        # Decoded in a worker thread, in order, one at a time per cell; a final answer still
        # waiting is replaced by a newer one, so waiting answers hold at most one cap's worth.
        if kind == "final_answer":
            log.waiting = collections.deque(item for item in log.waiting if item[0] != kind)
        log.waiting.append((kind, payload, raw))
        if not log.pending:
            task = asyncio.get_running_loop().create_task(self._decode_waiting(log))
            log.pending.add(task)
            task.add_done_callback(log.pending.discard)

    async def _decode_waiting(self, log: CellLog) -> None:
        while log.waiting:
            kind, payload, raw = log.waiting.popleft()
            try:
                self._take(kind, log, await asyncio.to_thread(wire.decode, payload, raw))
            except Exception:  # noqa: BLE001 - one bad value must not stop this cell's later ones
                self._on_rejected()

    def _take(self, kind: str, log: CellLog, payload: Any) -> None:
        if not isinstance(payload, dict) or log.closed:
            self._on_rejected()
            return
        if kind == "final_answer":
            if "value" in payload:
                log.final_answers = [payload["value"]]
            return
        fields = payload.get("fields") if isinstance(payload.get("fields"), dict) else {}
        event = ProgressEvent(message=str(payload.get("message", ""))[:10_000],
                              fields=wire.inline_buffers(*wire.encode(fields)), time=time.time(), cell=log.index)
        log.progress.append(event)
        self._on_progress(event)
