"""The analysis demo (`kernel-agent demo --analysis`): offline, DataFrames through a tool, a plot sent to the model,
recorded, and replayed faithfully."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOTEBOOK = "kernel-agent-analysis.ipynb"


def test_analysis_demo_runs_offline_sends_its_plot_to_the_model_and_replays(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "OPENAI_BASE_URL"}
    cli = str(Path(sys.executable).with_name("kernel-agent"))
    run = subprocess.run([cli, "demo", "--analysis"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    # The tool's DataFrames crossed the bridge with their types: datetimes stayed datetimes, the nullable int column
    # stayed Int64 (JSON would have made strings and floats of them).
    assert "date       datetime64[ns]" in out and "samples             Int64" in out, out
    assert "offline days: {'airport': 6, 'harbour': 8, 'hills': 3, 'park': 9}" in out
    # The figure went to the model as an image (not as "<Figure size ...>" only).
    assert "attached as an image" in out, out
    assert "harbour drifts from 2026-08-01" in out and "stop reason: final_answer" in out
    assert "'drift_from': '2026-08-01'" in out and "'gap_in_december_c': 6.47" in out

    cells = json.loads((tmp_path / NOTEBOOK).read_text())["cells"]
    plot_cell = next(c for c in cells if c["cell_type"] == "code" and "plt.show()" in c["source"])
    assert any("image/png" in o.get("data", {}) for o in plot_cell["outputs"])
    audit = subprocess.run([cli, "audit", NOTEBOOK], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0 and audit.stdout.startswith("INTACT"), audit.stdout
    replay = subprocess.run([cli, "replay", NOTEBOOK], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replayed 4 code cells" in replay.stdout and "faithful" in replay.stdout, replay.stdout
