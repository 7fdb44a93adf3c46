"""audit and replay print what a notebook and its kernel wrote (the task, messages, diverging outputs): none of
their terminal control sequences may reach the auditor's terminal (a window title, a cleared screen, an OSC 52
clipboard write)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kernel_agent import SyncSession

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # anything but tab and newline
TITLE, CLIPBOARD, CLEAR = "\x1b]0;PWNED\x07", "\x1b]52;c;ZXZpbA==\x07", "\x1b[2J"


def test_audit_and_replay_reports_carry_no_control_sequences(tmp_path: Path) -> None:
    notebook = tmp_path / "run.ipynb"
    (tmp_path / "work").mkdir()
    with SyncSession(tmp_path / "work", notebook=notebook) as session:
        session.session.record_message("task", f"Find it {TITLE} now {CLEAR}")
        session.session.record_message("message", f"I will {CLIPBOARD} look")
        # A different value at each run: replay reports the divergence, quoting both outputs.
        session.execute(f"import time\nprint({TITLE!r}, time.time_ns(), {CLIPBOARD!r})")
    cli = [sys.executable, "-m", "kernel_agent.cli.main"]
    audit = subprocess.run([*cli, "audit", str(notebook)], capture_output=True, text=True, timeout=120)
    replay = subprocess.run([*cli, "replay", str(notebook)], capture_output=True, text=True, timeout=240)
    assert audit.returncode == 0 and "Find it" in audit.stdout, audit.stdout + audit.stderr
    assert replay.returncode == 1 and "differ" in replay.stdout, replay.stdout + replay.stderr
    for output in (audit.stdout, audit.stderr, replay.stdout, replay.stderr):
        assert not CONTROL.search(output), repr(output)
