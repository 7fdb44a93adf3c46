"""Observations: what a cell sends back to the model (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

from kernel_agent.agent.observation import bound, cell_output_text, compact_traceback
from kernel_agent.runtime.results import CellResult, CellStatus


def test_short_text_is_untouched() -> None:
    bounded = bound("hello\n", 100, where="cell 1")
    assert bounded.text == "hello\n" and not bounded.truncated and bounded.spill_file is None


def test_long_text_keeps_head_and_tail_on_line_boundaries(tmp_path: Path) -> None:
    text = "".join(f"row {i}\n" for i in range(10_000))
    bounded = bound(text, 1000, where="the notebook (cell In[3])", spill_to=tmp_path, spill_name="step-003-1.txt")
    assert bounded.truncated and bounded.full_chars == len(text)
    head, marker, tail = bounded.text.partition("\n[...")
    assert head.startswith("row 0\n") and head.endswith("\n") and tail.rstrip().endswith("row 9999")
    assert f"{bounded.cut_chars:,} of {len(text):,} characters" in bounded.text
    assert "the notebook (cell In[3])" in bounded.text and "'outputs/step-003-1.txt'" in bounded.text
    assert len(bounded.text) < 1300
    assert (tmp_path / "outputs" / "step-003-1.txt").read_text() == text


def test_a_single_huge_line_is_cut_too() -> None:
    bounded = bound("x" * 100_000, 500, where="cell 1")
    assert len(bounded.text) < 700 and bounded.cut_chars > 99_000


def test_compact_traceback_keeps_one_line_per_frame_and_shortens_deep_ones() -> None:
    frames = [f"\x1b[36mFile /lib/mod.py:{n}, in f{n}()\x1b[39m\n   {n - 1} x = 1\n---> {n} f{n + 1}()\n" for n in range(10)]
    lines = ["\x1b[31m----------\x1b[39m", "\x1b[31mRecursionError\x1b[39m   Traceback (most recent call last)",
             *frames, "\x1b[31mRecursionError\x1b[39m: too deep"]
    text = compact_traceback(lines, "RecursionError", "too deep")
    assert text.splitlines()[0] == "Traceback (most recent call last):"
    assert "File /lib/mod.py:0, in f0(): f1()" in text and "4 frames not shown" in text
    assert text.splitlines()[-1] == "RecursionError: too deep" and "\x1b" not in text


def test_rich_outputs_are_named_not_dumped() -> None:
    cell = CellResult(code="", status=CellStatus.OK, duration=0.1, outputs=[
        {"output_type": "stream", "name": "stdout", "text": "a\n"},
        {"output_type": "display_data", "data": {"image/png": "iVBOR..."}, "metadata": {}},
        {"output_type": "execute_result", "execution_count": 4, "data": {"text/plain": "42", "text/html": "<b>42</b>"},
         "metadata": {}},
    ])
    assert cell_output_text(cell) == "a\n[display output (image/png) not shown here: it is in the notebook]\nOut[4]: 42\n"
