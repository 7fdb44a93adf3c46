"""``kernel-agent demo``: a scripted model (offline, no API key) works through a data-analysis task.

``--analysis`` runs the second demo: pandas DataFrames from a tool, a plot the model is sent as an image.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import click

from kernel_agent.cli.run import drive

DEFAULT_DEMO_NOTEBOOK = "kernel-agent-demo.ipynb"
DEFAULT_ANALYSIS_NOTEBOOK = "kernel-agent-analysis.ipynb"


@click.command("demo", short_help="an offline demo: a scripted model analyses a dataset through example tools "
                                  "(no API key)")
@click.option("--analysis", is_flag=True,
              help="the analysis demo: pandas DataFrames from a tool and a plot the model looks at "
                   "(needs the analysis extra)")
@click.option("--notebook", metavar="PATH", default=None,
              help=f"where the session is recorded (default: ./{DEFAULT_DEMO_NOTEBOOK}, "
                   f"or ./{DEFAULT_ANALYSIS_NOTEBOOK} with --analysis)")
@click.option("--quiet", is_flag=True, help="print only the result, not each step")
def command(analysis: bool, notebook: str | None, quiet: bool) -> int:
    """Run an offline demo; its session is recorded in a notebook to audit and replay afterwards."""
    from kernel_agent.agent import Agent
    from kernel_agent.demo import ANALYSIS_SCRIPT, ANALYSIS_TASK, ANALYSIS_TOOLS, DEMO_SCRIPT, DEMO_TASK, DEMO_TOOLS
    from kernel_agent.models.scripted import ScriptedModel

    path = Path(notebook or (DEFAULT_ANALYSIS_NOTEBOOK if analysis else DEFAULT_DEMO_NOTEBOOK))
    if not path.parent.is_dir():
        raise ValueError(f"the notebook's directory {path.parent} does not exist; create it first")
    if analysis:
        _require_analysis_extra()
        print("kernel-agent demo --analysis: a scripted model (offline, no API key) loads sensor data as pandas "
              "DataFrames through a tool, plots it, and is sent the plot as an image; everything runs in a "
              "sandboxed kernel and is recorded.\n")
        tools: list[Any] = ANALYSIS_TOOLS
        script, task = ANALYSIS_SCRIPT, ANALYSIS_TASK
    else:
        print("kernel-agent demo: a scripted model (offline, no API key) works through a data-analysis task with "
              "example tools; everything runs in a sandboxed kernel and is recorded.\n")
        script, task, tools = DEMO_SCRIPT, DEMO_TASK, list(DEMO_TOOLS)
    # The session's own temporary workspace: made, lent to the sandbox and removed (safely) by the session.
    agent = Agent(ScriptedModel.from_file(script), tools, notebook=path, max_steps=12)
    status = drive(agent, task, quiet=quiet, as_json=False)
    name = "kernel-agent" if shutil.which("kernel-agent") else sys.argv[0]
    print(f"\nThe session is recorded in {path} (open it in JupyterLab). Next:\n"
          f"  {name} audit {path}    # intact? which cell changed? a summary of the session\n"
          f"  {name} replay {path}   # re-run it in a fresh sandbox with the recorded tool results")
    return status


def _require_analysis_extra() -> None:
    """The analysis demo's tools and cells use the scientific stack: say how to get it, before any kernel starts."""
    import importlib.util

    missing = [name for name in ("numpy", "pandas", "matplotlib", "pyarrow") if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(f"the analysis demo needs {', '.join(missing)}: "
                                   'pip install "kernel-agent[analysis]"')
