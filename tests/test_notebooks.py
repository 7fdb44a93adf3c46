"""The notebooks in notebooks/: the recorded demo still replays and matches its script; the experiment runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from kernel_agent.demo import DEMO_SCRIPT, DEMO_TASK
from kernel_agent.models.scripted import parse_percent_script

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CLI = str(Path(sys.executable).with_name("kernel-agent"))


def test_the_recorded_demo_is_intact_and_replays_faithfully() -> None:
    demo = NOTEBOOKS / "demo.ipynb"
    audit = subprocess.run([CLI, "audit", str(demo)], capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert audit.stdout.startswith("INTACT")
    replay = subprocess.run([CLI, "replay", str(demo)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "faithful: every cell matches its recording" in replay.stdout
    assert "72 tool calls served from the recording" in replay.stdout


def test_the_recorded_demo_matches_the_demo_script() -> None:
    """When the script changes, notebooks/regenerate.py must be run: this says so."""
    cells = json.loads((NOTEBOOKS / "demo.ipynb").read_text())["cells"]
    recorded = [(c["metadata"]["kernel_agent"]["kind"], "".join(c["source"])) for c in cells]
    expected = [("task", DEMO_TASK)]
    for reply in parse_percent_script(DEMO_SCRIPT.read_text()):
        if reply.get("text"):
            expected.append(("message", reply["text"]))
        if reply.get("code"):
            expected.append(("code", reply["code"]))
    assert recorded[1:] == expected, "notebooks/demo.ipynb is stale: run python notebooks/regenerate.py"


def test_the_experiment_notebook_runs_an_experiment_from_inside_jupyter(tmp_path: Path) -> None:
    """3 configurations x 3 tasks x 3 repeats, the table, intervals, a paired comparison, plots, and a re-run from
    the reply cache that asks the model nothing."""
    notebook = nbformat.read(NOTEBOOKS / "experiment.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    table = next(text for text in html if "total_tokens" in text and "first-200" in text)
    assert table.count("</tr>") == 28  # the header and 27 runs
    summary = next(text for text in html if "Wilson intervals" in text)
    assert "full-data" in summary and "random-200" in summary
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "full-data vs random-200: 9 paired runs" in text and "exact McNemar p = " in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert "model calls: 0, replies from the cache: 54" in text and "same results: True" in text


def test_the_skills_notebook_keeps_a_skill_in_one_session_and_uses_it_in_the_next(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / "skills.ipynb", as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "from skills import parse_amount: Parse an amount" in text and "answer: 12.0" in text
    assert "it imports 'subprocess', which the skill policy forbids" in text
    assert "stored skills: ['parse_amount']" in text and "replay faithful: True" in text
