"""A 'calls' message from the kernel: bounded, and each of its calls measured.

Such a message carries the calls a kernel gathered in one loop turn. Its
size says nothing about one call's (a big call can hide among tiny ones),
so each entry is measured (:func:`json_size`), in a worker thread when the
message is large, and its measure is what counts against
``max_request_bytes``, the cell's record budget and the off-loop decoding
threshold. A batch that no honest kernel sends (more than
:data:`MAX_BATCH_CALLS` entries, or entries that are not calls) is refused
whole: nothing in it runs. Batches waiting to be measured are held in
memory only up to what their cell could still keep.

Whether a measured call may run, and running it, is
:class:`kernel_agent.tools.bridge.ToolBridge`'s: this module admits calls
to it in the cell that ran when their batch arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kernel_agent.tools.cell_log import CellLog, json_size

# The most calls one 'calls' message may hold: the kernel never has more in flight
# (kernel_agent.kernel.bridge._MAX_IN_FLIGHT), so a bigger batch is not from an honest kernel.
# The bound is what keeps serving one message a short, bounded piece of loop time.
MAX_BATCH_CALLS = 256
# A 'calls' message bigger than this has its calls measured in a worker thread (the walk is
# linear in the message; below this it costs the loop well under a few milliseconds).
THREAD_MEASURE_BYTES = 64 * 1024

#: Take one measured call (comm id, call, its size) into a cell's log, or answer why not.
Admit = Callable[[str, dict[str, Any], int, CellLog], None]
#: Answer the ids of a refused batch (comm id, its entries, why: None for a malformed batch).
Refuse = Callable[[str, Any, str | None], None]


class Batches:
    """Takes 'calls' messages: refuses malformed ones whole, measures the calls of the rest, admits them."""

    def __init__(self, admit: Admit, refuse: Refuse, on_rejected: Callable[[], None]) -> None:
        self._admit = admit
        self._refuse = refuse
        #: Called when a batch could not be measured (counted by the bridge).
        self._on_rejected = on_rejected

    def accept(self, comm_id: str, calls: Any, size: int, log: CellLog, limit: int) -> None:
        """A 'calls' message of ``size`` bytes arriving in ``log``'s cell; a call over ``limit`` bytes is not
        measured further. Raises (for the bridge to count) on a malformed batch, after answering its ids."""
        if not isinstance(calls, list):
            raise TypeError("a 'calls' message without a list of calls")
        if len(calls) > MAX_BATCH_CALLS or not all(isinstance(call, dict) for call in calls):
            self._refuse(comm_id, calls, None)
            raise ValueError("a malformed 'calls' message was refused")  # counted in rejected_messages
        if size <= THREAD_MEASURE_BYTES:
            self._admit_all(comm_id, calls, [json_size(call, limit) for call in calls], log)
            return
        # Batches waiting to be measured are held in memory: at most what the cell could still keep.
        if log.index is not None and log.kept_bytes + log.measuring_bytes + size > log.max_bytes:
            log.drop("tool call batch(es) were refused: the cell's record cap was reached", size)
            self._refuse(comm_id, calls, f"this cell's tool-call records reached their cap "
                         f"({log.max_bytes:,} bytes): no more calls run in this cell")
            return
        log.measuring_bytes += size
        task = asyncio.get_running_loop().create_task(self._measure_and_admit(comm_id, calls, limit, log, size))
        log.admitting.add(task)
        task.add_done_callback(log.admitting.discard)

    async def _measure_and_admit(self, comm_id: str, calls: list[dict[str, Any]], limit: int, log: CellLog,
                                 size: int) -> None:
        try:
            sizes = await asyncio.to_thread(lambda: [json_size(call, limit) for call in calls])
        except Exception:  # noqa: BLE001 - (MemoryError) nothing of a message we cannot measure runs
            self._on_rejected()
            self._refuse(comm_id, calls, None)
            return
        finally:
            log.measuring_bytes -= size
        self._admit_all(comm_id, calls, sizes, log)

    def _admit_all(self, comm_id: str, calls: list[dict[str, Any]], sizes: list[int], log: CellLog) -> None:
        """Take the calls of a batch into ``log``'s cell, the one that ran when the batch arrived."""
        for call, call_size in zip(calls, sizes, strict=False):
            try:  # (not contextlib.suppress: an object per call, at every call of every batch)
                self._admit(comm_id, call, call_size, log)
            except ValueError:  # an entry without a usable id: nobody to answer
                continue
