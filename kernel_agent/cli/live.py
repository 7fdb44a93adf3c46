"""The live display of a run on a terminal (rich): steps, output as it arrives, a spinner, progress bars.

Used by ``kernel-agent run`` when its output is a terminal (see
:func:`.console.reporter_for`; anywhere else the plain lines of
:class:`.console.ConsoleReporter`). Finished lines are printed above a live
region that shows what is going on now: a spinner while the model thinks or
a cell runs (with the time so far), the line of output still being written,
and a bar for each ``progress(message, done=, total=)`` of the running cell.
Text from the kernel or the model is cleaned (:func:`.terminal_text.terminal_safe`)
and printed as rich ``Text``: never parsed as markup, never highlighted, so
neither ``[red]`` nor escape sequences take effect. NO_COLOR is honoured by
rich.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.spinner import Spinner
from rich.syntax import Syntax
from rich.text import Text

from kernel_agent.agent.loop import AgentEvent
from kernel_agent.agent.observation import bound
from kernel_agent.cli.rendering import (
    TERMINAL_OUTPUT_CHARS,
    CellOutput,
    after_streaming,
    code_excerpt,
    progress_fraction,
    progress_line,
    tool_summary,
)
from kernel_agent.cli.terminal_text import terminal_safe

# Bars shown at once: a cell's distinct progress messages are the kernel's to multiply, and every bar is
# re-rendered at each refresh.
MAX_LIVE_BARS = 8
_STATUS_STYLES = {"ok": "green", "error": "red", "timeout": "yellow", "kernel_died": "red", "cancelled": "yellow"}


class LiveReporter:
    """An ``on_event`` callback that shows a run live on a terminal; :meth:`close` ends the live region."""

    def __init__(self, stream: TextIO, *, show_code: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(file=stream, markup=False, emoji=False, highlight=False)
        self.show_code = show_code
        self._activity = ""
        self._since = time.monotonic()
        self._refreshed = 0.0  # when output or progress last redrew the live region
        self._output = CellOutput(indent="")
        self._spinner = Spinner("dots")
        self._open_line = ""  # output still being written (no newline yet): shown in the live region
        # markup=False: a bar's description is the kernel's progress message ("[/b]" would raise MarkupError in
        # every render, "[link=...]" would make a hyperlink).
        self._progress = Progress(TextColumn("  {task.description}", markup=False), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
        self._bars: dict[str, tuple[TaskID, float, float]] = {}  # by message: the bar, done, total
        # The region is rendered from the state at each render (rich keeps the renderable it is given,
        # and re-renders it under every line printed above it: a snapshot would show stale output).
        self._live = Live(_Rendered(self._status), console=self.console, transient=True,
                          refresh_per_second=8, redirect_stdout=False, redirect_stderr=False)

    def __call__(self, event: AgentEvent) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)

    def close(self) -> None:
        """Stop the live region (idempotent); what was still being written is printed."""
        self._flush_open_line()
        if self._live.is_started:
            self._live.stop()

    # -- the live region ------------------------------------------------------------------

    def _status(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self._open_line:
            # Its tail only: the region is rendered at every chunk, and a line without a newline grows with
            # each one (rendering it whole made a cell's output cost the loop time quadratic in its length).
            tail = self._open_line[-max(20, self.console.width - 4):]
            parts.append(Text(("  " if tail is self._open_line else "  …") + tail, no_wrap=True, overflow="crop"))
        if self._activity:
            elapsed = time.monotonic() - self._since
            self._spinner.update(text=Text(f"{self._activity} ({elapsed:.0f} s)", style="dim"))
            parts.append(self._spinner)  # one spinner, so that it turns (its frame follows its start time)
        if self._bars:
            parts.append(self._progress.get_renderable())
        return Group(*parts)

    def _doing(self, activity: str) -> None:
        self._activity, self._since = activity, time.monotonic()
        if not self._live.is_started:
            self._live.start()
        self._live.refresh()

    def _refresh(self) -> None:
        # Not after close: a background cell's output can still come once the run has ended. At most 16 times a
        # second: output and progress come as fast as a kernel sends them, each render costs the event loop the
        # session runs on, and the region's own thread redraws it 8 times a second anyway.
        now = time.monotonic()
        if self._live.is_started and now - self._refreshed >= 1 / 16:
            self._refreshed = now
            self._live.refresh()

    def _print(self, renderable: RenderableType) -> None:
        self.console.print(renderable, soft_wrap=False)

    def _flush_open_line(self) -> None:
        if self._open_line:
            line, self._open_line = self._open_line, ""  # first: the region is redrawn under the printed line
            self._print(Text("  " + line))

    # -- events -----------------------------------------------------------------------------

    def _on_start(self, event: AgentEvent) -> None:
        self._print(Text.assemble(("task: ", "bold"), terminal_safe(event.text)))
        self._doing("the model is thinking")

    def _on_reply(self, event: AgentEvent) -> None:
        self.console.rule(Text(f"step {event.step}", style="bold"), align="left")
        if event.text:
            self._print(Text(terminal_safe(event.text)))
        if event.code and self.show_code:
            code = code_excerpt(terminal_safe(event.code))
            self._print(Padding(Syntax(code, "python", theme="ansi_dark", background_color="default",
                                       word_wrap=True), (0, 0, 0, 2)))
        self._doing(f"step {event.step}: the cell is running" if event.code else "the model is thinking")

    def _on_output(self, event: AgentEvent) -> None:
        if event.output is None:
            return
        text = self._open_line + self._output.add(event.output)
        *lines, self._open_line = text.split("\n")
        for line in lines:
            self._print(Text("  " + line))
        self._refresh()

    def _on_progress(self, event: AgentEvent) -> None:
        progress = event.progress
        if progress is None:
            return
        fraction = progress_fraction(progress)
        if fraction is None:
            self._print(Text("  ⋯ " + progress_line(progress), style="cyan"))
            return
        done, total = fraction
        key = terminal_safe(progress.message)[:80] or "progress"
        if key not in self._bars and len(self._bars) >= MAX_LIVE_BARS:  # the oldest bar becomes a line
            self._finish_bar(next(iter(self._bars)))
        task = self._bars[key][0] if key in self._bars else self._progress.add_task(key, total=total)
        self._bars[key] = (task, min(done, total), total)
        self._progress.update(task, completed=min(done, total), total=total)
        self._refresh()

    def _on_cell(self, event: AgentEvent) -> None:
        self._flush_open_line()
        for key in list(self._bars):  # the finished cell's bars, once, as lines
            self._finish_bar(key)
        streamed = self._output.shown
        self._output = CellOutput(indent="")
        cell = event.cell
        if cell is None:  # no cell ended: a background cell runs on, or the host answered %wait/%cancel
            shown = bound(terminal_safe(event.observation), TERMINAL_OUTPUT_CHARS, where="the notebook").text
            if shown.strip():
                self._print(Text(textwrap_indent(shown.rstrip())))
            self._doing("the model is thinking")
            return
        summary = tool_summary(cell)
        if summary:
            self._print(Text(f"  ⚙ {summary}", style="magenta"))
        shown = after_streaming(cell, event.observation) if streamed else event.observation
        shown = bound(terminal_safe(shown), TERMINAL_OUTPUT_CHARS, where="the notebook").text.rstrip()
        if shown:
            self._print(Text(textwrap_indent(shown)))
        status = cell.status.value
        self._print(Text(f"  ({status}, {cell.duration:.2f} s)", style=_STATUS_STYLES.get(status, "")))
        self._doing("the model is thinking")

    def _finish_bar(self, key: str) -> None:
        task, done, total = self._bars.pop(key)
        self._print(Text(f"  ⋯ {key} [{done:g}/{total:g}]", style="cyan"))
        self._progress.remove_task(task)

    def _on_answer_rejected(self, event: AgentEvent) -> None:
        first = terminal_safe(event.text).splitlines()[0] if event.text else ""
        self._print(Text(f"  ✗ final_answer rejected: {first}", style="red"))

    def _on_end(self, event: AgentEvent) -> None:
        self.close()
        if event.result is not None:
            self.console.rule()
            self._print(Text(terminal_safe(str(event.result))))


class _Rendered:
    """A renderable made anew each time it is rendered."""

    def __init__(self, make: Callable[[], RenderableType]) -> None:
        self._make = make

    def __rich__(self) -> RenderableType:
        return self._make()


def textwrap_indent(text: str) -> str:
    """Every line indented by two spaces."""
    return "\n".join("  " + line if line else "" for line in text.split("\n"))
