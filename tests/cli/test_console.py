"""The live terminal display of a run (kernel_agent.cli.console)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from kernel_agent.agent.loop import AgentEvent
from kernel_agent.cli.console import ConsoleReporter
from kernel_agent.cli.live import LiveReporter
from kernel_agent.cli.rendering import TERMINAL_CODE_LINES
from kernel_agent.cli.terminal_text import terminal_safe
from kernel_agent.runtime.streaming import OutputChunk
from kernel_agent.tools.calls import ProgressEvent


def test_a_huge_cell_is_not_echoed_in_full() -> None:
    """A 20,000-line cell shows its head and tail and says how many lines were left out."""
    code = "\n".join(f"x{i} = {i}" for i in range(20_000))
    stream = io.StringIO()
    ConsoleReporter(stream)(AgentEvent("reply", 1, text="writing a big cell", code=code))
    shown = stream.getvalue()
    assert "x0 = 0" in shown and "x19999 = 19999" in shown and "x10000 = 10000" not in shown
    cut = 20_000 - TERMINAL_CODE_LINES // 2 - TERMINAL_CODE_LINES // 4
    assert f"… {cut:,} more lines (the notebook has the whole cell) …" in shown
    assert shown.count("\n") < TERMINAL_CODE_LINES + 10


def test_a_short_cell_is_shown_whole() -> None:
    code = "a = 1\nprint(a)"
    stream = io.StringIO()
    ConsoleReporter(stream)(AgentEvent("reply", 1, code=code))
    assert "  │ a = 1\n  │ print(a)\n" in stream.getvalue()


# -- live output, and text from the kernel made safe for the terminal ---------------------------------------------

HOSTILE = ("\x1b]52;c;cm0gLXJmIH4=\x07"  # OSC 52: write the clipboard
           "\x1b]0;pwned\x1b\\"  # OSC 0: set the window title (ST-terminated)
           "\x1b[2J\x1b[H\x1b[1A"  # clear the screen, cursor home, cursor up
           "\x9b2J\x9d0;c1 title\x9c"  # the same as C1 controls
           "\x1bP+q544e\x1b\\"  # DCS: query the terminal
           "\u202eevil\u202c"  # a bidirectional override
           "[bold red]markup[/] stays\r\n")


def _no_controls(text: str) -> bool:
    return not any((ord(char) < 32 and char not in "\n\t") or 0x7f <= ord(char) <= 0x9f for char in text)


def chunk(text: str, name: str = "stdout") -> AgentEvent:
    return AgentEvent("output", 1, text=text, output=OutputChunk("stream", text, name))


def test_terminal_safe_removes_every_control_sequence() -> None:
    cleaned = terminal_safe(HOSTILE)
    assert cleaned == "evil[bold red]markup[/] stays\n"
    assert terminal_safe("tab\tand newline\nstay; a\rcarriage return starts a line") == (
        "tab\tand newline\nstay; a\ncarriage return starts a line")
    # A sequence cut between two pieces leaves nothing that a terminal could act on.
    assert _no_controls(terminal_safe("text\x1b]52;c;") + terminal_safe("cm0=\x07 more"))


def test_plain_reporter_streams_output_as_lines_without_control_codes() -> None:
    stream = io.StringIO()
    reporter = ConsoleReporter(stream)
    reporter(AgentEvent("reply", 1, code="work()"))
    reporter(chunk("first line\npart"))
    assert stream.getvalue().endswith("  first line\n  part")  # shown as it came, the open line too
    reporter(chunk("ial line\n"))
    reporter(chunk(HOSTILE, "stderr"))
    reporter(AgentEvent("progress", 1, progress=ProgressEvent(message="loading", fields={"done": 2, "total": 5},
                                                              time=0.0)))
    shown = stream.getvalue()
    assert "  first line\n  partial line\n  evil[bold red]markup[/] stays\n  ⋯ loading [2/5]\n" in shown
    assert _no_controls(shown)


def test_live_reporter_shows_output_progress_bars_and_no_kernel_control_sequence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal (rich): output above the live region, a bar per progress(done=, total=); what the kernel sent
    never reaches the terminal as a sequence; markup is shown, not applied. NO_COLOR: no colours at all."""
    monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, markup=False, emoji=False, highlight=False)
    reporter = LiveReporter(stream, console=console)
    reporter(AgentEvent("start", 0, text="a task \x1b]0;title\x07"))
    reporter(AgentEvent("reply", 1, text="I will [blink]work[/blink]", code="print('\\x1b[2J')"))
    reporter(chunk(HOSTILE))
    for done in (1, 2, 3):
        reporter(AgentEvent("progress", 1, progress=ProgressEvent(message="rows", fields={"done": done, "total": 3},
                                                                  time=0.0)))
    reporter.close()
    shown = stream.getvalue()
    for sequence in ("\x1b]", "\x07", "\x1b[2J", "\x1b[H", "\x1bP", "\x9b", "\x9d", "\u202e"):
        assert sequence not in shown, repr(sequence)
    assert "[bold red]markup[/] stays" in shown and "I will [blink]work[/blink]" in shown
    assert "rows" in shown and "3/3" in shown
    assert re.search(r"\x1b\[(3[0-7]|9[0-7]|38;)", shown) is None  # no foreground colour (NO_COLOR)
