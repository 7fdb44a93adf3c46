"""Attacks on the comparison of a cell run again with its recording (replay, resume).

Both sides are hostile text: the recorded outputs come from a notebook (anyone
may have written it) and the rerun's from the kernel. Comparing them must
cost time linear in their size: a regex or a diff that is quadratic in a
kernel's output hangs ``kernel-agent replay`` and ``--resume`` for hours.
"""

from __future__ import annotations

import difflib

from kernel_agent.record.compare import DIFF_LINES, bounded_diff, cell_difference, sanitize
from kernel_agent.record.recording import RecordedCell


def _cell(text: str) -> RecordedCell:
    return RecordedCell(index=1, seq=1, source="print(x)", status="ok",
                        outputs=[{"output_type": "stream", "name": "stdout", "text": text}], calls=[],
                        final_answer=(False, None), duration=0.1, timed_out=False)


def _stream(text: str) -> list[dict[str, str]]:
    return [{"output_type": "stream", "name": "stdout", "text": text}]


def test_a_long_run_of_blanks_that_does_not_end_its_line_is_sanitized_in_linear_time() -> None:
    """``[ \\t]+$`` (MULTILINE) tried every start in the run: 40,000 spaces took 7 s, two million hours."""
    text = " " * 2_000_000 + "x\n" + "y \t\r\n"
    assert sanitize(text) == " " * 2_000_000 + "x\ny\n"


def test_outputs_that_differ_on_every_line_are_compared_in_bounded_time() -> None:
    """difflib's matcher is quadratic in the lines it sees: 20,000 differing lines took 7 s, 400,000 hours."""
    lines = 400_000
    recorded = "".join(f"l{i % (lines // 20)}\n" for i in range(lines))
    again = "".join(f"l{(i * 7 + 3) % (lines // 20)}\n" for i in range(lines))
    difference = cell_difference(_cell(recorded), "ok", _stream(again), [], (False, None), again="resumed")
    assert difference is not None and "outputs differ" in difference.reasons
    assert difference.first_line.startswith("-")
    assert f"more than {DIFF_LINES:,} lines differ" in difference.diff
    assert difference.diff.count("\n") < 3 * DIFF_LINES


def test_a_difference_after_a_long_shared_prefix_is_found_and_shown_with_its_place() -> None:
    shared = "".join(f"same {i}\n" for i in range(300_000))
    difference = cell_difference(_cell(shared + "recorded\n" + shared), "ok", _stream(shared + "again\n" + shared),
                                 [], (False, None))
    assert difference is not None
    assert difference.first_line == "-recorded | +again"
    assert "(from line " in difference.diff and difference.diff.count("\n") < 20


def test_a_small_diff_is_what_difflib_gives() -> None:
    recorded, again = ["a\n", "b\n", "c\n", "d\n"], ["a\n", "x\n", "c\n", "d\n", "e\n"]
    assert bounded_diff(recorded, again, "r", "a") == list(difflib.unified_diff(recorded, again, "r", "a"))
