"""``./dev.sh test``: the whole suite in two phases, or pytest as it is when the arguments pick tests.

Phase 1 runs every test not marked ``serial`` on several pytest-xdist workers, one
test file per worker at a time (``--dist loadfile``: a module's shared session or
server is started once). Phase 2 runs the ``serial`` tests alone on the machine:
they measure the host (its memory, its processes, its temporary directory's
leftovers) or load it (fork bombs, twenty sessions), so a neighbour would bias
them or be starved by them.

Arguments that pick tests (a path or node id, ``-k``, ``-m``, ``--lf`` and the
like) or that set xdist's own options run one plain ``pytest ARGS``, as before;
other arguments (``-q``, ``-p no:cacheprovider``, ``--durations=20``, ...) go to
both phases. ``KERNEL_AGENT_TEST_WORKERS`` sets the number of workers (0: one
serial run of everything, without xdist).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Options after which pytest reads the next argument as their value (so it is not a path).
_TAKES_VALUE = {"-p", "-c", "-o", "-W", "-r", "--tb", "--durations", "--durations-min", "--timeout", "--basetemp",
                "--confcutdir", "--rootdir", "--junitxml", "--junit-xml", "--override-ini", "--color", "--capture",
                "--log-level", "--import-mode", "--maxfail"}
# Options that choose tests or workers: the caller asked for a specific run.
_SELECTS = ("-k", "-m", "-n", "--numprocesses", "--dist", "--lf", "--last-failed", "--ff", "--failed-first",
            "--sw", "--stepwise", "--deselect", "--ignore", "--ignore-glob", "-x", "--exitfirst", "--pdb",
            "--collect-only", "--co", "--looponfail", "-f", "--help", "-h", "--version", "-V", "--fixtures",
            "--markers")
# Passed to workers: the count file is written by the controller only (tests/conftest.py).
COUNTS_ENV = "KERNEL_AGENT_TEST_COUNTS"
# One file per worker at a time; files handed out in collection order (tests/conftest.py puts the longest first),
# not xdist's default of most tests first, which left the few-test, minute-long CLI files for the end.
PHASE_1 = ["--dist", "loadfile", "--no-loadscope-reorder"]
WORKERS_ENV = "KERNEL_AGENT_TEST_WORKERS"


def picks_tests(args: list[str]) -> bool:
    """Whether ``args`` select tests or configure xdist themselves (then they run as one plain pytest)."""
    expecting_value = False
    for arg in args:
        if expecting_value:
            expecting_value = False
            continue
        name = arg.split("=", 1)[0]
        if name in _SELECTS or any(arg.startswith(short) and len(arg) > 2 for short in ("-k", "-m", "-n")):
            return True
        if not arg.startswith("-"):
            return True  # a path or node id
        expecting_value = arg in _TAKES_VALUE  # "--tb=short" or "-pno:x" carry their value
    return False


def default_workers() -> int:
    """Workers for phase 1: a serial run keeps about 40% of one core busy (kernels and subprocesses mostly wait),
    but one worker per core: on 2 cores, 3 workers made a Ctrl-C race and a gateway restart flaky in CI runs, and 4
    workers running the CLI tests' subprocesses at once ran past their 60 s timeouts."""
    return min(8, os.cpu_count() or 1)


def _phase(pytest: list[str], args: list[str], counts_file: Path) -> tuple[int, dict[str, int]]:
    counts_file.unlink(missing_ok=True)
    code = subprocess.call([*pytest, *args], env={**os.environ, COUNTS_ENV: str(counts_file)})
    counts: dict[str, int] = json.loads(counts_file.read_text()) if counts_file.is_file() else {}
    return code, counts


def main(args: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    workers = int(os.environ.get(WORKERS_ENV, default_workers()))
    if picks_tests(args) or workers <= 0:
        return subprocess.call([*pytest, *args])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kernel-agent-test-counts-") as scratch:
        counts_file = Path(scratch) / "counts.json"
        print(f"phase 1 of 2: the tests not marked serial, on {workers} workers", flush=True)
        first, first_counts = _phase(pytest, [*PHASE_1, "-n", str(workers), "-m", "not serial", *args],
                                     counts_file)
        print("phase 2 of 2: the serial tests (they measure or load the host), alone", flush=True)
        second, second_counts = _phase(pytest, ["-m", "serial", *args], counts_file)
    total = {key: first_counts.get(key, 0) + second_counts.get(key, 0) for key in {*first_counts, *second_counts}}
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    failed = total.get("failed", 0) + total.get("error", 0)
    print(f"both phases took {minutes}m{seconds:02d}s", flush=True)
    # The closing line in the plain form CI reads ("word: N passed, N failed, N skipped"), for both phases together.
    print(f"suite: {total.get('passed', 0)} passed, {failed} failed, {total.get('skipped', 0)} skipped", flush=True)
    return combined_exit_code(first, second)


def combined_exit_code(first: int, second: int) -> int:
    """The suite's exit status from its phases': the first failure's, else 5 only if neither phase had a test."""
    for code in (first, second):
        if code not in (0, 5):  # 5: no test in this phase, not a failure of the suite
            return code
    return 5 if first == second == 5 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
