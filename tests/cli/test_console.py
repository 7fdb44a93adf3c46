"""The live terminal display of a run (kernel_agent.cli.console)."""

from __future__ import annotations

import io

from kernel_agent.cli.console import TERMINAL_CODE_LINES, ConsoleReporter
from kernel_agent.agent.loop import AgentEvent


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
