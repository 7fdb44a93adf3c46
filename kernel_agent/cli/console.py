"""Live progress of a run in a terminal (`run`, `demo`): each step's message, code, tool calls, progress, output.

:class:`ConsoleReporter` prints plain lines, nothing else (pipes, CI logs,
files: no control codes, nothing rewritten, nothing lost): a cell's output
as it arrives, progress as lines. On a terminal, ``run`` uses the live
display of :mod:`.live` instead (:func:`reporter_for` picks). Everything the
kernel or the model wrote goes through :func:`.terminal_text.terminal_safe`.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from typing import Protocol, TextIO

from kernel_agent.agent.loop import AgentEvent
from kernel_agent.agent.observation import bound
from kernel_agent.cli.rendering import (
    TERMINAL_OUTPUT_CHARS,
    CellOutput,
    after_streaming,
    code_excerpt,
    progress_line,
    tool_summary,
)
from kernel_agent.cli.terminal_text import terminal_safe


class ConsoleReporter:
    """An ``on_event`` callback that prints a run as it happens, in plain lines."""

    def __init__(self, stream: TextIO | None = None, *, show_code: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.show_code = show_code
        self._output = CellOutput()

    def __call__(self, event: AgentEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)
            self.stream.flush()

    def close(self) -> None:
        """The run ended (or was interrupted): end a line of output left open."""
        self._write(self._output.finish())
        self.stream.flush()

    def _print(self, text: str = "") -> None:
        self._write(self._output.finish())
        print(text, file=self.stream)

    def _write(self, text: str) -> None:
        if text:
            self.stream.write(text)

    def _on_start(self, event: AgentEvent) -> None:
        self._print(f"task: {terminal_safe(event.text)}")

    def _on_reply(self, event: AgentEvent) -> None:
        self._print(f"\n── step {event.step} " + "─" * 40)
        if event.text:
            self._print(textwrap.fill(terminal_safe(event.text), width=100, replace_whitespace=False))
        if event.code and self.show_code:
            self._print(textwrap.indent(code_excerpt(terminal_safe(event.code)), "  │ ", lambda line: True))

    def _on_output(self, event: AgentEvent) -> None:
        if event.output is not None:
            self._write(self._output.add(event.output))

    def _on_progress(self, event: AgentEvent) -> None:
        if event.progress is not None:
            self._print(f"  ⋯ {progress_line(event.progress)}")

    def _on_cell(self, event: AgentEvent) -> None:
        if event.cell is None:  # no cell ended: a background cell runs on, or the host answered %wait/%cancel
            if event.observation:
                shown = bound(terminal_safe(event.observation), TERMINAL_OUTPUT_CHARS, where="the notebook").text
                self._print(textwrap.indent(shown.rstrip(), "  "))
            return
        streamed = self._output.shown
        self._write(self._output.finish())  # ends the streamed output's last line, if open
        self._output = CellOutput()
        summary = tool_summary(event.cell)
        if summary:
            self._print(f"  ⚙ {summary}")
        shown = after_streaming(event.cell, event.observation) if streamed else event.observation
        shown = bound(terminal_safe(shown), TERMINAL_OUTPUT_CHARS, where="the notebook").text.rstrip()
        if shown:
            self._print(textwrap.indent(shown, "  "))
        self._print(f"  ({event.cell.status.value}, {event.cell.duration:.2f} s)")

    def _on_answer_rejected(self, event: AgentEvent) -> None:
        self._print(f"  ✗ final_answer rejected: {terminal_safe(event.text).splitlines()[0]}")

    def _on_end(self, event: AgentEvent) -> None:
        if event.result is None:
            return
        self._print("\n" + "═" * 48)
        self._print(terminal_safe(str(event.result)))


class Reporter(Protocol):
    """What shows a run: called with each event; closed when the run ends or is interrupted."""

    def __call__(self, event: AgentEvent) -> None: ...

    def close(self) -> None: ...


def reporter_for(stream: TextIO) -> Reporter:
    """The live display on a terminal (rich), plain lines anywhere else (pipes, files, CI, TERM=dumb)."""
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        from kernel_agent.cli.live import LiveReporter

        return LiveReporter(stream)
    return ConsoleReporter(stream)


def answer_text(answer: object) -> str:
    """An answer for a terminal: strings as they are, other values as indented JSON where possible (cleaned)."""
    if isinstance(answer, str):
        return terminal_safe(answer)
    try:
        return terminal_safe(json.dumps(answer, indent=2, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return terminal_safe(repr(answer))
