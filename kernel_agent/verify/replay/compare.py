"""A replayed cell compared with its recording, the divergence added to the report.

The rules (nbval's, sanitized) are :mod:`kernel_agent.record.compare`'s,
shared with resume: execution counts are ignored; stream text is compared
per stream name; rich outputs on their textual MIME types, images only by
presence; errors on ``ename`` and ``evalue``; memory addresses, ANSI codes
and trailing whitespace taken out.
"""

from __future__ import annotations

from typing import Any

from kernel_agent.record.compare import render_cell, rerun_difference, sanitize
from kernel_agent.record.recording import RecordedCell
from kernel_agent.tools.recorded import RecordedTools
from kernel_agent.verify.replay.report import Divergence, ReplayReport

__all__ = ["compare_cell", "render_cell", "sanitize"]


def compare_cell(cell: RecordedCell, result: Any, server: RecordedTools, report: ReplayReport) -> None:
    """Compare a replayed cell with its recording; a difference is added to ``report`` (with the first one's diff)."""
    difference = rerun_difference(
        cell, result, unrecorded=[d for index, d in server.unrecorded if index == cell.index],
        limitations=[note for index, note in server.limitations if index == cell.index])
    if difference is None:
        return
    report.divergent_cells.append(cell.index)
    if report.first_divergence is None:
        report.first_divergence = Divergence(cell_index=cell.index, seq=cell.seq,
                                             source_first_line=cell.first_line, diff=difference.diff,
                                             reason=difference.reason)
