"""restore_on_death: keep the cells since the kernel state was last fresh, and re-run them in a new kernel.

Off by default (see Session): re-running repeats the cells' workspace
writes, takes as long as they did, and a memory-limit death would likely
recur. The cells are re-run with their tool calls answered from their
records, so no tool runs twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kernel_agent.record.recording import RecordedCell
from kernel_agent.runtime.results import CellResult, CellStatus
from kernel_agent.session.toolbox import SessionTools, tool_definition
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.registry import ToolRegistry

#: What restore_on_death may keep of past cells (their code, outputs and tool records), in bytes.
HISTORY_MAX_BYTES = 64 * 1024**2
HISTORY_OVERFLOW = (f"restore_on_death could not restore the earlier cells: together they are over the "
                    f"{HISTORY_MAX_BYTES:,} bytes kept for it (HISTORY_MAX_BYTES)")


def _history_size(result: CellResult) -> int:
    """What keeping a past cell for restore_on_death costs, about (its JSON; NaN and inf become null)."""
    return len(result.model_dump_json())


class CellHistory:
    """The cells since the kernel state was last fresh, within :data:`HISTORY_MAX_BYTES`."""

    def __init__(self) -> None:
        self.cells: list[CellResult] = []
        self.size = 0
        #: Whether the cells outgrew the bound: restoring is then given up (and says so).
        self.overflow = False

    def clear(self) -> None:
        """The kernel state is fresh again: nothing to restore."""
        self.cells.clear()
        self.size, self.overflow = 0, False

    def keep(self, result: CellResult) -> None:
        """Keep a cell that ran in the current kernel (a cell that lost its kernel is not kept)."""
        if result.state_lost:
            self.clear()
            return
        if result.status is CellStatus.KERNEL_DIED or result.kernel_restarted or self.overflow:
            return
        # Past cells are kept only to restore state, and within a bound: beyond it,
        # restoring is given up (and says so) rather than host memory growing per cell.
        self.size += _history_size(result)
        self.cells.append(result)
        if self.size > HISTORY_MAX_BYTES:
            self.cells.clear()
            self.overflow = True


def _recorded_registry(registry: ToolRegistry | None, server: RecordedTools) -> ToolRegistry:
    return ToolRegistry(recorded_tools([tool_definition(tool) for tool in registry or ()], server))


async def restore_state(
    history: CellHistory, tools: SessionTools, run: Callable[[str], Awaitable[CellResult]]
) -> bool:
    """Re-run the kept cells with ``run``, tool calls answered from their records; False if one lost its kernel."""
    server = RecordedTools()
    # In a worker thread: rebuilding a 2,500-tool catalogue takes most of a second, and a kernel can die on purpose
    # as often as it likes; on the event loop, every other session would wait that long each time.
    replay = await asyncio.to_thread(_recorded_registry, tools.registry, server)
    with tools.answered_by(replay):
        for index, past in enumerate(history.cells):
            server.begin_cell(RecordedCell(
                index=index, seq=None, source=past.code, status=past.status.value, outputs=past.outputs,
                calls=[call.model_dump(mode="json") for call in past.tool_calls],
                final_answer=(past.has_final_answer, past.final_answer), duration=past.duration,
                timed_out=past.timed_out))
            try:
                again = await run(past.code)
            finally:
                server.end_cell()
            if again.kernel_restarted:
                return False
    return True
