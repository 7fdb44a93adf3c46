"""What a cell produced: CellResult, CellError, CellStatus (public; pydantic: they go into notebooks)."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kernel_agent.tools.calls import ProgressEvent, ToolCall

DEFAULT_MAX_OUTPUT_BYTES = 2 * 1024**2
#: The msg_type of a note that output addressed to a cell was lost in transit. Its content:
#: ``reason`` (what happened, for the marker) and ``min_bytes`` (how much at least; counted as dropped).
#: The connection sends one to every request in flight when the kernel cut the iopub connection with a
#: message over the host's size limit.
OUTPUT_LOST = "kernel_agent.output_lost"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CellStatus(str, Enum):
    """How a cell ended."""

    OK = "ok"
    ERROR = "error"  # the code raised
    TIMEOUT = "timeout"  # interrupted (or killed) after the timeout
    KERNEL_DIED = "kernel_died"  # the kernel process ended during the cell
    CANCELLED = "cancelled"  # interrupted (or killed) because its caller cancelled it (a background cell, Ctrl-C)


class CellError(BaseModel):
    """An exception raised by the cell's code (or the reason the cell did not finish)."""

    model_config = ConfigDict(frozen=True)

    ename: str
    evalue: str
    traceback: list[str] = Field(default_factory=list, description="as the kernel sent it (ANSI-coloured)")

    @property
    def plain_traceback(self) -> str:
        """The traceback as plain text, without terminal colour codes (for models and logs)."""
        return _ANSI_ESCAPE.sub("", "\n".join(self.traceback))


class CellResult(BaseModel):
    """Everything one executed cell produced. Never raised: read ``status`` and ``error``."""

    code: str
    status: CellStatus
    outputs: list[dict[str, Any]] = Field(default_factory=list, description="nbformat v4 output dicts, in order")
    error: CellError | None = None
    execution_count: int | None = None
    duration: float = Field(description="seconds from request to completion")
    timed_out: bool = False
    kernel_restarted: bool = Field(default=False, description="a fresh kernel replaced the one that ran this cell")
    state_lost: bool = Field(default=False, description="variables defined before this cell are gone")
    dropped_output_bytes: int = Field(default=0, description="output beyond max_output_bytes, not kept")
    tool_calls: list[ToolCall] = Field(default_factory=list, description="tool calls that arrived while the cell ran")
    progress: list[ProgressEvent] = Field(default_factory=list)
    final_answer: Any = Field(default=None, description="the value given to final_answer(), if it was called")
    has_final_answer: bool = False

    @property
    def ok(self) -> bool:
        """True when the cell ran to completion without raising."""
        return self.status is CellStatus.OK

    @property
    def stdout(self) -> str:
        """Everything the cell printed to standard output (after the output cap)."""
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        """Everything the cell printed to standard error (after the output cap)."""
        return self._stream("stderr")

    @property
    def result(self) -> str | None:
        """The text/plain form of the cell's value (its last expression), or None."""
        for output in self.outputs:
            if output["output_type"] == "execute_result":
                text = output.get("data", {}).get("text/plain")
                return "".join(text) if isinstance(text, list) else text
        return None

    def _stream(self, name: str) -> str:
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == name)


# -- what the kernel says, made the shapes a result holds (the kernel may send any JSON in any field) --------------


def execution_count_of(value: Any) -> int | None:
    """An execution count as the kernel gave it, or None when it is not a plain, sane int."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def text_of(value: Any) -> str:
    """A field that should be text (an error's name or value): text as given, anything else as JSON-ish text."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def lines_of(value: Any) -> list[str]:
    """A traceback: a list of lines as given; a lone string is one line; anything else, no lines."""
    if isinstance(value, str):
        return [value]
    return [text_of(line) for line in value] if isinstance(value, list) else []
