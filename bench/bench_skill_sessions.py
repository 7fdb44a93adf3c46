"""Skills in sessions: what importing a skill and proposing one cost, next to what they are built on.

* ``from skills import NAME`` in a kernel (a ``skills.load`` call through the
  bridge, then the module made from its source), next to a plain host tool call
  returning the same source in the same session: the import's own overhead.
* ``skills.propose(...)`` end to end (checks, the trial in a fresh sandboxed
  kernel, storing), next to starting a bare session, running one cell and
  closing it: the floor any trial in a fresh kernel pays.

Run: ``python bench/bench_skill_sessions.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kernel_agent import Session, tool  # noqa: E402
from kernel_agent.skills import SkillLibrary, SkillsSource  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402

BENCHMARK = "skill sessions"
SOURCE = "def slug(text):\n    '''Lowercase words joined by dashes.'''\n    return '-'.join(text.lower().split())\n" * 20


@tool(namespace="bench")
def echo(text: str) -> str:
    """Give the text back."""
    return text


IMPORTS = """\
import sys, time, skills
times = []
for _ in range({rounds}):
    sys.modules.pop("skills.slug", None)
    skills.__dict__.pop("slug", None)
    start = time.perf_counter()
    from skills import slug
    times.append(time.perf_counter() - start)
calls = []
for _ in range({rounds}):
    start = time.perf_counter()
    tools.bench.echo(SOURCE)
    calls.append(time.perf_counter() - start)
print(sorted(times)[len(times) // 2], sorted(calls)[len(calls) // 2])
"""


async def measure(rounds: int, proposals: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as root:
        library = SkillLibrary(Path(root) / "lib")
        library.add("slug", SOURCE, "a slug")
        source = SkillsSource(library, approver=lambda request: True)
        async with Session(tools=[source, echo], notebook=False) as session:
            await session.execute(f"SOURCE = {SOURCE!r}")
            result = await session.execute(IMPORTS.format(rounds=rounds))
            imported, called = (float(part) for part in result.stdout.split())
            propose_times = []
            for n in range(proposals):
                code = f"tools.skills.propose('skill_{n}', {SOURCE.replace('slug', f'skill_{n}')!r}, 'a slug', " \
                       f"'assert skill_{n}(\"A b\") == \"a-b\"')"
                start = time.perf_counter()
                outcome = await session.execute(code)
                propose_times.append(time.perf_counter() - start)
                assert outcome.error is None, outcome.error
        bare_times = []
        for _ in range(proposals):
            start = time.perf_counter()
            async with Session(notebook=False) as bare:
                await bare.execute("x = 1")
            bare_times.append(time.perf_counter() - start)
    return imported, called, median(propose_times), median(bare_times)


def run(quick: bool) -> list[Row]:
    imported, called, proposed, bare = asyncio.run(measure(20 if quick else 100, 2 if quick else 5))
    ms = 1000.0
    return [
        make_row(BENCHMARK, "from skills import NAME (2.6 kB source)", imported * ms, "ms", baseline=called * ms,
                 baseline_name="a host tool call returning the same source"),
        make_row(BENCHMARK, "skills.propose: checks, trial kernel, store", proposed, "s", baseline=bare,
                 baseline_name="start a bare session, run one cell, close it"),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer rounds")
