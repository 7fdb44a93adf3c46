"""What seeding sessions costs: the seeding cell at start, and NumPy seeded at its first import rather than at start.

* The seeding cell: ``seed_kernel`` (a silent execute that seeds ``random``
  and installs the NumPy import hook) in a started sandboxed session, next
  to a silent ``pass`` in the same session (the round trip it cannot avoid).
* ``import numpy.random`` in a fresh interpreter with the seeding hook
  installed, next to the same import without it.
* What seeding at start would cost if it imported NumPy: peak RSS and time of
  a fresh interpreter after ``seed_session`` (NumPy not imported), next to
  importing NumPy and seeding it at once.

Run: ``python bench/bench_seeds.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _benchlib import Row, bench_main, make_row, median

from kernel_agent import Session
from kernel_agent.runtime.execute import run_silently
from kernel_agent.session.seeds import seed_kernel

BENCHMARK = "seeds"
_TIMED_IMPORT = ("import time, sys\n{setup}\nt = time.perf_counter()\nimport numpy.random\n"
                 "numpy.random.rand()\nprint(time.perf_counter() - t)")
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
_AT_START = ("import time\nt = time.perf_counter()\n{code}\nelapsed = time.perf_counter() - t\n"
             "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1]\n"
             "print(elapsed, int(peak) * 1024)")


async def seeding_cell(rounds: int) -> tuple[float, float]:
    """(median seconds of the seeding cell, of a silent ``pass``), interleaved in one session."""
    seeded, plain = [], []
    with tempfile.TemporaryDirectory() as workspace:
        async with Session(workspace) as session:
            kernel = session._require_kernel()
            for _ in range(rounds):
                start = time.perf_counter()
                await seed_kernel(kernel, 1234, 30)
                seeded.append(time.perf_counter() - start)
                start = time.perf_counter()
                assert (await run_silently(kernel, "pass", 30)).ok
                plain.append(time.perf_counter() - start)
    return median(seeded), median(plain)


def _python(code: str) -> list[float]:
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [float(part) for part in output.split()]


def run(quick: bool) -> list[Row]:
    rounds = 5 if quick else 30
    seeded_cell, pass_cell = asyncio.run(seeding_cell(rounds))
    hooked, unhooked, lazy, eager = [], [], [], []
    for _ in range(3 if quick else 9):  # interleaved, so a noisy neighbour slows both alike
        hooked.append(_python(_TIMED_IMPORT.format(
            setup="from kernel_agent.kernel.seeds import seed_session\nseed_session(1234)"))[0])
        unhooked.append(_python(_TIMED_IMPORT.format(setup=""))[0])
        lazy.append(_python(_AT_START.format(
            code="from kernel_agent.kernel.seeds import seed_session\nseed_session(1234)")))
        eager.append(_python(_AT_START.format(code="import random, numpy\nrandom.seed(1234)\nnumpy.random.seed(1234)")))
    return [
        make_row(BENCHMARK, "seeding cell at session start", seeded_cell * 1000, "ms", baseline=pass_cell * 1000,
                 baseline_name="a silent `pass` in the same session",
                 note="seed_kernel: random.seed and the NumPy import hook, one silent execute"),
        make_row(BENCHMARK, "first import numpy.random with the seeding hook", median(hooked) * 1000, "ms",
                 baseline=median(unhooked) * 1000, baseline_name="the same import without the hook",
                 note="fresh interpreter; the hook seeds numpy.random once its module has run"),
        make_row(BENCHMARK, "seeding at start, NumPy seeded lazily: time", median(r[0] for r in lazy) * 1000, "ms",
                 baseline=median(r[0] for r in eager) * 1000, baseline_name="importing NumPy to seed it at start",
                 note="what every session that never uses NumPy saves"),
        make_row(BENCHMARK, "seeding at start, NumPy seeded lazily: peak RSS", median(r[1] for r in lazy) / 1e6, "MB",
                 baseline=median(r[1] for r in eager) / 1e6, baseline_name="importing NumPy to seed it at start",
                 note="peak RSS of the whole interpreter after seeding"),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer rounds")
