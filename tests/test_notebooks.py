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


def test_the_experiment_notebook_runs_agents_from_inside_jupyter(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / "experiment.ipynb", as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    table = next(o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})
                 and "| configuration |" in o.data["text/markdown"])
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == 4 and all("'country': 'DE'" in row for row in rows)
    report = next(o.data["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    assert "stop reason" in report and "final_answer" in report


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
