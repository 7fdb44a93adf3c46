"""Attacks on the terminal through what a run shows: a kernel's output, progress messages, tool names.

Everything here is kernel-controlled (or steered by it) and reaches the user's
terminal: a live display that raises, or a byte the terminal acts on, is the
kernel's win.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console, Group
from rich.text import Text

from kernel_agent.agent.loop import AgentEvent
from kernel_agent.cli import live as live_module
from kernel_agent.cli.console import ConsoleReporter
from kernel_agent.cli.live import MAX_LIVE_BARS, LiveReporter
from kernel_agent.cli.rendering import TERMINAL_NAME_CHARS, TERMINAL_PROGRESS_CHARS
from kernel_agent.runtime.results import CellResult, CellStatus
from kernel_agent.runtime.streaming import OutputChunk
from kernel_agent.tools.calls import CallStatus, ProgressEvent, ToolCall

from ..cli.test_run import KERNEL_AGENT, environment


def _live() -> tuple[LiveReporter, io.StringIO]:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, markup=False, emoji=False, highlight=False)
    return LiveReporter(stream, console=console), stream


def _progress(message: str, **fields: object) -> AgentEvent:
    return AgentEvent("progress", 1, progress=ProgressEvent(message=message, fields=fields, time=0.0))


def test_a_progress_message_is_not_rich_markup_in_the_live_bars() -> None:
    """``progress("[/b]", done=1, total=2)`` made every render of the live region raise MarkupError (the run's
    display died); ``[link=...]`` made a hyperlink (OSC 8)."""
    reporter, stream = _live()
    reporter(AgentEvent("start", 0, text="task"))
    reporter(_progress("[/bold] closes nothing", done=1, total=2))
    reporter(_progress("[link=https://evil.example/]click[/link]", done=1, total=2))
    reporter.close()
    shown = stream.getvalue()
    assert "[/bold] closes nothing" in shown
    assert "[link=https://evil.example/]click[/link]" in shown
    assert "\x1b]8" not in shown


def test_many_distinct_progress_messages_keep_a_bounded_number_of_live_bars() -> None:
    """Each distinct message made a bar, every bar re-rendered at each refresh: a cell could make thousands."""
    reporter, stream = _live()
    reporter(AgentEvent("start", 0, text="task"))
    for index in range(3 * MAX_LIVE_BARS):
        reporter(_progress(f"part {index}", done=1, total=2))
        assert len(reporter._progress.tasks) <= MAX_LIVE_BARS
    reporter.close()
    assert "part 0 [1/2]" in stream.getvalue()  # a bar pushed out is shown as a line, not lost


def test_a_tool_name_the_kernel_asked_for_is_cleaned_and_clipped() -> None:
    """A refused call keeps the kernel's tool name: escape sequences in it reached the terminal."""
    name = "\x1b]0;pwned\x07\x1b[2Jshop." + "x" * 10_000
    call = ToolCall(id="1", tool=name, arguments={}, status=CallStatus.UNKNOWN_TOOL, started_at=0.0, ended_at=0.0)
    cell = CellResult(code="", status=CellStatus.OK, duration=0.0, tool_calls=[call])
    stream = io.StringIO()
    ConsoleReporter(stream)(AgentEvent("cell", 1, cell=cell))
    shown = stream.getvalue()
    assert "\x1b" not in shown and "pwned" not in shown and "shop.x" in shown
    assert len(max(shown.splitlines(), key=len)) < TERMINAL_NAME_CHARS + 100


def test_a_huge_progress_value_is_not_printed_whole() -> None:
    stream = io.StringIO()
    ConsoleReporter(stream)(_progress("upload", blob="QUFB" * 16_000))
    assert "upload blob=QUFB" in stream.getvalue()
    assert len(stream.getvalue()) <= TERMINAL_PROGRESS_CHARS + 10


def test_lone_surrogates_and_bidi_marks_do_not_reach_the_terminal() -> None:
    stream = io.StringIO()
    ConsoleReporter(stream)(AgentEvent("output", 1, output=OutputChunk("stream", "a\ud800b\u200fc\u061cd\n", "stdout")))
    shown = stream.getvalue()
    shown.encode("utf-8")  # would raise on a lone surrogate
    assert "a\ufffdbcd" in shown


# The kernel packs its messages with ensure_ascii JSON: print('\ud800') then reaches the host as a lone surrogate.
SURROGATE_CELL = """\
import json
session = get_ipython().kernel.session
session.pack = lambda obj: json.dumps(obj, default=str).encode()
print('before \\ud800 after', flush=True)
"""


def test_a_lone_surrogate_from_the_kernel_does_not_end_the_run(tmp_path: Path) -> None:
    """Printed to a UTF-8 stdout, a lone surrogate raised UnicodeEncodeError in the reporter: the line was lost."""
    workspace = tmp_path / "work"
    workspace.mkdir()
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"code": SURROGATE_CELL}, {"code": "final_answer('done')"}]))
    process = subprocess.run(
        [str(KERNEL_AGENT), "run", "t", "--model", f"scripted:{script}", "--workspace", str(workspace),
         "--notebook", str(tmp_path / "run.ipynb")], cwd=tmp_path,
        env=environment(NO_COLOR="1", PYTHONIOENCODING="utf-8"), capture_output=True, timeout=120, check=False)
    out = process.stdout.decode("utf-8")
    assert process.returncode == 0, process.stderr.decode("utf-8", "replace")[-2000:]
    assert "before \ufffd after" in out
    assert "stop reason: final_answer" in out


def test_a_flood_of_small_chunks_without_a_newline_costs_the_loop_no_render_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 prints of 10 characters without a newline re-rendered the growing open line at every chunk (4 s of
    the session's event loop for 20 kB of output): the region is redrawn at most 16 times a second, and only the
    open line's tail is in it."""
    reporter, _ = _live()
    reporter(AgentEvent("start", 0, text="task"))
    reporter(AgentEvent("reply", 1, code="spin()"))
    monkeypatch.setattr(live_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))  # a clock that stands still
    on_loop: list[int] = []
    real_refresh = reporter._live.refresh

    def counted() -> None:
        if threading.current_thread() is threading.main_thread():  # not the region's own redraws
            on_loop.append(1)
        real_refresh()

    monkeypatch.setattr(reporter._live, "refresh", counted)
    for _ in range(2_000):
        reporter(AgentEvent("output", 1, output=OutputChunk("stream", "abcdefghij", "stdout")))
        reporter(_progress("rows", done=1, total=2))
    assert len(on_loop) <= 1
    region = reporter._status()
    assert isinstance(region, Group)
    shown = region.renderables[0]
    assert isinstance(shown, Text) and len(shown.plain) <= reporter.console.width
    reporter.close()


def test_an_unterminated_string_sequence_does_not_hide_the_hosts_notes_after_it() -> None:
    """An OSC/DCS the kernel never ends was removed up to the end of the whole text: the notes the host adds after
    the kernel's output (a rejected answer, a timeout, dropped output) went with it."""
    note = "[final_answer was rejected: it is not JSON]"
    for opener in ("\x1b]0;", "\x1bP", "\x9d", "\x90", "\x1b_"):
        stream = io.StringIO()
        ConsoleReporter(stream)(AgentEvent("cell", 1, observation=f"output{opener}hidden payload\n{note}"))
        shown = stream.getvalue()
        assert note in shown and "hidden payload" not in shown, (repr(opener), shown)
