"""``kernel-agent demo``: a scripted model (offline, no API key) works through a data-analysis task."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from kernel_agent.cli.run import drive

DEFAULT_DEMO_NOTEBOOK = "kernel-agent-demo.ipynb"


@click.command("demo", short_help="an offline demo: a scripted model analyses a dataset through example tools "
                                  "(no API key)")
@click.option("--notebook", metavar="PATH", default=DEFAULT_DEMO_NOTEBOOK,
              help=f"where the session is recorded (default: ./{DEFAULT_DEMO_NOTEBOOK})")
@click.option("--quiet", is_flag=True, help="print only the result, not each step")
def command(notebook: str, quiet: bool) -> int:
    """Run the offline demo; its session is recorded in a notebook to audit and replay afterwards."""
    from kernel_agent.agent import Agent
    from kernel_agent.demo import DEMO_SCRIPT, DEMO_TASK, DEMO_TOOLS
    from kernel_agent.models.scripted import ScriptedModel

    path = Path(notebook)
    if not path.parent.is_dir():
        raise ValueError(f"the notebook's directory {path.parent} does not exist; create it first")
    print("kernel-agent demo: a scripted model (offline, no API key) works through a data-analysis task with "
          "example tools; everything runs in a sandboxed kernel and is recorded.\n")
    # The session's own temporary workspace: made, lent to the sandbox and removed (safely) by the session.
    agent = Agent(ScriptedModel.from_file(DEMO_SCRIPT), DEMO_TOOLS, notebook=path, max_steps=12)
    status = drive(agent, DEMO_TASK, quiet=quiet, as_json=False)
    name = "kernel-agent" if shutil.which("kernel-agent") else sys.argv[0]
    print(f"\nThe session is recorded in {path} (open it in JupyterLab). Next:\n"
          f"  {name} audit {path}    # intact? which cell changed? a summary of the session\n"
          f"  {name} replay {path}   # re-run it in a fresh sandbox with the recorded tool results")
    return status
