"""What a run's display shows, shared by the plain lines (:mod:`.console`) and the live display (:mod:`.live`).

A running cell's output as terminal text (cleaned, bounded), the end of a
cell whose output was streamed, progress lines and fractions, code excerpts,
tool-call summaries.
"""

from __future__ import annotations

import collections
import math

from kernel_agent.agent.observation import cell_output_text, compact_traceback
from kernel_agent.cli.terminal_text import terminal_safe
from kernel_agent.runtime.results import CellResult
from kernel_agent.runtime.streaming import OutputChunk
from kernel_agent.tools.calls import ProgressEvent

# What a terminal shows of one observation when nothing was streamed (the model may see more; the notebook has it all).
TERMINAL_OUTPUT_CHARS = 1500
# What a terminal shows of one cell's streamed output; the rest is in the notebook.
TERMINAL_STREAM_CHARS = 20_000
# What a terminal shows of one cell's code: its first and last lines, and a line saying how many are between.
TERMINAL_CODE_LINES = 40
# What a terminal shows of one progress line, and of one tool name (both the kernel's: a message may be 64 KiB).
TERMINAL_PROGRESS_CHARS = 500
TERMINAL_NAME_CHARS = 80


class CellOutput:
    """A running cell's output as terminal text: indented, cleaned, bounded; tracks whether a line is open."""

    def __init__(self, indent: str = "  ", limit: int = TERMINAL_STREAM_CHARS) -> None:
        self.indent = indent
        self.limit = limit
        self.shown = 0  # characters shown so far
        self._line_open = False
        self._cut = False

    def add(self, chunk: OutputChunk) -> str:
        """The text to print for ``chunk`` (errors wait for the cell's end, where the traceback is shown)."""
        text = chunk_text(chunk)
        if not text or self._cut:
            return ""
        if self.shown + len(text) > self.limit:
            text, self._cut = text[: max(0, self.limit - self.shown)], True
            text += ("" if text.endswith("\n") or not text else "\n") + "… (more output: the notebook has it)\n"
        self.shown += len(text)
        lines = text.split("\n")
        out = [("" if self._line_open else self.indent) + lines[0]]
        out += [self.indent + line if line else "" for line in lines[1:]]
        self._line_open = not text.endswith("\n")
        return "\n".join(out)

    def finish(self) -> str:
        """What ends an open line ("" when none is open)."""
        if not self._line_open:
            return ""
        self._line_open = False
        return "\n"


def chunk_text(chunk: OutputChunk) -> str:
    """What a terminal shows of one piece of output, cleaned of control sequences."""
    if chunk.output_type == "stream":
        return terminal_safe(chunk.text)
    if chunk.output_type in ("display_data", "execute_result"):
        shown = chunk.text if "text/plain" in chunk.data else "[" + ", ".join(sorted(chunk.data)) + "]"
        return terminal_safe(shown).rstrip("\n") + "\n"
    if chunk.output_type == "note":
        return f"[kernel-agent: {terminal_safe(chunk.text)}]\n"
    return ""  # errors (shown with the cell's end), clear_output (a terminal cannot take lines back)


def after_streaming(cell: CellResult, observation: str) -> str:
    """What the end of a streamed cell adds: its error's traceback, and what the model was told past the output
    (the notes: images attached, a timeout, output dropped, final_answer...)."""
    output = cell_output_text(cell).rstrip("\n")
    if output and observation.startswith(output):
        notes = observation[len(output):].lstrip("\n")
    else:  # the model got the output cut to its limit: its notes are the bracketed lines at the end
        lines = observation.split("\n")
        first = len(lines)
        while first > 0 and lines[first - 1].startswith("["):
            first -= 1
        notes = "\n".join(lines[first:])
    parts = []
    if cell.error is not None:  # streamed as its name only: the traceback comes with the cell's end
        parts.append(compact_traceback(cell.error.traceback, cell.error.ename, cell.error.evalue))
    parts.append(notes)
    return "\n".join(part for part in parts if part)


def progress_line(progress: ProgressEvent) -> str:
    """``loading [3/10] file=a.csv``: the message, done/total when given, the other fields."""
    fields = dict(progress.fields)
    done, total = fields.pop("done", None), fields.pop("total", None)
    parts = [terminal_safe(progress.message)]
    if done is not None:
        parts.append(f"[{terminal_safe(str(done))}/{terminal_safe(str(total))}]" if total is not None
                     else f"[{terminal_safe(str(done))}]")
    parts += [terminal_safe(f"{key}={value}") for key, value in fields.items()]
    return _clip(" ".join(part for part in parts if part), TERMINAL_PROGRESS_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def progress_fraction(progress: ProgressEvent) -> tuple[float, float] | None:
    """(done, total) when the event gives both as numbers, with total above zero."""
    done, total = _number(progress.fields.get("done")), _number(progress.fields.get("total"))
    if done is None or total is None or total <= 0:
        return None
    return done, total


def _number(value: object) -> float | None:
    """A finite float from the kernel's value (any int size, NaN, a string...), or None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def code_excerpt(code: str) -> str:
    """The code as a terminal shows it: whole when short, else its head and tail around a count of what is cut."""
    lines = code.splitlines()
    if len(lines) <= TERMINAL_CODE_LINES:
        return code
    head, tail = lines[: TERMINAL_CODE_LINES // 2], lines[-(TERMINAL_CODE_LINES // 4):]
    cut = len(lines) - len(head) - len(tail)
    return "\n".join([*head, f"… {cut:,} more lines (the notebook has the whole cell) …", *tail])


def tool_summary(cell: CellResult) -> str:
    """``3 tool calls: shop.orders ×3`` (failures counted apart)."""  # noqa: RUF002 - a multiplication sign, as shown
    if not cell.tool_calls:
        return ""
    # A refused call keeps the name the kernel asked for: any string, so cleaned and clipped like its output.
    names = collections.Counter(_clip(terminal_safe(call.tool), TERMINAL_NAME_CHARS) for call in cell.tool_calls)
    failed = sum(call.status.value != "ok" for call in cell.tool_calls)
    listed = ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in names.most_common(6))  # noqa: RUF001 - a multiplication sign, as shown
    more = f", {len(names) - 6} more tools" if len(names) > 6 else ""
    count = len(cell.tool_calls)
    return f"{count} tool call{'s' if count != 1 else ''}: {listed}{more}" + (f" ({failed} failed)" if failed else "")
