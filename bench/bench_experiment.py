"""Experiment throughput and per-run overhead, with the scripted model (no provider in the way).

* Throughput: runs per minute of an :class:`~kernel_agent.experiment.Experiment`
  at concurrency 2 on a started pool of 2 warm kernels (journal, notebooks,
  checks, the table at the end), next to the same runs as bare sequential
  ``Agent.run`` calls, each with its own freshly started kernel: what a loop
  in a script would do without the experiment.
* Overhead per run: the same experiment at concurrency 1 on the pool, next to
  bare sequential ``Agent.run`` calls on the same pool (same kernels, same
  recording): what the experiment adds to each run (its journal line, its
  notebook's directory, the checker, the reply cache lookups, the table).
* A re-run from the reply cache (a second experiment on the first one's cache,
  in a fresh directory): every reply served, none asked, at concurrency 2.

The subjects alternate round by round, so a noisy neighbour slows each alike.
Run: ``python bench/bench_experiment.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _benchlib import Row, bench_main, make_row, median

from kernel_agent import Agent, KernelPool, ScriptedModel
from kernel_agent.experiment import Configuration, Experiment, ReplyCache, Task

BENCHMARK = "experiment"
TASKS = [Task(f"sum-{n}", f"What is the sum of 1..{n}?", expected=n * (n + 1) // 2) for n in (10, 20, 30, 40)]


def script(task: Task, repeat: int) -> ScriptedModel:
    """Two steps: compute in a cell, then answer from the kernel's state."""
    n = int(task.name.split("-")[1])
    return ScriptedModel([f"total = sum(range(1, {n} + 1))\nprint(total)", "final_answer(total)"])


def experiment(directory: Path, repeats: int, concurrency: int, pool: Any, cache: Any = None) -> Experiment:
    return Experiment("bench", TASKS, [Configuration("scripted", script, max_steps=4)], repeats=repeats,
                      directory=directory, concurrency=concurrency, cache=cache, pool=pool)


async def timed_experiment(root: Path, repeats: int, concurrency: int, pool: Any, cache: Any = None,
                           *, all_cached: bool = False) -> float:
    directory = Path(tempfile.mkdtemp(dir=root))
    start = time.perf_counter()
    results = await experiment(directory, repeats, concurrency, pool, cache).run()
    elapsed = time.perf_counter() - start
    assert bool(results.table["success"].all()), results.table[["task", "error"]]
    if all_cached:
        assert int(results.table["model_calls"].sum()) == 0, "the re-run asked the model"
    shutil.rmtree(directory)
    return elapsed


async def timed_agents(root: Path, repeats: int, pool: Any) -> float:
    """The same runs as plain sequential Agent.run calls (pool None: each starts its own kernel)."""
    start = time.perf_counter()
    for task in TASKS:
        for repeat in range(repeats):
            agent = Agent(script(task, repeat), notebook=root / f"{task.name}-{repeat}-{time.perf_counter_ns()}.ipynb",
                          pool=pool, max_steps=4)
            try:
                result = await agent.run(task.prompt)
            finally:
                await agent.close()
            assert result.answer == task.expected, result
    return time.perf_counter() - start


async def measure(rounds: int, repeats: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"experiment c2": [], "agents cold": [], "experiment c1": [], "agents pool": [],
                                       "cached c2": []}
    with tempfile.TemporaryDirectory(prefix="bench-experiment-") as folder:
        root = Path(folder)
        async with KernelPool(size=2) as pool:
            cache = ReplyCache(root / "cache")
            await timed_experiment(root, repeats, 2, pool, cache)  # warms the pool, fills the cache
            for _ in range(rounds):
                samples["experiment c2"].append(await timed_experiment(root, repeats, 2, pool))
                samples["agents cold"].append(await timed_agents(root, repeats, None))
                samples["experiment c1"].append(await timed_experiment(root, repeats, 1, pool))
                samples["agents pool"].append(await timed_agents(root, repeats, pool))
                samples["cached c2"].append(await timed_experiment(root, repeats, 2, pool, cache, all_cached=True))
    return samples


def run(quick: bool) -> list[Row]:
    rounds, repeats = (1, 2) if quick else (3, 3)
    runs = len(TASKS) * repeats
    samples = asyncio.run(measure(rounds, repeats))
    per_minute = {name: 60 * runs / median(values) for name, values in samples.items()}
    per_run_ms = {name: 1000 * median(values) / runs for name, values in samples.items()}
    note = f"{len(TASKS)} tasks x {repeats} repeats, 2 scripted steps each; median of {rounds} round(s)"
    return [
        make_row(BENCHMARK, "experiment throughput (concurrency 2, pool of 2)", per_minute["experiment c2"],
                 "runs/min", baseline=per_minute["agents cold"],
                 baseline_name="bare sequential Agent.run, a fresh kernel each", note=note),
        make_row(BENCHMARK, "time per run, experiment at concurrency 1 on the pool", per_run_ms["experiment c1"], "ms",
                 baseline=per_run_ms["agents pool"], baseline_name="bare sequential Agent.run on the same pool",
                 note=f"overhead {per_run_ms['experiment c1'] - per_run_ms['agents pool']:+.0f} ms per run; " + note),
        make_row(BENCHMARK, "re-run from the reply cache (concurrency 2)", per_minute["cached c2"], "runs/min",
                 baseline=per_minute["experiment c2"], baseline_name="the same experiment asking the scripted model",
                 note="0 model calls; " + note),
    ]


if __name__ == "__main__":
    bench_main(run, "Experiment throughput and overhead per run", "one round of 8 runs per subject")
