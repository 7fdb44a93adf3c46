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
    ("markdown", """# Experiment: does the agent need all the data?

Three ways for an agent to answer questions about 2,000 customers behind a tool, compared on three tasks, three
repeats each: **every run** in its own sandboxed kernel from a warm pool, recorded to its own notebook, the results
a table with confidence intervals. The model is **scripted** (offline, repeatable: each configuration's code is
fixed), so what varies between repeats is only what the code does: `random-200` samples the rows with the repeat
as its seed.

- `full-data`: loads every row and computes exactly;
- `first-200`: looks at the first 200 rows and scales up;
- `random-200`: looks at a random 200 and scales up."""),
    ("code", """import tempfile
from pathlib import Path

from kernel_agent import Pricing, ScriptedModel, tool
from kernel_agent.experiment import Configuration, Experiment, ReplyCache, Task

COUNTRIES = ("DE", "FR", "US", "JP", "BR")
ROWS = [{"id": i, "country": COUNTRIES[i % 5], "spend": round((i * 7919) % 10_000 * (1.04 if i % 5 == 2 else 1) + i)}
        for i in range(2000)]  # later customers spend more; US customers a little more

@tool(namespace="crm", read_only=True)
def customers() -> list[dict]:
    \"\"\"Every customer: id, country, yearly spend in EUR.\"\"\"
    return ROWS

totals = {c: sum(r["spend"] for r in ROWS if r["country"] == c) for c in COUNTRIES}
TOTAL, BIG = sum(totals.values()), sum(r["spend"] > 9000 for r in ROWS)
tasks = [
    Task("top-country", "Which country's customers spend the most in total?", expected=max(totals, key=totals.get)),
    Task("total-spend", "What is the customers' total yearly spend?", check=lambda a: abs(a - TOTAL) <= 0.03 * TOTAL),
    Task("big-spenders", "How many customers spend over 9,000 EUR?", check=lambda a: abs(a - BIG) <= 0.15 * BIG),
]"""),
    ("code", """LOAD = {
    "full-data": "rows = tools.crm.customers()",
    "first-200": "rows = tools.crm.customers()[:200]",
    "random-200": "import random\\nrows = random.Random({repeat}).sample(tools.crm.customers(), 200)",
}
ANSWER = {
    "top-country": "totals = {}\\nfor r in rows:\\n    totals[r['country']] = totals.get(r['country'], 0) + r['spend']\\n"
                   "final_answer(max(totals, key=totals.get))",
    "total-spend": "final_answer(round(sum(r['spend'] for r in rows) * 2000 / len(rows)))",
    "big-spenders": "final_answer(round(sum(r['spend'] > 9000 for r in rows) * 2000 / len(rows)))",
}

def strategy(name):
    def model(task, repeat):  # a model per run: a scripted model has state
        return ScriptedModel([LOAD[name].format(repeat=repeat) + "\\nprint(len(rows), rows[0])", ANSWER[task.name]])
    return Configuration(name, model, tools=[customers], max_steps=4, pricing=Pricing(input=3, output=15))

directory = Path(tempfile.mkdtemp(prefix="experiment-"))
experiment = Experiment("customers", tasks, [strategy(name) for name in LOAD], repeats=3,
                        directory=directory / "first", concurrency=2)
results = await experiment.run()  # 27 runs, 2 at once; run it again and it continues where it stopped
results.table[["configuration", "task", "repeat", "success", "answer", "steps", "total_tokens", "cost", "seconds"]]"""),
    ("markdown", """One row per run (`results.table` has more columns: stop reason, errors, tool calls, cache tokens, model
calls, the run's notebook...). The summary: success rates with 95% **Wilson** intervals (sound at 0 and n
successes, and wide with 9 runs a configuration: that is what 9 runs can say), per task, and the distributions of
tokens, cost and time. Token counts here are the scripted model's estimates (characters / 4)."""),
    ("code", """summary = results.summary()
summary"""),
    ("code", """summary.distributions.loc[(slice(None), ["tokens", "seconds"]), :]"""),
    ("markdown", """A **paired comparison** lines two configurations up on the same (task, repeat) pairs. Only the pairs where they
disagree say which is better; the exact McNemar test asks how surprising that split would be if they were equally
good. The paired differences in tokens and time come with a sign-test interval (no distribution assumed)."""),
    ("code", """print(results.compare("full-data", "random-200"))
print()
print(results.compare("random-200", "first-200"))"""),
    ("code", """from IPython.display import display

display(results.plot_success())
display(results.plot_tasks())
display(results.plot_distribution("total_tokens"))"""),
    ("markdown", """## Re-running from the reply cache

Every model reply was stored in the experiment's reply cache, keyed by the exact conversation that led to it (the
model, the configuration, task and repeat, the system prompt, every turn). The same experiment in a fresh directory,
given that cache, asks the model nothing and gets the same table. With a real model (`anthropic:...`,
`openai:...`) that is how an experiment is shipped with its cache and re-run offline, free and deterministic."""),
    ("code", """again = Experiment("customers", tasks, [strategy(name) for name in LOAD], repeats=3,
                   directory=directory / "again", cache=ReplyCache(directory / "first" / "cache"))
rerun = await again.run()
print(f"model calls: {rerun.table['model_calls'].sum()}, replies from the cache: {rerun.table['cached_replies'].sum()}")
same = ["configuration", "task", "repeat", "success", "answer"]
print("same results:", rerun.table[same].equals(results.table[same]))"""),
    ("markdown", """`full-data` is right every time; `first-200` never (the first customers are not like the rest); `random-200` gets
the totals within tolerance in some repeats and never the top country (the countries are too close for 200 rows).
Each run's notebook is under `directory / "first" / "notebooks"`: `kernel-agent audit` and `kernel-agent replay`
work on each, and `kernel-agent experiment --report DIR` prints this summary again from the terminal."""),
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
