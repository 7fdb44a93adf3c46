"""What the model gets back from a cell: its output as text, bounded, with errors made compact.

Only this text travels back to the model, so it decides what a step costs:
the head and tail of a long output are kept (the start says what the code
did, the end usually holds the result or the error), with a marker saying
how much was cut and where the whole output is (the notebook, and a file in
the workspace the model's next cell can read).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from kernel_agent import safe_fs
from kernel_agent.errors import UnsafePathError
from kernel_agent.runtime.results import CellResult, CellStatus

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
    spill_refused: str | None = None  # why the full text was not written to the workspace

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
    ``outputs/<spill_name>`` there, so the model can read it from the kernel
    (see :func:`spill`); when that is refused, the marker says so and why.
    """
    if len(text) <= limit:
        return BoundedText(text, len(text), 0)
    head_end = _line_break_before(text, int(limit * 0.6))
    tail_start = _line_break_after(text, len(text) - int(limit * 0.4))
    if tail_start <= head_end:
        tail_start = head_end
    cut = tail_start - head_end
    spill: str | None = None
    refused: str | None = None
    if spill_to is not None and spill_name:
        spill, refused = spill_text(spill_to, spill_name, text)
    cut_lines = text.count("\n", head_end, tail_start)
    full = f"the full output is in {where}" + (f" and in the workspace file {spill!r}" if spill else "")
    if refused:
        full += f" (not in the workspace: writing {SPILL_DIR}/{spill_name} there was refused: {refused})"
    marker = f"\n[... {cut:,} of {len(text):,} characters ({cut_lines:,} lines) cut here; {full} ...]\n"
    return BoundedText(text[:head_end] + marker + text[tail_start:], len(text), cut, spill, refused)


def spill_text(workspace: Path, name: str, text: str) -> tuple[str | None, str | None]:
    """Write ``text`` to ``outputs/<name>`` in ``workspace``: (the file's path there, or None; why not).

    The workspace is the kernel's: any name in it may be a link the kernel
    planted (``outputs -> /root``, ``outputs/step-001-1.txt -> /etc/...``),
    and the host is often root. So it is reached only through descriptors:
    ``outputs`` is opened without following a link and must be a directory;
    the file is created new (``O_EXCL|O_NOFOLLOW``), never reused; if the
    name is taken, a fresh name is tried once. The file is made 0644 (and a
    directory the host made 0755) so the kernel's uid can read it. Any
    failure is returned as a reason, never raised: the agent loop goes on.
    """
    data = text.encode("utf-8", errors="replace")
    try:
        workspace_fd = safe_fs.open_dir(workspace)
    except UnsafePathError as exc:
        return None, str(exc)
    try:
        try:
            outputs_fd = safe_fs.open_subdir(workspace_fd, SPILL_DIR, create=True, mode=0o755)
        except UnsafePathError as exc:
            return None, f"{SPILL_DIR!r} is a symbolic link" if _is_link(workspace_fd, SPILL_DIR) else str(exc)
        try:
            if os.fstat(outputs_fd).st_uid == os.geteuid():
                os.fchmod(outputs_fd, 0o755)  # ours: the umask may have hidden it from the kernel's uid
            stem, dot, suffix = name.rpartition(".")
            candidates = [name, f"{stem or suffix}-{secrets.token_hex(4)}{dot + suffix if stem else ''}"]
            for candidate in candidates:
                try:
                    safe_fs.write_new_file(outputs_fd, candidate, data, mode=0o644)
                    return f"{SPILL_DIR}/{candidate}", None
                except UnsafePathError as exc:
                    reason = str(exc)
            return None, reason
        finally:
            os.close(outputs_fd)
    except (UnsafePathError, OSError) as exc:
        return None, str(exc)
    finally:
        with contextlib.suppress(OSError):
            os.close(workspace_fd)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _line_break_before(text: str, index: int) -> int:
    """``index`` moved back to just after a newline, when one is near (a cut mid-line reads badly)."""
    newline = text.rfind("\n", max(0, index - 200), index)
    return newline + 1 if newline != -1 else index


def _line_break_after(text: str, index: int) -> int:
    newline = text.find("\n", index, index + 200)
    return newline + 1 if newline != -1 else index


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value)
