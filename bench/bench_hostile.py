"""Hostile sessions against a victim: the host event loop's largest stall and the victim's latency (issue 10).

One host process runs two sessions. The hostile one runs a cell that
attacks the host through what it sends (a huge decimal to an ``int``
parameter, multi-MB final answers, a flood of multi-MB progress events, an
output flood, a tool-call flood); meanwhile the victim runs trivial cells
and a ticker measures the loop's largest gap. The same figures with no
hostile session, measured in the same run, are the baseline. Then host RSS
after many cells of 2 MB output each against after 10 (it must be flat).
Run: ``python bench/bench_hostile.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_agent import Session  # noqa: E402

from _benchlib import MB, Row, bench_main, make_row, percentile  # noqa: E402

BENCHMARK = "hostile"


def _workloads(quick: bool) -> dict[str, str]:
    scale = 1 if quick else 3
    return {
        "huge decimal to an int parameter": (
            "from decimal import Decimal\n"
            f"for _ in range({20 * scale}):\n"
            "    try:\n        tools.add(Decimal('1e10000000'))\n    except ToolError:\n        pass\n"),
        "multi-MB final_answer": (
            f"for i in range({4 * scale}):\n"
            "    final_answer(['y' * 100] * 30_000)\n"  # ~3 MB: under the cap, decoded in a worker thread
            "    final_answer('x' * 6_000_000)\n"),  # over the cap: refused by size before decoding
        "multi-MB progress flood": f"for i in range({10 * scale}):\n    progress('p', blob='x' * 3_000_000)\n",
        "output flood": f"for i in range({500 * scale}):\n    print('x' * 100_000)\n",
        "tool-call flood": f"for i in range({1000 * scale}):\n    tools.add(i)\n",
    }


def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


class _StallTicker:
    """The longest time the event loop could not run a task (beyond the tick's own sleep)."""

    def __init__(self, tick: float = 0.01) -> None:
        self.tick, self.max_gap = tick, 0.0

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last - self.tick)
            last = now


async def _measure(victim: Session, hostile: Session | None, code: str, min_cells: int) -> tuple[float, list[float]]:
    """(largest loop stall, victim latencies) while ``hostile`` runs ``code`` (or with no hostile cell)."""
    ticker = _StallTicker()
    tick_task = asyncio.create_task(ticker.run())
    attack = asyncio.create_task(hostile.execute(code, timeout=300)) if hostile is not None else None
    latencies: list[float] = []
    try:
        while len(latencies) < min_cells or (attack is not None and not attack.done()):
            started = time.perf_counter()
            await victim.execute("1")
            latencies.append(time.perf_counter() - started)
        if attack is not None:
            await attack
    finally:
        tick_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick_task
    return ticker.max_gap, latencies


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def _memory_rows(quick: bool) -> list[Row]:
    cells = 200 if quick else 1000
    with tempfile.TemporaryDirectory() as workspace:
        async with Session(workspace, notebook=False, default_timeout=60) as session:
            for _ in range(10):
                await session.execute("print('x' * 2_000_000)")
            after_10 = _rss()
            for _ in range(cells - 10):
                await session.execute("print('x' * 2_000_000)")
            after_all = _rss()
    return [make_row(BENCHMARK, f"host RSS after {cells} cells of 2 MB output", after_all / MB, "MB",
                     baseline=after_10 / MB, baseline_name="after 10 cells",
                     note=f"growth {(after_all - after_10) / MB:.1f} MB (notebook=False, restore_on_death off)")]


async def _run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    min_cells = 30 if quick else 100
    with tempfile.TemporaryDirectory() as victim_dir, tempfile.TemporaryDirectory() as hostile_dir:
        async with Session(victim_dir, notebook=False) as victim, \
                Session(hostile_dir, notebook=False, tools=[add]) as hostile:
            await victim.execute("1")
            base_stall, base = await _measure(victim, None, "", min_cells)
            base_p50, base_max = percentile(base, 50) * 1000, max(base) * 1000
            rows.append(make_row(BENCHMARK, "largest loop stall, no hostile session", base_stall * 1000, "ms"))
            rows.append(make_row(BENCHMARK, "victim trivial cell p50, no hostile session", base_p50, "ms"))
            rows.append(make_row(BENCHMARK, "victim trivial cell max, no hostile session", base_max, "ms"))
            for name, code in _workloads(quick).items():
                stall, latencies = await _measure(victim, hostile, code, min_cells)
                rows.append(make_row(BENCHMARK, f"largest loop stall: {name}", stall * 1000, "ms",
                                     baseline=base_stall * 1000, baseline_name="no hostile session"))
                rows.append(make_row(BENCHMARK, f"victim p50: {name}", percentile(latencies, 50) * 1000, "ms",
                                     baseline=base_p50, baseline_name="no hostile session"))
                rows.append(make_row(BENCHMARK, f"victim max: {name}", max(latencies) * 1000, "ms",
                                     baseline=base_max, baseline_name="no hostile session",
                                     note=f"{len(latencies)} victim cells"))
    rows += await _memory_rows(quick)
    return rows


def run(quick: bool) -> list[Row]:
    """Measure every hostile workload against a victim, and host RSS over many cells."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    bench_main(run, __doc__.splitlines()[0], "fewer cells and smaller floods (about a minute)")
