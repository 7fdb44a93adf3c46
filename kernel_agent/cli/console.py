"""Live progress of a run in a terminal (`run`, `demo`): each step's message, code, tool calls, progress, output."""

from __future__ import annotations

import collections
import json
import sys
import textwrap
from typing import TextIO

from kernel_agent.agent.loop import AgentEvent
from kernel_agent.agent.observation import bound
from kernel_agent.runtime.results import CellResult

# What a terminal shows of one observation (the model may see more; the notebook has it all).
TERMINAL_OUTPUT_CHARS = 1500
# What a terminal shows of one cell's code: its first and last lines, and a line saying how many are between.
TERMINAL_CODE_LINES = 40


class ConsoleReporter:
    """An ``on_event`` callback that prints a run as it happens."""

    def __init__(self, stream: TextIO | None = None, *, show_code: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.show_code = show_code

    def __call__(self, event: AgentEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)
            self.stream.flush()

    def _print(self, text: str = "") -> None:
        print(text, file=self.stream)

    def _on_start(self, event: AgentEvent) -> None:
        self._print(f"task: {event.text}")

    def _on_reply(self, event: AgentEvent) -> None:
        self._print(f"\n── step {event.step} " + "─" * 40)
        if event.text:
            self._print(textwrap.fill(event.text, width=100, replace_whitespace=False))
        if event.code and self.show_code:
            self._print(textwrap.indent(_code_excerpt(event.code), "  │ ", lambda line: True))

    def _on_progress(self, event: AgentEvent) -> None:
        if event.progress is not None:
            fields = " ".join(f"{k}={v}" for k, v in event.progress.fields.items())
            self._print(f"  ⋯ {event.progress.message} {fields}".rstrip())

    def _on_cell(self, event: AgentEvent) -> None:
        if event.cell is None:  # no cell ended: a background cell runs on, or the host answered %wait/%cancel
            if event.observation:
                self._print(textwrap.indent(bound(event.observation, TERMINAL_OUTPUT_CHARS, where="the notebook")
                                            .text.rstrip(), "  "))
            return
        summary = _tool_summary(event.cell)
        if summary:
            self._print(f"  ⚙ {summary}")
        shown = bound(event.observation, TERMINAL_OUTPUT_CHARS, where="the notebook").text.rstrip()
        if shown:
            self._print(textwrap.indent(shown, "  "))
        self._print(f"  ({event.cell.status.value}, {event.cell.duration:.2f} s)")

    def _on_answer_rejected(self, event: AgentEvent) -> None:
        self._print(f"  ✗ final_answer rejected: {event.text.splitlines()[0]}")

    def _on_end(self, event: AgentEvent) -> None:
        if event.result is None:
            return
        self._print("\n" + "═" * 48)
        self._print(str(event.result))


def _code_excerpt(code: str) -> str:
    """The code as a terminal shows it: whole when short, else its head and tail around a count of what is cut."""
    lines = code.splitlines()
    if len(lines) <= TERMINAL_CODE_LINES:
        return code
    head, tail = lines[: TERMINAL_CODE_LINES // 2], lines[-(TERMINAL_CODE_LINES // 4):]
    cut = len(lines) - len(head) - len(tail)
    return "\n".join([*head, f"… {cut:,} more lines (the notebook has the whole cell) …", *tail])


def _tool_summary(cell: CellResult) -> str:
    """``3 tool calls: shop.orders ×3`` (failures counted apart)."""  # noqa: RUF002 - a multiplication sign, as shown
    if not cell.tool_calls:
        return ""
    names = collections.Counter(call.tool for call in cell.tool_calls)
    failed = sum(call.status.value != "ok" for call in cell.tool_calls)
    listed = ", ".join(f"{name} ×{count}" if count > 1 else name for name, count in names.most_common(6))  # noqa: RUF001 - a multiplication sign, as shown
    more = f", {len(names) - 6} more tools" if len(names) > 6 else ""
    count = len(cell.tool_calls)
    return f"{count} tool call{'s' if count != 1 else ''}: {listed}{more}" + (f" ({failed} failed)" if failed else "")


def answer_text(answer: object) -> str:
    """An answer for a terminal: strings as they are, other values as indented JSON where possible."""
    if isinstance(answer, str):
        return answer
    try:
        return json.dumps(answer, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(answer)
