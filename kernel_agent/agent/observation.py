"""What the model gets back from a cell: its output as text, bounded, with errors made compact.

Only this text travels back to the model, so it decides what a step costs:
the head and tail of a long output are kept (the start says what the code
did, the end usually holds the result or the error), with a marker saying
how much was cut and where the whole output is (the notebook, and a file in
the workspace the model's next cell can read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kernel_agent.cell import CellResult, CellStatus

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ARROW = re.compile(r"^-*> *\d+ ?")
# Frames kept at each end of a long traceback; the middle is usually library plumbing.
_FRAMES_HEAD, _FRAMES_TAIL = 2, 4
SPILL_DIR = "outputs"


@dataclass(frozen=True)
class BoundedText:
    """An observation's text, and how much of the full text it lost."""

    text: str
    full_chars: int
    cut_chars: int
    spill_file: str | None = None

    @property
    def truncated(self) -> bool:
        return self.cut_chars > 0


def cell_output_text(cell: CellResult) -> str:
    """Everything the cell showed, as plain text in the order it appeared."""
    parts: list[str] = []
    for output in cell.outputs:
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(_text(output.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "text/plain" in data:
                prefix = f"Out[{output.get('execution_count')}]: " if kind == "execute_result" else ""
                parts.append(prefix + _text(data["text/plain"]) + "\n")
            else:
                shown = ", ".join(sorted(data)) or "empty"
                parts.append(f"[display output ({shown}) not shown here: it is in the notebook]\n")
        elif kind == "error":
            parts.append(compact_traceback([_text(line) for line in output.get("traceback", [])],
                                           output.get("ename", "Error"), output.get("evalue", "")) + "\n")
    text = "".join(parts)
    if cell.error is not None and not any(o.get("output_type") == "error" for o in cell.outputs):
        text += f"{cell.error.ename}: {cell.error.evalue}\n"
    return text


def cell_notes(cell: CellResult) -> str:
    """What happened to the cell besides its output: a timeout, a new kernel, lost output."""
    notes: list[str] = []
    if cell.status is CellStatus.TIMEOUT and not cell.state_lost:
        notes.append("The cell hit its time limit and was interrupted; variables from earlier cells are kept.")
    if cell.state_lost:
        notes.append("The kernel was restarted: every variable, import and function from earlier cells is gone "
                     "(files in the workspace remain). Recreate what you still need.")
    if cell.dropped_output_bytes:
        notes.append(f"{cell.dropped_output_bytes:,} bytes of output went past the session's output cap and "
                     "were not kept anywhere: print less.")
    if cell.has_final_answer:
        notes.append("final_answer() was called.")
    return "\n".join(f"[{note}]" for note in notes)


def compact_traceback(lines: list[str], ename: str, evalue: str) -> str:
    """IPython's traceback, one line per frame (location and the failing line), long ones shortened."""
    entries = [_ANSI.sub("", line).rstrip("\n") for line in lines]
    frames: list[str] = []
    for entry in entries:
        if set(entry.strip()) <= {"-"} or "Traceback (most recent call last)" in entry:
            continue
        if entry.startswith(f"{ename}:") or entry == ename:
            continue
        entry_lines = entry.splitlines()
        arrow = next((_ARROW.sub("", line).strip() for line in entry_lines if _ARROW.match(line)), None)
        if arrow is not None and entry_lines:
            frames.append(f"  {entry_lines[0].strip()}: {arrow}")
        else:
            frames.append("\n".join(f"  {line}" for line in entry_lines))
    if len(frames) > _FRAMES_HEAD + _FRAMES_TAIL:
        hidden = len(frames) - _FRAMES_HEAD - _FRAMES_TAIL
        frames = [*frames[:_FRAMES_HEAD], f"  ... {hidden} frames not shown ...", *frames[-_FRAMES_TAIL:]]
    head = ["Traceback (most recent call last):"] if frames else []
    return "\n".join([*head, *frames, f"{ename}: {evalue}".rstrip(": ") if evalue else ename])


def bound(text: str, limit: int, *, where: str, spill_to: Path | None = None, spill_name: str = "") -> BoundedText:
    """``text`` cut to about ``limit`` characters: head (60%) and tail (40%) around a marker.

    ``where`` names the notebook cell holding the full output. With
    ``spill_to`` (the workspace), the full text is also written to
    ``outputs/<spill_name>`` there, so the model can read it from the kernel.
    """
    if len(text) <= limit:
        return BoundedText(text, len(text), 0)
    head_end = _line_break_before(text, int(limit * 0.6))
    tail_start = _line_break_after(text, len(text) - int(limit * 0.4))
    if tail_start <= head_end:
        tail_start = head_end
    cut = tail_start - head_end
    spill: str | None = None
    if spill_to is not None and spill_name:
        spill = f"{SPILL_DIR}/{spill_name}"
        target = spill_to / spill
        target.parent.mkdir(mode=0o755, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    cut_lines = text.count("\n", head_end, tail_start)
    full = f"the full output is in {where}" + (f" and in the workspace file {spill!r}" if spill else "")
    marker = f"\n[... {cut:,} of {len(text):,} characters ({cut_lines:,} lines) cut here; {full} ...]\n"
    return BoundedText(text[:head_end] + marker + text[tail_start:], len(text), cut, spill)


def _line_break_before(text: str, index: int) -> int:
    """``index`` moved back to just after a newline, when one is near (a cut mid-line reads badly)."""
    newline = text.rfind("\n", max(0, index - 200), index)
    return newline + 1 if newline != -1 else index


def _line_break_after(text: str, index: int) -> int:
    newline = text.find("\n", index, index + 200)
    return newline + 1 if newline != -1 else index


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value)
