"""How a cell run again compares with its recording: nbval's rules, sanitized, and the first differing line.

Replay (:mod:`kernel_agent.verify.replay`) and resume
(:mod:`kernel_agent.session.resume`) both compare a cell run again with its
recorded self, the same way: execution counts are ignored; stream text is
compared per stream name (stdout and stderr may interleave differently, and either may come first);
rich outputs on their textual MIME types (``text/*``, JSON), images only by
presence; errors on ``ename`` and ``evalue``, not the traceback. All text is
sanitized first: memory addresses, ANSI escape codes, trailing whitespace.
The cell's status, its tool calls and its final answer count too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kernel_agent.protocol import wire
from kernel_agent.record import format as fmt
from kernel_agent.record.recording import RecordedCell, json_text

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# Trailing blanks go line by line with str.rstrip, not with a regex: "[ \t]+$" tries every start in a run
# of blanks that does not end its line, so a million spaces and an "x" (output a kernel can print) took hours.
_TRAILING_BLANKS = " \t\r\f\v"
# MIME types that carry random ids even when nothing changed.
# The most lines of each side that the diff of a cell compares (past the lines both sides share at the ends).
DIFF_LINES = 2000
_UNCOMPARED_MIMES = {"application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"}


def sanitize(text: str) -> str:
    """What may differ between two faithful runs, taken out: ANSI codes, memory addresses, trailing blanks."""
    text = _ANSI.sub("", text)
    text = _ADDRESS.sub("0x...", text)
    return "\n".join(line.rstrip(_TRAILING_BLANKS) for line in text.split("\n"))


def _textual(mime: str) -> bool:
    if mime in _UNCOMPARED_MIMES or mime.startswith("image/"):
        return False
    return mime.startswith("text/") or mime in ("application/json", "application/javascript") \
        or mime.endswith("+json")


def _render_outputs(outputs: Iterable[Any]) -> list[str]:
    """Outputs as comparable lines: streams merged per name, all at the first stream's place, rich data per MIME type.

    Which of stdout and stderr comes first is not the cell's doing: text written to the file descriptors
    (``os.write(2, ...)``, a C library, a subprocess) is read by the kernel's capture threads and arrives
    in either order, so the merged streams go in name order at one place.
    """
    items: list[list[str] | None] = []  # a block of lines, or None standing for the merged streams
    streams: dict[str, list[str]] = {}
    for raw in outputs:
        if not isinstance(raw, dict):
            items.append([f"[unreadable output {type(raw).__name__}]"])
            continue
        output = fmt.normalised_output(raw)
        kind = str(output.get("output_type"))
        if kind == "stream":
            name = str(output.get("name", "stdout"))
            if not streams:
                items.append(None)
            streams.setdefault(name, []).append(str(output.get("text", "")))
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
        if item is None:
            for name in sorted(streams):
                lines.append(f"[{name}]")
                lines.extend("".join(streams[name]).splitlines() or [""])
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



@dataclass(frozen=True)
class CellDifference:
    """How a cell run again differs from its recording: why, where first, and the whole diff."""

    reasons: list[str]
    first_line: str  # the first differing line of the cell as compared ("- recorded | + again")
    diff: str  # unified diff, recorded (-) vs run again (+)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) or "the cell differs"


def cell_difference(cell: RecordedCell, status: str, outputs: list[Any], calls: list[dict[str, Any]],
                    final_answer: tuple[bool, Any], *, again: str = "replayed",
                    unrecorded: Sequence[str] = (), limitations: Sequence[str] = ()) -> CellDifference | None:
    """None if the cell run again (``status``, ``outputs``, ``calls`` as ToolCall records, ``final_answer`` in wire
    encoding) matches ``cell``; else what differs. ``again`` names the second run in the messages."""
    ordered = not cell.concurrent_calls
    expected = render_cell(cell.status, cell.outputs, cell.calls, cell.final_answer, order_calls=ordered)
    actual = render_cell(status, outputs, calls, final_answer, order_calls=ordered)
    if expected == actual and not unrecorded:
        return None
    reasons = []
    if cell.status != status:
        reasons.append(f"status: recorded {cell.status}, {again} {status}")
    if unrecorded:
        reasons.append("tool call not in the recording: " + "; ".join(unrecorded))
    expected_calls = render_cell("", [], cell.calls, order_calls=ordered)
    if expected_calls != render_cell("", [], calls, order_calls=ordered) and not unrecorded:
        reasons.append(f"tool calls differ ({len(cell.calls)} recorded, {len(calls)} {again})")
    if render_cell("", cell.outputs, []) != render_cell("", outputs, []):
        reasons.append("outputs differ")
    if render_cell("", [], [], cell.final_answer) != render_cell("", [], [], final_answer):
        reasons.append("final answer differs")
    if limitations:
        reasons.append("replay limitation: " + "; ".join(limitations))
    lines = bounded_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                         f"recorded cell {cell.index}", f"{again} cell {cell.index}")
    changed = [line.rstrip("\n") for line in lines[2:] if line[:1] in "-+"]
    first = " | ".join(changed[:2]) if changed else ""
    return CellDifference(reasons=reasons, first_line=first, diff="".join(lines))


def bounded_diff(expected: list[str], actual: list[str], fromfile: str, tofile: str) -> list[str]:
    """The unified diff of two cells' lines, within bounds: difflib runs only on where they differ, cut to
    :data:`DIFF_LINES` lines a side. Its matcher is quadratic in the lines it sees, and both sides are output a
    kernel wrote (or a notebook holds): 20,000 lines that differ took seconds, 200,000 minutes."""
    start, shortest = 0, min(len(expected), len(actual))
    while start < shortest and expected[start] == actual[start]:
        start += 1
    end = 0
    while end < shortest - start and expected[-1 - end] == actual[-1 - end]:
        end += 1
    first = max(0, start - 3)  # the context difflib would show
    window_expected = expected[first:len(expected) - end + 3 if end > 3 else len(expected)]
    window_actual = actual[first:len(actual) - end + 3 if end > 3 else len(actual)]
    cut = max(len(window_expected), len(window_actual)) > DIFF_LINES
    label = f" (from line {first + 1})" if first else ""
    lines = list(difflib.unified_diff(window_expected[:DIFF_LINES], window_actual[:DIFF_LINES],
                                      fromfile=fromfile + label, tofile=tofile + label))
    if cut:
        lines.append(f"… the diff stops here: more than {DIFF_LINES:,} lines differ\n")
    return lines


def rerun_difference(cell: RecordedCell, result: Any, *, again: str = "replayed", unrecorded: Sequence[str] = (),
                     limitations: Sequence[str] = ()) -> CellDifference | None:
    """:func:`cell_difference` for a CellResult (its status, outputs, tool calls and final answer)."""
    calls = [call.model_dump(mode="json") for call in result.tool_calls]
    final = (True, wire.encode(result.final_answer)[0]) if result.has_final_answer else (False, None)
    return cell_difference(cell, result.status.value, list(result.outputs), calls, final, again=again,
                           unrecorded=unrecorded, limitations=limitations)
