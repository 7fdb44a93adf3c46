"""``kernel-agent run --background-after``: the terminal shows that a long cell runs on, then its result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kernel_agent.verify.audit import audit_notebook

KERNEL_AGENT = Path(sys.executable).parent / "kernel-agent"
LONG_CELL = ("import os, time\nprint('started', flush=True)\nwhile not os.path.exists('go'):\n"
             "    time.sleep(0.01)\ntotal = 42")


def test_run_shows_a_background_cell_and_the_model_waits_for_it(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    script = tmp_path / "script.json"
    script.write_text(json.dumps([LONG_CELL, "%wait", "final_answer(total)"]))
    notebook = tmp_path / "run.ipynb"
    with subprocess.Popen([str(KERNEL_AGENT), "run", "total?", "--model", f"scripted:{script}", "--workspace",
                           str(workspace), "--notebook", str(notebook), "--background-after", "0.2"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # the cell cannot end before 'go' exists: the notice comes first
            seen.append(line)
            if "runs on in the background" in line:
                (workspace / "go").touch()
                break
        rest = process.stdout.read()  # what the iteration buffered too (communicate would read past it)
        process.wait(timeout=120)
    assert process.returncode == 0, "".join(seen) + rest
    assert "%cancel" in "".join(seen) + rest and "42" in rest
    assert audit_notebook(notebook).verdict == "intact"
