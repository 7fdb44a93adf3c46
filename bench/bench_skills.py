"""Skills library benchmarks: what a lookup, a use and the manifest cost as the library grows.

* ``get`` (the current version of one skill, checked against its hash) and
  ``count_use`` (one use: the index rewritten under the lock, fsynced) in a
  library of N skills, next to the floor any index-file design pays in the
  same run: reading and parsing the same ``index.json`` (for ``get``), and
  that plus an atomic, fsynced rewrite of the same bytes (for ``count_use``).
* The manifest's skills section and a search over N skills, next to reading
  the index alone.

Run: ``python bench/bench_skills.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kernel_agent.skills import SkillLibrary  # noqa: E402

from _benchlib import Row, bench_main, make_row, median  # noqa: E402

BENCHMARK = "skills"
SOURCE = "def skill_{n}(text):\n    '''Normalise one kind of messy input.'''\n    return text.strip().lower()\n" * 3


def timed(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return median(times)


def parse_index(path: Path) -> object:
    return json.loads(path.read_bytes())


def rewrite_index(path: Path) -> None:
    data = json.dumps(json.loads(path.read_bytes())).encode()
    temporary = path.with_name(".bench.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path.with_name("copy.json"))


def run(quick: bool) -> list[Row]:
    rounds = 5 if quick else 21
    rows: list[Row] = []
    ms = 1000.0
    for count in (100, 1_000):
        with tempfile.TemporaryDirectory() as root:
            library = SkillLibrary(Path(root) / "lib")
            for n in range(count):
                library.add(f"skill_{n}", SOURCE.format(n=n), f"Normalise messy input of kind {n}")
            index = library.directory / "index.json"
            sha = library.get("skill_7").sha256
            floor = timed(lambda: parse_index(index), rounds)  # noqa: B023 - used at once
            get = timed(lambda: library.get("skill_7"), rounds)  # noqa: B023
            use = timed(lambda: library.count_use("skill_7", sha), rounds)  # noqa: B023
            write_floor = timed(lambda: rewrite_index(index), rounds)  # noqa: B023
            manifest = timed(library.manifest_lines, rounds)
            search = timed(lambda: library.search("messy input kind 7", 5), rounds)  # noqa: B023
            size = index.stat().st_size / 1000
            rows += [
                make_row(BENCHMARK, f"get one skill, {count} skills", get * ms, "ms", baseline=floor * ms,
                         baseline_name=f"json.loads of the {size:.0f} kB index"),
                make_row(BENCHMARK, f"count_use, {count} skills", use * ms, "ms", baseline=write_floor * ms,
                         baseline_name="parse + fsynced atomic rewrite of the same index"),
                make_row(BENCHMARK, f"manifest section, {count} skills", manifest * ms, "ms", baseline=floor * ms,
                         baseline_name="json.loads of the index"),
                make_row(BENCHMARK, f"search, {count} skills", search * ms, "ms", baseline=floor * ms,
                         baseline_name="json.loads of the index"),
            ]
    return rows


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer rounds")
