"""smolagents executor: a CodeAgent step in a kernel-agent session against smolagents' local interpreter.

Each figure is a step as smolagents runs it (``executor(code)``, which returns a ``CodeOutput``), timed on
the host, for the same code in the same run:

* ``KernelAgentExecutor`` (a sandboxed, recorded kernel; tools on the host behind the bridge);
* smolagents' ``LocalPythonExecutor`` (its AST interpreter, in process: no boundary, no record), the
  baseline a smolagents user has today;
* for the trivial step, a bare ``SyncSession.execute`` (the same kernel-agent cell without the executor),
  which shows what the executor itself adds.

Steps: a trivial one (``x = 1``), one host tool call, and pure-Python data work (a loop over 200,000
numbers), where the interpreter's per-node cost shows. Timings are printed, never asserted.
Run: ``python bench/bench_smolagents.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smolagents import FinalAnswerTool, Tool  # noqa: E402
from smolagents.local_python_executor import LocalPythonExecutor  # noqa: E402

from kernel_agent import SyncSession  # noqa: E402
from kernel_agent.integrations.smolagents import KernelAgentExecutor  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402

BENCHMARK = "smolagents"
STEPS = {
    "trivial step (x = 1)": "x = 1",
    "step with one host tool call": "price = unit_price('fig')",
    "pure-Python data step (200k-row loop)": "total = 0\nfor i in range(200_000):\n    total += i % 7",
}


class UnitPrice(Tool):  # type: ignore[misc]
    name = "unit_price"
    description = "The unit price of an item."
    inputs = {"item": {"type": "string", "description": "the item"}}  # noqa: RUF012
    output_type = "number"

    def forward(self, item: str) -> float:
        return {"fig": 2.0}.get(item, 1.0)


def _time(step: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``step`` in milliseconds (one unmeasured warm-up first)."""
    step()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000)
    return median(samples)


def run(quick: bool) -> list[Row]:
    repeats = 5 if quick else 25
    tools = {"unit_price": UnitPrice(), "final_answer": FinalAnswerTool()}
    rows: list[Row] = []
    local = LocalPythonExecutor(additional_authorized_imports=[])
    local.send_variables({})
    local.send_tools(tools)
    with tempfile.TemporaryDirectory() as records:
        start = time.perf_counter()
        executor = KernelAgentExecutor(notebook=Path(records) / "bench.ipynb")
        executor.send_tools(tools)
        started_ms = (time.perf_counter() - start) * 1000
        try:
            with SyncSession(notebook=False) as bare:
                bare_ms = _time(lambda: bare.execute(STEPS["trivial step (x = 1)"]), repeats)
            for name, code in STEPS.items():
                step_repeats = max(3, repeats // 5) if "data" in name else repeats
                ours = _time(lambda code=code: executor(code), step_repeats)  # type: ignore[misc]
                theirs = _time(lambda code=code: local(code), step_repeats)  # type: ignore[misc]
                rows.append(make_row(BENCHMARK, f"{name}: KernelAgentExecutor", ours, "ms", baseline=theirs,
                                     baseline_name="smolagents LocalPythonExecutor (in process, no sandbox)",
                                     note="sandboxed kernel, recorded notebook; p50"))
                if name.startswith("trivial"):
                    rows.append(make_row(BENCHMARK, f"{name}: KernelAgentExecutor vs a bare session cell", ours,
                                         "ms", baseline=bare_ms, baseline_name="SyncSession.execute, unrecorded",
                                         note="what the executor and the record add to a cell"))
        finally:
            executor.cleanup()
    rows.append(make_row(BENCHMARK, "first send_tools: cold session start, SDK, names cell", started_ms, "ms",
                         note="once per executor; a KernelPool makes it milliseconds"))
    return rows


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer repetitions")
