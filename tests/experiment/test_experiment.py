"""The issue's experiment: 3 configurations x 4 tasks x 3 repeats with scripted models that are sometimes wrong.

Real sandboxed kernels from one warm pool, real recorded notebooks. Which
runs answer wrongly is a function of (configuration, task, repeat), so the
expected table is known exactly; the experiment is interrupted from
``on_run``, resumed (finished runs are not run again: their notebooks are
untouched and their models never made), and re-run from the reply cache
(zero model calls, the same table).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kernel_agent import KernelPool, ScriptedModel, audit_notebook, tool
from kernel_agent.agent.result import AgentResult
from kernel_agent.experiment import COLUMNS, Configuration, Experiment, ExperimentResults, ReplyCache, Task
from kernel_agent.experiment.journal import RunRow
from kernel_agent.models.base import CodeTool, ModelReply, Turn

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIGURATIONS, TASKS, REPEATS = 3, 4, 3
TASK_NAMES = ["sum", "file", "tool", "capital"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[KernelPool]:
    async with KernelPool(size=2) as started:
        yield started


@tool(read_only=True)
def double(x: int) -> int:
    """Twice x."""
    return 2 * x


def wrong(config: int, task: int, repeat: int) -> bool:
    """Whether this run's scripted model answers wrongly: every 2nd, 3rd, 4th run of configurations 0, 1, 2."""
    return (config + 2 * task + repeat) % (config + 2) == 0


def script(config: int, task: str, repeat: int) -> list[Any]:
    off = 1 if wrong(config, TASK_NAMES.index(task), repeat) else 0
    if task == "sum":
        return [f"final_answer(sum([1, 2, 3, 4]) + {off})"]
    if task == "file":
        # The random draw goes back to the model: the re-run's cache hits only because the kernel's seed is the same.
        return ["import random\nnumbers = [int(x) for x in open('data/numbers.txt').read().split()]\n"
                "print(numbers, random.random())",
                f"final_answer(sum(numbers) + {off})"]
    if task == "tool":
        return [f"final_answer(tools.double(x=21) + {off})"]
    return [{"text": "Lyon" if off else "Paris"}]


class CountingScripted(ScriptedModel):
    """A scripted model that notes every real call, and how many sessions the pool had out at that moment."""

    def __init__(self, replies: list[Any], key: tuple[str, str, int], log: dict[str, Any]) -> None:
        super().__init__(replies)
        self.key, self.log = key, log

    async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
        self.log["calls"].append(self.key)
        self.log["leases"].append(len(self.log["pool"].leases))
        return await super().complete(system, conversation, tool)


def capital(answer: Any) -> bool:
    if answer != "Paris":
        raise ValueError(f"{answer!r} is not the capital")
    return True


def used_the_tool(answer: Any, result: AgentResult) -> bool:
    return bool(answer == 42 and result.tool_calls == 1)


def make_experiment(directory: Path, log: dict[str, Any], pool: KernelPool,
                    cache: ReplyCache | bool = True) -> Experiment:
    tasks = [
        Task("sum", "Add 1, 2, 3 and 4.", expected=10),
        Task("file", "Add the numbers in data/numbers.txt.", check=lambda answer: answer == 12,
             files={"data/numbers.txt": "3\n4\n5\n"}),
        Task("tool", "Double 21 with the tool.", check=used_the_tool, tools=[double]),
        Task("capital", "What is the capital of France?", check=capital),
    ]

    def factory(index: int) -> Any:
        def make(task: Task, repeat: int) -> ScriptedModel:
            key = (f"c{index}", task.name, repeat)
            log["made"].append(key)
            return CountingScripted(script(index, task.name, repeat), key, log)
        return make

    configurations = [
        Configuration("c0", factory(0)),
        Configuration("c1", factory(1), instructions="Be brief."),
        Configuration("c2", factory(2), max_steps=5, observation_limit=1000),
    ]
    return Experiment("issue15", tasks, configurations, repeats=REPEATS, directory=directory, concurrency=2,
                      cache=cache, pool=pool)


def expected_rows() -> list[dict[str, Any]]:
    rows = []
    for c in range(CONFIGURATIONS):
        for t, task in enumerate(TASK_NAMES):
            for r in range(REPEATS):
                bad = wrong(c, t, r)
                rows.append({
                    "configuration": f"c{c}", "task": task, "repeat": r, "success": not bad,
                    "answer": {"sum": repr(10 + bad), "file": repr(12 + bad), "tool": repr(42 + bad),
                               "capital": repr("Lyon" if bad else "Paris")}[task],
                    "checker_error": "ValueError: 'Lyon' is not the capital" if bad and task == "capital" else "",
                    "stop_reason": "answered" if task == "capital" else "final_answer", "error": "",
                    "steps": 2 if task == "file" else 1, "cells": {"file": 2, "capital": 0}.get(task, 1),
                    "tool_calls": 1 if task == "tool" else 0,
                    "notebook": f"notebooks/c{c}/{task}/repeat-{r}.ipynb",
                })
    return rows


def snapshot(directory: Path, rows: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    found = {}
    for row in rows:
        status = (directory / row["notebook"]).stat()
        found[row["notebook"]] = (status.st_ino, status.st_mtime_ns, status.st_size)
    return found


async def test_the_issue_experiment_interrupted_resumed_and_rerun_from_the_cache(
        pool: KernelPool, tmp_path: Path) -> None:
    log: dict[str, Any] = {"made": [], "calls": [], "leases": [], "pool": pool}
    directory = tmp_path / "first"
    seen: list[dict[str, Any]] = []

    # 1. Interrupted once 10 runs are in (as Ctrl-C would): the journal holds exactly the rows reported.
    async def stop_after_ten(row: dict[str, Any]) -> None:
        seen.append(row)
        if len(seen) == 10:
            runner.cancel()

    runner = asyncio.create_task(make_experiment(directory, log, pool).run(on_run=stop_after_ten))
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert pool.leases == ()  # every session of a cancelled run was closed
    journaled = (directory / "runs.jsonl").read_text().splitlines()
    assert len(journaled) == len(seen) >= 10
    finished = {(row["configuration"], row["task"], row["repeat"]) for row in seen}
    before = snapshot(directory, seen)
    interrupted = [key for key in log["made"] if key not in finished]

    # 2. Resumed: only the unfinished runs run (their models made, their notebooks new); the others untouched.
    log["made"].clear()
    results = await make_experiment(directory, log, pool).run()
    all_keys = {(f"c{c}", t, r) for c in range(CONFIGURATIONS) for t in TASK_NAMES for r in range(REPEATS)}
    assert sorted(log["made"]) == sorted(all_keys - finished)
    assert snapshot(directory, seen) == before
    # A run cut short after its session started has its partial notebook set aside (sealed), not overwritten.
    set_aside = sorted(directory.glob("notebooks/*/*/repeat-*.interrupted-1.ipynb"))
    assert len(set_aside) <= len(interrupted)
    for notebook in set_aside:
        key = (notebook.parent.parent.name, notebook.parent.name, int(notebook.name.split(".")[0].split("-")[1]))
        assert key in interrupted and audit_notebook(notebook).verdict != "tampered"

    table = results.table
    assert list(table.columns) == list(COLUMNS) == list(RunRow.model_fields)
    assert len(table) == CONFIGURATIONS * TASKS * REPEATS
    checked = [column for column in expected_rows()[0]]
    assert table[checked].to_dict("records") == expected_rows()
    assert table["success"].sum() == sum(row["success"] for row in expected_rows()) < len(table)
    assert (table["input_tokens"] > 0).all() and (table["total_tokens"] >= table["input_tokens"]).all()
    assert table["cost"].isna().all()  # no pricing given
    assert (table["model_calls"] + table["cached_replies"] == table["steps"]).all()
    assert max(log["leases"]) <= 2
    for notebook in table["notebook"]:
        report = audit_notebook(directory / notebook)
        assert report.verdict == "intact", (notebook, report.headline)
        assert report.summary.model == {"provider": "scripted", "spec": "scripted:inline"}
    assert (directory / "results.csv").exists() and (directory / "results.parquet").exists()

    # The intervals: each configuration's successes out of 12, with the Wilson interval worked out here.
    summary = results.summary()
    z = 1.959963984540054
    for c in range(CONFIGURATIONS):
        wins = sum(row["success"] for row in expected_rows() if row["configuration"] == f"c{c}")
        n, p = TASKS * REPEATS, wins / (TASKS * REPEATS)
        centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(
            p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        line = summary.configurations.loc[f"c{c}"]
        assert (line["runs"], line["successes"]) == (n, wins)
        assert line["ci_low"] == pytest.approx(centre - half) and line["ci_high"] == pytest.approx(centre + half)
    loaded = ExperimentResults.load(directory)
    assert loaded.directory == directory.resolve()
    assert loaded.table.equals(table)

    # 3. The whole experiment again, in a new directory, from the first one's reply cache: no model is asked.
    log["calls"].clear()
    again = await make_experiment(tmp_path / "again", log, pool, cache=ReplyCache(directory / "cache")).run()
    assert log["calls"] == []
    assert (again.table["model_calls"] == 0).all() and (again.table["cached_replies"] == again.table["steps"]).all()
    timeless = [c for c in COLUMNS if c not in {"seconds", "model_seconds", "started_at", "model_calls",
                                                 "cached_replies"}]
    assert again.table[timeless].equals(table[timeless])

    # 4. And in the first directory once more: every run is finished, nothing runs.
    log["made"].clear()
    same = await make_experiment(directory, log, pool).run()
    assert log["made"] == [] and same.table.equals(table)


async def test_at_most_concurrency_runs_at_once(pool: KernelPool, tmp_path: Path) -> None:
    """Two runs must be in flight together (each waits for the other), and never three."""
    both_in = asyncio.Event()
    inside: list[str] = []
    leases: list[int] = []

    class Gate(ScriptedModel):
        async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
            if not conversation[1:]:
                inside.append(self.name)
                leases.append(len(pool.leases))
                if len(inside) == 2:
                    both_in.set()
                await both_in.wait()
            return await super().complete(system, conversation, tool)

    experiment = Experiment("gate", [Task(f"t{i}", "Answer.", expected=1) for i in range(3)],
                            [Configuration("c", lambda task, repeat: Gate(["final_answer(1)"]))],
                            repeats=2, directory=tmp_path / "gate", concurrency=2, cache=False, pool=pool)
    results = await experiment.run()
    assert results.table["success"].all() and len(inside) == 6
    assert max(leases) == 2


async def test_failures_outside_the_agent_are_rows_not_crashes(pool: KernelPool, tmp_path: Path) -> None:
    from kernel_agent.errors import ModelResponseError

    class Broken(ScriptedModel):
        async def complete(self, system: str, conversation: list[Turn], tool: CodeTool) -> ModelReply:
            raise ModelResponseError("the provider is overloaded")

    def no_model(task: Task, repeat: int) -> ScriptedModel:
        raise RuntimeError("no API key in this test")

    huge = "final_answer('x' * 1_000_000)"
    released = threading.Event()

    def never_returns(answer: Any) -> bool:
        released.wait()
        return True

    experiment = Experiment("failures", [Task("t", "Answer.", check=lambda answer: len(answer) > 10),
                                         Task("stuck", "Answer.", check=never_returns, check_timeout=0.2)], [
        Configuration("broken", lambda task, repeat: Broken([])),
        Configuration("nomodel", no_model),
        Configuration("huge", lambda task, repeat: ScriptedModel([huge])),
        Configuration("limit", lambda task, repeat: ScriptedModel(["print(1)"] * 5), max_steps=2),
    ], repeats=1, directory=tmp_path / "failures", pool=pool, cache=False)
    try:
        table = (await experiment.run()).table
    finally:
        released.set()
    stuck = table[(table["task"] == "stuck") & (table["configuration"] == "huge")].iloc[0]
    assert not stuck["success"] and "did not finish within 0.2 s" in stuck["checker_error"]
    rows = {row["configuration"]: row for row in table[table["task"] == "t"].to_dict("records")}
    assert rows["broken"]["stop_reason"] == "model_error" and "overloaded" in rows["broken"]["error"]
    assert rows["nomodel"]["stop_reason"] == "error" and "no API key" in rows["nomodel"]["error"]
    assert rows["nomodel"]["notebook"] == "" and rows["nomodel"]["steps"] == 0
    assert rows["huge"]["success"] and len(rows["huge"]["answer"]) <= 2000
    assert rows["limit"]["stop_reason"] == "max_steps" and not rows["limit"]["success"]
    assert rows["limit"]["answer"] == "" and rows["limit"]["cells"] == 2
    assert not any(math.isnan(rows[name]["seconds"]) for name in rows)
    assert "repeat-0.ipynb" in os.listdir(tmp_path / "failures" / "notebooks" / "broken" / "t")


async def test_a_torn_journal_line_is_run_again_and_a_hostile_cache_entry_fails_only_its_run(
        pool: KernelPool, tmp_path: Path) -> None:
    """A kill during the journal's append leaves half a line: that run runs again (its old notebook set aside);
    a crafted cache file then stops that run with the reason in its row and is left as it was."""
    directory = tmp_path / "torn"

    def make() -> Experiment:
        return Experiment("torn", [Task("t", "Answer.", expected=1)],
                          [Configuration("c", lambda task, repeat: ScriptedModel(["final_answer(1)"]))],
                          repeats=2, directory=directory, pool=pool)

    first = await make().run()
    assert list(first.table["success"]) == [True, True]
    journal = directory / "runs.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    torn = next(line for line in lines if b'"repeat": 1' in line)
    journal.write_bytes(b"".join(line for line in lines if line is not torn) + torn[:50])
    crafted = b'{"format": "kernel-agent-reply-cache/1", "key": NaN}'
    entries = sorted((directory / "cache").glob("*/*.json"))
    for entry in entries:
        entry.write_bytes(crafted)

    second = await make().run()
    rows = second.table.to_dict("records")
    assert second.table.iloc[:1].equals(first.table.iloc[:1])  # finished: not run again
    assert rows[1]["stop_reason"] == "model_error" and "reply cache file" in rows[1]["error"]
    assert "holds NaN" in rows[1]["error"] and rows[1]["model_calls"] == 0 and not rows[1]["success"]
    assert all(entry.read_bytes() == crafted for entry in entries)
    assert (directory / "notebooks" / "c" / "t" / "repeat-1.interrupted-1.ipynb").exists()
    assert len(journal.read_bytes().splitlines()) == 2


async def test_a_kernel_cannot_reach_the_experiment_directory(pool: KernelPool, tmp_path: Path) -> None:
    """From inside a run: write a forged row into the journal, a forged reply into the cache, over the notebook."""
    directory = tmp_path / "attacked"
    forged_row = '{"configuration": "c", "task": "t", "repeat": 1, "success": true}\n'
    attack = f"""
import os, glob
hits = []
for path in [{str(directory / "runs.jsonl")!r}, {str(directory / "notebooks" / "c" / "t" / "repeat-0.ipynb")!r}]:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as file:
            file.write({forged_row!r})
        hits.append(path)
    except OSError:
        pass
for path in glob.glob({str(directory / "cache" / "*" / "*.json")!r}):
    try:
        with open(path, "w") as file:
            file.write("{{}}")
        hits.append(path)
    except OSError:
        pass
final_answer(1)
"""
    experiment = Experiment("attacked", [Task("t", "Answer.", expected=1)],
                            [Configuration("c", lambda task, repeat: ScriptedModel([attack]))],
                            repeats=2, directory=directory, pool=pool)
    results = await experiment.run()
    assert list(results.table["success"]) == [True, True]
    assert len((directory / "runs.jsonl").read_bytes().splitlines()) == 2
    assert ExperimentResults.load(directory).table.equals(results.table)
    assert len(ReplyCache(directory / "cache")) == 2
    for notebook in results.table["notebook"]:
        assert audit_notebook(directory / notebook).verdict == "intact"
    again = await Experiment("attacked", [Task("t", "Answer.", expected=1)],
                             [Configuration("c", lambda task, repeat: ScriptedModel([attack]))],
                             repeats=2, directory=tmp_path / "again", pool=pool,
                             cache=ReplyCache(directory / "cache")).run()
    assert (again.table["model_calls"] == 0).all()  # every cached reply still readable: none was overwritten


async def test_an_agent_on_the_pool_records_its_run(pool: KernelPool, tmp_path: Path) -> None:
    """Agent(pool=...): the run's session takes a pooled kernel and is recorded with the run's metadata."""
    from kernel_agent import Agent

    notebook = tmp_path / "pooled.ipynb"
    agent = Agent(ScriptedModel(["import os\nfinal_answer(os.getcwd())"]), pool=pool, notebook=notebook, max_steps=3)
    result = await agent.run("Where are you?")
    assert result.ok and isinstance(result.answer, str) and result.notebook == notebook
    report = audit_notebook(notebook)
    assert report.verdict == "intact" and report.summary.model == {"provider": "scripted", "spec": "scripted:inline"}
    assert pool.leases == ()
