"""Regenerate the notebooks in this folder: `python notebooks/regenerate.py` (from the repository root).

- demo.ipynb: the recorded session of `kernel-agent demo` (with demo.files/, its recorded tool results);
  tests/test_notebooks.py checks it still replays faithfully and matches the demo script.
- experiment.ipynb: built from the cells below and executed with nbclient, so its outputs are real.
- skills.ipynb: built from the cells in skills_notebook.py and executed the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

EXPERIMENT_CELLS: list[tuple[str, str]] = [
    ("markdown", """# Experiment: what does an observation budget cost?

Agents run here from inside Jupyter (top-level `await`), each in its own sandboxed kernel, with the **scripted**
model so the experiment is offline and repeatable. Two questions about configurations:

1. **How the code looks at data**: printing the whole dataset versus keeping it in a variable and printing a summary.
2. **The observation budget** (`observation_limit`): how many characters of a cell's output go back to the model.

The scripted model's token counts are estimates (characters / 4) of what a real model would read and write,
so the comparison is about context size; with `anthropic:...` or `openai:...` the same cells report the
provider's own counts."""),
    ("code", """import tempfile
from pathlib import Path

from kernel_agent import Agent, ScriptedModel, tool

@tool(namespace="crm", read_only=True)
def customers(count: int = 2000) -> list[dict]:
    \"\"\"Customers: id, country, yearly spend in EUR.\"\"\"
    countries = ("DE", "FR", "US", "JP", "BR")
    return [{"id": i, "country": countries[i % 5], "spend": (i * 7919) % 10_000} for i in range(count)]

TASK = "Which country's customers spend the most in total, and how much?"
runs = Path(tempfile.mkdtemp(prefix="experiment-runs-"))  # each run's recorded notebook lands here"""),
    ("code", """PRINT_EVERYTHING = [
    "rows = tools.crm.customers()\\nprint(rows)",
    "totals = {}\\nfor r in rows:\\n    totals[r['country']] = totals.get(r['country'], 0) + r['spend']\\nprint(totals)",
    "best = max(totals, key=totals.get)\\nfinal_answer({'country': best, 'total': totals[best]})",
]
SUMMARISE_IN_KERNEL = [
    "rows = tools.crm.customers()\\nprint(len(rows), rows[0])",
    "totals = {}\\nfor r in rows:\\n    totals[r['country']] = totals.get(r['country'], 0) + r['spend']\\n"
    "best = max(totals, key=totals.get)\\nfinal_answer({'country': best, 'total': totals[best]})",
]

async def run(name, script, observation_limit):
    agent = Agent(ScriptedModel(script), tools=[customers], observation_limit=observation_limit,
                  notebook=runs / f"{name.replace(' ', '-')}-{observation_limit}.ipynb")
    result = await agent.run(TASK)
    return {"configuration": name, "observation_limit": observation_limit, "steps": len(result.steps),
            "input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens,
            "answer": result.answer, "result": result}

results = []
for name, script in [("print everything", PRINT_EVERYTHING), ("summarise in kernel", SUMMARISE_IN_KERNEL)]:
    for limit in (20_000, 2_000):
        results.append(await run(name, script, limit))
results[-1]["result"]  # a run's result displays as a short report"""),
    ("code", """from IPython.display import Markdown

baseline = results[0]["input_tokens"]
rows = ["| configuration | observation limit | steps | input tokens (est.) | vs first | answer |", "|---|---|---|---|---|---|"]
for r in results:
    rows.append(f"| {r['configuration']} | {r['observation_limit']:,} | {r['steps']} | {r['input_tokens']:,} | "
                f"{r['input_tokens'] / baseline:.0%} | {r['answer']} |")
assert len({str(r["answer"]) for r in results}) == 1, "every configuration reaches the same answer"
Markdown("\\n".join(rows))"""),
    ("markdown", """Every configuration reaches the same answer. A smaller observation budget caps what careless printing
costs, and keeping the data in the kernel (printing a summary) costs the least whatever the budget: the
rows never pass through the model. Each run's notebook (in `runs`) can be audited and replayed with
`kernel-agent audit` and `kernel-agent replay`."""),
]


def regenerate_demo() -> None:
    notebook = HERE / "demo.ipynb"
    subprocess.run([str(Path(sys.executable).with_name("kernel-agent")), "demo", "--quiet", "--notebook", str(notebook)],
                   check=True, stdout=subprocess.DEVNULL)
    # The journal is for crash recovery while recording; the notebook and its files are the record.
    notebook.with_name("demo.journal.jsonl").unlink(missing_ok=True)


def regenerate_experiment() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in EXPERIMENT_CELLS:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(notebook, HERE / "experiment.ipynb")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from skills_notebook import regenerate_skills

    regenerate_demo()
    regenerate_experiment()
    regenerate_skills(HERE)
    print(f"regenerated {HERE / 'demo.ipynb'}, {HERE / 'experiment.ipynb'} and {HERE / 'skills.ipynb'}")
