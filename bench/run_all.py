"""Run every bench/bench_*.py and write bench/RESULTS.md.

A benchmark module only has to expose ``run(quick: bool) -> list[Row]``
(see _benchlib.Row). Each one runs in its own Python process (this script
re-invoked with ``--child``), so no benchmark inherits another's imports,
warmed caches or leftover kernels, and the first-start figures stay honest.
Timings are printed, never asserted: the results file records the machine
and the command so a later run can be compared with it.

Usage: ``python bench/run_all.py [--quick] [--output bench/RESULTS.md] [--only NAME ...]``

``--only bench_data bench_streaming`` runs just those modules and replaces
their sections of the existing results file (or adds them before the
machine section), saying in the header which sections were updated when:
each figure still sits next to a baseline measured in its own run.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from _benchlib import Row, console_table, markdown_table  # noqa: E402

DEFAULT_OUTPUT = BENCH_DIR / "RESULTS.md"


@dataclass(frozen=True)
class BenchResult:
    """One benchmark module's rows and how long it took."""

    path: Path
    title: str
    rows: list[Row]
    seconds: float


def discover() -> list[Path]:
    """Every benchmark module, in a stable order."""
    return sorted(BENCH_DIR.glob("bench_*.py"))


def title_of(path: Path) -> str:
    """The first line of the module docstring, read without importing the module."""
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc.splitlines()[0].rstrip(".") if doc else path.stem


def run_child(path: Path, quick: bool, out: Path) -> None:
    """In the child process: import one module, call its run(), write the rows as JSON."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    rows: list[Row] = module.run(quick)
    out.write_text(json.dumps(rows))


def run_benchmark(path: Path, quick: bool) -> BenchResult:
    """Run one module in a fresh interpreter; its progress output passes straight through."""
    with tempfile.TemporaryDirectory(prefix="kernel-agent-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--json", str(out)]
        started = time.perf_counter()
        subprocess.run([*command, *(["--quick"] if quick else [])], check=True)
        rows: list[Row] = json.loads(out.read_text())
    return BenchResult(path, title_of(path), rows, time.perf_counter() - started)


# -- machine description --------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _bwrap() -> str:
    try:
        from kernel_agent.sandbox.bwrap import find_bwrap

        found = find_bwrap()
    except Exception as exc:  # the description must not stop the report
        return f"unavailable ({exc})"
    return f"{'.'.join(map(str, found.version))} ({found.path})"


def _git_revision() -> str:
    root = BENCH_DIR.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        revision = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + (" + uncommitted changes" if dirty else "")


def machine_description() -> list[tuple[str, str]]:
    """What the figures were measured on: they mean little without it."""
    import psutil
    import zmq

    memory = psutil.virtual_memory().total / 1024**3
    return [
        ("CPU", _cpu_model()),
        ("Cores", f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} physical"),
        ("Memory", f"{memory:.1f} GiB"),
        ("OS", _os_name()),
        ("Kernel", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"),
        ("kernel-agent", f"{_version('kernel-agent')} (git {_git_revision()})"),
        ("ipykernel", _version("ipykernel")),
        ("IPython", _version("ipython")),
        ("jupyter_client", _version("jupyter_client")),
        ("pyzmq / libzmq", f"{zmq.__version__} / {zmq.zmq_version()}"),
        ("bwrap", _bwrap()),
    ]


def _load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


# -- report ---------------------------------------------------------------------------------


HOW_TO_READ = """\
How to read: every figure is measured next to its stock baseline in the same run
(plain jupyter_client + the stock `python3` ipykernel kernelspec, tcp, no sandbox).
*Ratio* is value / baseline (below 1 is better than stock). *Absolute* judges the
issue's target as written (set on a reference machine); *Vs stock* judges the same
target expressed as a multiple of stock (target / stock-on-the-reference-machine),
which is the verdict that carries over to a slower machine. Timings are never
asserted; a shared VM is noisy, so compare ratios rather than absolute times.
The token-economy section counts tokens, not time: there the baseline is a classic
tool-calling agent given the same tools and making the same calls, every result
passing through its context (bench/bench_tokens.py says how both are counted).
The scale section compares kernel-agent with itself where no stock equivalent
exists: a pooled session against a cold-started one, 20 concurrent sessions
against one session alone; its memory rows are next to a stock ipykernel."""


def render(results: Sequence[BenchResult], machine: Sequence[tuple[str, str]], command: str,
           started: dt.datetime, load_before: str, load_after: str, quick: bool) -> str:
    """The whole RESULTS.md."""
    parts = [
        "# Benchmark results",
        "",
        "Generated by `bench/run_all.py`; do not edit by hand, re-run it.",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Command: `{command}` (in `{Path.cwd()}`)",
        f"- Mode: {'quick (fewer samples)' if quick else 'full'}",
        f"- Load average (1/5/15 min) before / after: {load_before} | {load_after}",
        "",
        HOW_TO_READ,
        "",
    ]
    for result in results:
        parts.append(section(result))
    parts += ["## Machine", "", "| | |", "| --- | --- |"]
    parts += [f"| {name} | {value} |" for name, value in machine]
    return "\n".join(parts) + "\n"


def section(result: BenchResult, note: str = "") -> str:
    """One benchmark's part of RESULTS.md, from its heading to the blank line after its table."""
    return "\n".join([f"## {result.title}", "",
                      f"`{result.path.relative_to(BENCH_DIR.parent)}`, {result.seconds:.0f} s{note}.", "",
                      markdown_table(result.rows), ""])


def update_sections(existing: str, results: Sequence[BenchResult], when: str, load: str) -> str:
    """``existing`` (a RESULTS.md) with the sections of ``results`` replaced, or added before the machine section."""
    head, *bodies = existing.split("\n## ")
    sections = {body.split("\n", 1)[0]: "## " + body for body in bodies}
    note = f" (updated {when} with --only, load {load})"
    for result in results:
        sections[result.title] = section(result, note)
    machine = sections.pop("Machine", "## Machine\n")
    names = ", ".join(result.path.stem for result in results)
    head = head.rstrip("\n") + f"\n- Sections updated since, with `--only`: {names} ({when})\n"
    return "\n".join([head, *(text.rstrip("\n") + "\n" for text in sections.values()), machine.rstrip("\n") + "\n"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run every bench/bench_*.py and write bench/RESULTS.md.")
    parser.add_argument("--quick", action="store_true", help="fewer samples; the whole run takes under 2 minutes")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the markdown report")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these modules (bench_data or data) and update their sections of --output")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.quick, args.json)
        return

    command = shlex.join([sys.executable, *sys.argv])
    started = dt.datetime.now(dt.UTC)
    load_before = _load()
    paths = discover()
    if args.only:
        wanted = {name.removesuffix(".py").removeprefix("bench_") for name in args.only}
        paths = [path for path in paths if path.stem.removeprefix("bench_") in wanted]
        missing = wanted - {path.stem.removeprefix("bench_") for path in paths}
        if missing:
            parser.error(f"no benchmark named {', '.join(sorted(missing))} in {BENCH_DIR}")
    results = []
    for path in paths:
        print(f"== {path.name}", file=sys.stderr, flush=True)
        result = run_benchmark(path, args.quick)
        print(console_table(result.rows), flush=True)
        results.append(result)
    if args.only and args.output.is_file():
        when = started.strftime("%Y-%m-%d %H:%M UTC")
        report = update_sections(args.output.read_text(), results, when, f"{load_before} | {_load()}")
    else:
        report = render(results, machine_description(), command, started, load_before, _load(), args.quick)
    args.output.write_text(report)
    total = (dt.datetime.now(dt.UTC) - started).total_seconds()
    print(f"wrote {args.output} in {total:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
