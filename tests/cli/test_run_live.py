"""``kernel-agent run`` into a pipe: a cell's output shows while the cell runs, progress as lines, no control codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from .test_run import KERNEL_AGENT, LineReader, assert_intact, environment

# The cell prints, then blocks on a FIFO the test opens only once the line was on the run's stdout.
CELL = """\
import sys
print('first line', flush=True)
open('release').read()
for i in range(3):
    progress('loading', done=i + 1, total=3)
print('\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b]0;pwned\\x07\\x1b[2J[bold red]markup[/] stays')
print('to stderr', file=sys.stderr)
"""


def test_run_streams_output_and_progress_into_a_pipe(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    os.mkfifo(workspace / "release", 0o666)
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"text": "Loading.", "code": CELL}, {"code": "final_answer('done')"}]))
    with subprocess.Popen([str(KERNEL_AGENT), "run", "load", "--model", f"scripted:{script}", "--workspace",
                           str(workspace), "--notebook", str(tmp_path / "run.ipynb")], cwd=tmp_path,
                          env=environment(NO_COLOR="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            reader = LineReader(process)
            reader.wait_for("first line", timeout=60)
            assert not any("(ok," in line for line in reader.lines)  # the cell still runs: its output came live
            (workspace / "release").write_text("go")
            assert process.wait(timeout=60) == 0
            out = reader.join()
        finally:
            if process.poll() is None:
                process.kill()
    for shown in ("  first line\n", "  ⋯ loading [1/3]\n", "  ⋯ loading [3/3]\n", "  [bold red]markup[/] stays\n",
                  "  to stderr\n", "  (ok, ", "stop reason: final_answer"):
        assert shown in out, shown
    assert out.index("first line") < out.index("loading [1/3]") < out.index("(ok, ")
    assert not any((ord(char) < 32 and char not in "\n\t") or 0x7f <= ord(char) <= 0x9f for char in out)
    assert "pwned" not in out.split("  first line", 1)[1]  # the title's payload went with its sequence
    assert_intact(tmp_path / "run.ipynb", tmp_path)


def test_ctrl_c_keeps_the_running_cells_output_in_the_notebook(tmp_path: Path) -> None:
    """Ctrl-C while the cell loops after printing: exit 130, and the notebook has what the cell printed (status
    cancelled), in an intact record."""
    script = tmp_path / "spin.json"
    # The text is built at run time: the live display shows the cell's code first, and waiting for text the code
    # itself holds sent Ctrl-C before the cell had printed anything (its first output was then the interrupt).
    script.write_text(json.dumps([{"code": "print('halfway' + ' there', flush=True)\nimport time\nwhile True:\n"
                                           "    time.sleep(0.05)"}]))
    notebook = tmp_path / "run.ipynb"
    with subprocess.Popen([str(KERNEL_AGENT), "run", "spin", "--model", f"scripted:{script}", "--notebook",
                           str(notebook)], cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            reader = LineReader(process)
            reader.wait_for("halfway there", timeout=60)
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 130
            reader.join()
        finally:
            if process.poll() is None:
                process.kill()
    cells = [cell for cell in json.loads(notebook.read_text())["cells"]
             if cell["metadata"].get("kernel_agent", {}).get("kind") == "code"]
    assert cells[-1]["metadata"]["kernel_agent"]["status"] == "cancelled"
    # print() writes its text and its newline separately: Ctrl-C (sent once the text shows) may land between them
    assert cells[-1]["outputs"][0]["text"] in ("halfway there", "halfway there\n")
    assert_intact(notebook, tmp_path)
