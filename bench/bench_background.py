"""Background cells: what the handle costs next to a plain execute, and what a poll costs with a full output cap.

In one sandboxed session, trivial cells run alternately as
``Session.execute`` (the baseline) and as ``Session.start_cell`` then
``wait()``; then ``poll()`` on a running cell that holds an empty output
(baseline) and one that holds the whole default output cap (2 MB), since a
poll copies the outputs kept so far.
Run: ``python bench/bench_background.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import Row, bench_main, make_row, median

from kernel_agent import CellStatus, Session
from kernel_agent.session.background import RunningCell

BENCHMARK = "background"
_HOLD = "import os, time\n{print}\nwhile not os.path.exists('go-{n}'):\n    time.sleep(0.005)\n"


def log(message: str) -> None:
    print(f"[bench_background] {message}", file=sys.stderr, flush=True)


async def _cells(session: Session, cells: int) -> tuple[list[float], list[float]]:
    executed, background = [], []
    for _ in range(cells):
        started = time.perf_counter()
        result = await session.execute("1")
        executed.append(time.perf_counter() - started)
        started = time.perf_counter()
        ended = await (await session.start_cell("1")).wait()
        background.append(time.perf_counter() - started)
        if result.status is not CellStatus.OK or ended is None or ended.status is not CellStatus.OK:
            raise RuntimeError("benchmark cell failed")
    return executed, background


async def _poll_cost(session: Session, cell: RunningCell, polls: int) -> float:
    samples = []
    for _ in range(polls):
        started = time.perf_counter()
        cell.poll()
        samples.append(time.perf_counter() - started)
    return median(samples)


async def _held(session: Session, n: int, printing: str) -> RunningCell:
    """A background cell that has printed what ``printing`` prints and waits for its go file."""
    cell = await session.start_cell(_HOLD.format(print=printing, n=n))
    while cell.poll().new_text.count("ready") == 0:  # the cell prints 'ready' last, after its output
        await asyncio.sleep(0.01)
    return cell


async def measure(quick: bool) -> list[Row]:
    cells, polls = (50, 20) if quick else (200, 50)
    async with Session(default_timeout=120) as session:
        await session.execute("1")  # warm-up
        executed, background = await _cells(session, cells)
        empty = await _held(session, 1, "print('ready', flush=True)")
        empty_poll = await _poll_cost(session, empty, polls)
        (session.workspace / "go-1").touch()
        await empty.wait()
        full = await _held(session, 2, "for i in range(1_900):\n    print('x' * 999)\nprint('ready', flush=True)")
        kept = sum(len(o.get("text", "")) for o in full.poll().outputs)
        full_poll = await _poll_cost(session, full, polls)
        (session.workspace / "go-2").touch()
        await full.wait()
    return [
        make_row(BENCHMARK, "trivial cell: start_cell + wait", median(background) * 1000, "ms",
                 baseline=median(executed) * 1000, baseline_name="execute",
                 note=f"median of {cells} each, alternated in one session"),
        make_row(BENCHMARK, f"poll() with {kept / 1e6:.1f} MB of output kept", full_poll * 1000, "ms",
                 baseline=empty_poll * 1000, baseline_name="poll() with no output",
                 note=f"median of {polls}; a poll copies the outputs kept so far (bounded by max_output_bytes)"),
    ]


def run(quick: bool = False) -> list[Row]:
    """Measure in one sandboxed session (see the module doc)."""
    return asyncio.run(measure(quick))


def main(argv: Sequence[str] | None = None) -> None:
    bench_main(run, __doc__.splitlines()[0], "fewer cells and polls", argv)


if __name__ == "__main__":
    main()
