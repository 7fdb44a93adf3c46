"""A cell as it is compared (nbval's rules, sanitized), and the differ that finds where a replay diverges.

Execution counts are ignored; stream text is compared per stream name
(stdout and stderr may interleave differently); rich outputs on their
textual MIME types (``text/*``, JSON), images only by presence; errors on
``ename`` and ``evalue``, not the traceback. All text is sanitized first:
memory addresses, ANSI escape codes, trailing whitespace.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from kernel_agent.protocol import wire
from kernel_agent.record import format as fmt
from kernel_agent.record.recording import RecordedCell, json_text
from kernel_agent.tools.recorded import RecordedTools
from kernel_agent.verify.replay.report import Divergence, ReplayReport

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_TRAILING_SPACE = re.compile(r"[ \t\r\f\v]+$", re.MULTILINE)
# MIME types that carry random ids even when nothing changed.
_UNCOMPARED_MIMES = {"application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"}


def sanitize(text: str) -> str:
    """What may differ between two faithful runs, taken out: ANSI codes, memory addresses, trailing blanks."""
    text = _ANSI.sub("", text)
    text = _ADDRESS.sub("0x...", text)
    return _TRAILING_SPACE.sub("", text)


def _textual(mime: str) -> bool:
    if mime in _UNCOMPARED_MIMES or mime.startswith("image/"):
        return False
    return mime.startswith("text/") or mime in ("application/json", "application/javascript") \
        or mime.endswith("+json")


def _render_outputs(outputs: Iterable[Any]) -> list[str]:
    """Outputs as comparable lines: streams merged per name (at the first one's place), rich data per MIME type."""
    items: list[list[str] | str] = []  # a block of lines, or a stream name standing for its merged text
    streams: dict[str, list[str]] = {}
    for raw in outputs:
        if not isinstance(raw, dict):
            items.append([f"[unreadable output {type(raw).__name__}]"])
            continue
        output = fmt.normalised_output(raw)
        kind = str(output.get("output_type"))
        if kind == "stream":
            name = str(output.get("name", "stdout"))
            if name not in streams:
                streams[name] = []
                items.append(name)
            streams[name].append(str(output.get("text", "")))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            raw_data = output.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            block = [] if data else [f"[{kind}: no data]"]
            for mime in sorted(data):
                value = data[mime]
                if not _textual(mime):
                    block.append(f"[{kind} {mime}: present, not compared]")
                    continue
                block.append(f"[{kind} {mime}]")
                text = value if isinstance(value, str) else json_text(value)
                block.extend(text.splitlines() or [""])
            items.append(block)
        elif kind == "error":
            items.append(["[error]", f"{output.get('ename', '')}: {output.get('evalue', '')}"])
        else:
            items.append([f"[{kind}]"])
    lines: list[str] = []
    for item in items:
        if isinstance(item, str):
            lines.append(f"[{item}]")
            lines.extend("".join(streams[item]).splitlines() or [""])
        else:
            lines.extend(item)
    return lines


def _call_line(tool: Any, arguments: Any, status: Any, error: Any) -> str:
    line = f"{tool} {json_text(arguments)} -> {status}"
    if status != "ok" and isinstance(error, dict):
        line += f": {error.get('message', '')}"
    return line


def render_cell(status: str, outputs: Iterable[Any], calls: list[dict[str, Any]],
                final_answer: tuple[bool, Any] = (False, None), *, order_calls: bool = True) -> str:
    """A cell as it is compared: status, tool calls, outputs, final answer; sanitized.

    ``calls`` are ToolCall records (JSON); with ``order_calls`` False their
    order does not count (the calls ran concurrently).
    """
    call_lines = [_call_line(c.get("tool"), c.get("arguments"), c.get("status"), c.get("error")) for c in calls]
    if not order_calls:
        call_lines.sort()
    lines = [f"status: {status}"]
    if call_lines:
        lines.append("tool calls:" if order_calls else "tool calls (concurrent, in any order):")
        lines.extend(f"  {line}" for line in call_lines)
    lines.append("outputs:")
    lines.extend(_render_outputs(outputs))
    if final_answer[0]:
        lines.append(f"final answer: {json_text(final_answer[1])}")
    return sanitize("\n".join(lines)) + "\n"


def _call_record(call: Any) -> dict[str, Any]:
    record: dict[str, Any] = call.model_dump(mode="json")
    return record


def compare_cell(cell: RecordedCell, result: Any, server: RecordedTools, report: ReplayReport) -> None:
    """Compare a replayed cell with its recording; a difference is added to ``report`` (with the first one's diff)."""
    replayed_calls = [_call_record(c) for c in result.tool_calls]
    ordered = not cell.concurrent_calls
    expected = render_cell(cell.status, cell.outputs, cell.calls, cell.final_answer, order_calls=ordered)
    final = (True, wire.encode(result.final_answer)[0]) if result.has_final_answer else (False, None)
    actual = render_cell(result.status.value, result.outputs, replayed_calls, final, order_calls=ordered)
    unrecorded = [d for index, d in server.unrecorded if index == cell.index]
    if expected == actual and not unrecorded:
        return
    reasons = []
    if cell.status != result.status.value:
        reasons.append(f"status: recorded {cell.status}, replayed {result.status.value}")
    if unrecorded:
        reasons.append("tool call not in the recording: " + "; ".join(unrecorded))
    expected_calls = render_cell("", [], cell.calls, order_calls=ordered)
    if expected_calls != render_cell("", [], replayed_calls, order_calls=ordered) and not unrecorded:
        reasons.append(f"tool calls differ ({len(cell.calls)} recorded, {len(replayed_calls)} replayed)")
    if render_cell("", cell.outputs, []) != render_cell("", result.outputs, []):
        reasons.append("outputs differ")
    if render_cell("", [], [], cell.final_answer) != render_cell("", [], [], final):
        reasons.append("final answer differs")
    limitations = [note for index, note in server.limitations if index == cell.index]
    if limitations:
        reasons.append("replay limitation: " + "; ".join(limitations))
    report.divergent_cells.append(cell.index)
    if report.first_divergence is None:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            fromfile=f"recorded cell {cell.index}",
                                            tofile=f"replayed cell {cell.index}"))
        report.first_divergence = Divergence(cell_index=cell.index, seq=cell.seq,
                                             source_first_line=cell.first_line, diff=diff,
                                             reason="; ".join(reasons) or "the cell differs")
