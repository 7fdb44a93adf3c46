"""``kernel-agent experiment SPEC``: run an experiment from a TOML or Python spec, live, then summarise it.

``--report DIR`` summarises an experiment's directory without running
anything. Exit status: 0 done (wrong answers are results, not failures);
2 a spec or directory that cannot be used (one line, no traceback); 130
interrupted, with every finished run kept in the journal (run the same
command again to continue).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the experiment modules load only when the command runs: `--help` stays fast
    from kernel_agent.experiment import Experiment, ExperimentResults

EXIT_INTERRUPTED = 130


@click.command("experiment", short_help="run tasks x configurations x repeats of an agent, and summarise them",
               help="Run the experiment SPEC describes (a .toml spec, or a Python file defining `experiment = "
                    "Experiment(...)`): every task under every configuration, REPEATS times, each run recorded to "
                    "its own notebook, then print success rates with confidence intervals. Run again in the same "
                    "directory to continue an interrupted experiment. With --report DIR, summarise an experiment's "
                    "directory without running anything. Exit status: 0 done, 2 unusable spec or directory, "
                    "130 interrupted.")
@click.argument("spec", required=False, metavar="SPEC")
@click.option("--report", "report", metavar="DIR", help="summarise the experiment in DIR; run nothing")
@click.option("--directory", metavar="DIR", help="where the experiment keeps its runs (default: the spec's)")
@click.option("--concurrency", type=click.IntRange(min=1), metavar="N", help="runs at once (default: the spec's)")
@click.option("--repeats", type=click.IntRange(min=1), metavar="N", help="runs of each task per configuration")
@click.option("--no-cache", is_flag=True, help="ask the model for every reply (no reply cache)")
@click.option("--restart", is_flag=True,
              help="set the directory's earlier runs aside (under previous/) and start again")
@click.option("--format", "formats", type=click.Choice(["csv", "parquet"]), multiple=True,
              help="the table's file format (repeatable; default: csv, and parquet when pyarrow is there)")
@click.option("--compare", "comparisons", multiple=True, metavar="A,B",
              help="print the paired comparison of configurations A and B (repeatable; default: the first two)")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="the confidence level of the intervals")
@click.option("--quiet", is_flag=True, help="no line per run, only the summary")
@click.option("--plots/--no-plots", default=None,
              help="draw the success rates, the task x configuration map and the token and time distributions "
                   "as PNG files in the directory's plots/ (default: when matplotlib is installed)")
def command(spec: str | None, report: str | None, directory: str | None, concurrency: int | None,
            repeats: int | None, no_cache: bool, restart: bool, formats: tuple[str, ...],
            comparisons: tuple[str, ...], confidence: float, quiet: bool, plots: bool | None) -> int:
    from kernel_agent.cli.errors import input_error
    from kernel_agent.errors import ExperimentError

    pairs = [_pair(text) for text in comparisons]
    if report is not None:
        if spec is not None or directory or concurrency or repeats or no_cache or restart:
            raise click.UsageError("--report summarises a directory: give no SPEC and no run options with it")
        from kernel_agent.experiment import ExperimentResults

        try:
            results = ExperimentResults.load(report)
            _print_summary(results, pairs, confidence, formats, written=False, plots=plots)
        except (ExperimentError, ValueError) as exc:
            return input_error("experiment", exc)
        return 0
    if spec is None:
        raise click.UsageError("give a SPEC file to run, or --report DIR to summarise one")
    from kernel_agent.experiment.spec_file import load_experiment, with_options

    try:
        experiment = with_options(load_experiment(spec), directory=directory, repeats=repeats,
                                  concurrency=concurrency, cache=not no_cache)
    except ExperimentError as exc:
        return input_error("experiment", exc)
    names = [configuration.name for configuration in experiment.configurations]
    for name in {name for pair in pairs for name in pair} - set(names):
        raise click.UsageError(f"--compare: the experiment has no configuration {name!r} (it has {', '.join(names)})")
    try:
        outcome = _run(experiment, restart=restart, quiet=quiet)
    except ExperimentError as exc:
        return input_error("experiment", exc)
    if outcome is None:
        return EXIT_INTERRUPTED
    try:
        _print_summary(outcome, pairs, confidence, formats, written=True, plots=plots)
    except ValueError as exc:  # a --compare naming a configuration the experiment does not have
        return input_error("experiment", exc)
    return 0


def _pair(text: str) -> tuple[str, str]:
    a, comma, b = text.partition(",")
    if not comma or not a.strip() or not b.strip() or "," in b:
        raise click.UsageError(f"--compare takes A,B (two configuration names), got {text!r}")
    return a.strip(), b.strip()


class _Progress:
    """One line per finished run, and the running count of runs and successes."""

    def __init__(self, total: int, done: int, quiet: bool) -> None:
        self.total, self.done, self.successes, self.quiet = total, done, 0, quiet
        self.started = done

    def __call__(self, row: dict[str, Any]) -> None:
        from kernel_agent.cli.terminal_text import terminal_safe

        self.done += 1
        self.successes += row.get("success") is True
        if self.quiet:
            return
        mark = "ok  " if row.get("success") is True else "FAIL"
        cached = f", {row.get('cached_replies')} cached" if row.get("cached_replies") else ""
        line = (f"[{self.done}/{self.total}] {mark} {row.get('configuration')} / {row.get('task')} / "
                f"repeat {row.get('repeat')}: {row.get('stop_reason')}, {_count(row.get('steps', 0), 'step')}, "
                f"{row.get('total_tokens'):,} tokens{cached}, {row.get('seconds', 0):.1f}s "
                f"({self.successes}/{self.done - self.started} right so far)")
        if row.get("error"):
            line += f"\n      error: {str(row['error'])[:300]}"
        print(terminal_safe(line), flush=True)


def _already_done(experiment: Experiment, restart: bool) -> int:
    """How many of this experiment's runs its directory already holds (0 for a new or restarted one)."""
    from kernel_agent.errors import ExperimentError
    from kernel_agent.experiment import ExperimentResults

    if restart or not (experiment.directory / "experiment.json").is_file():
        return 0
    try:
        return len(ExperimentResults.load(experiment.directory).table)
    except ExperimentError:
        return 0  # the run itself says what is wrong with the directory


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _run(experiment: Experiment, *, restart: bool, quiet: bool) -> ExperimentResults | None:
    """Run it with a line per run; None when interrupted (Ctrl-C, SIGTERM), after saying how to continue."""
    from kernel_agent.cli.terminal_text import terminal_safe

    total = len(experiment.run_keys)
    progress = _Progress(total, _already_done(experiment, restart), quiet)
    print(terminal_safe(f"experiment {experiment.name}: {_count(len(experiment.configurations), 'configuration')} x "
                        f"{_count(len(experiment.tasks), 'task')} x {_count(experiment.repeats, 'repeat')} = "
                        f"{_count(total, 'run')}, "
                        f"{experiment.concurrency} at once, in {experiment.directory}"
                        + (f" ({progress.done} done before)" if progress.done else "")), flush=True)

    async def main() -> ExperimentResults:
        current = asyncio.current_task()
        if current is not None:  # SIGTERM (kill, a job scheduler) stops it as cleanly as Ctrl-C does
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
        return await experiment.run(progress, start_over=restart)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(terminal_safe(
            f"\ninterrupted: {progress.done} of {total} runs are finished and kept in "
            f"{experiment.directory / 'runs.jsonl'}; run the same command again to continue "
            "(the runs in flight start over)."), file=sys.stderr)
        return None


def _print_summary(results: ExperimentResults, pairs: list[tuple[str, str]], confidence: float,
                   formats: tuple[str, ...], *, written: bool, plots: bool | None) -> None:
    from kernel_agent.cli.terminal_text import terminal_safe

    summary = results.summary(confidence)
    print("\n" + str(summary))
    names = list(summary.configurations.index)
    for a, b in pairs or ([(names[0], names[1])] if len(names) >= 2 else []):
        print("\n" + str(results.compare(a, b, confidence)))
    directory = results.directory
    if directory is None:
        return
    files = _table_files(results, directory, formats, written=written)
    if files:
        print("\n" + terminal_safe("results: " + ", ".join(str(file) for file in files)))
    print(terminal_safe(f"notebooks: {directory / 'notebooks'} (kernel-agent audit / replay each run)"))
    if plots is None:
        import importlib.util

        plots = importlib.util.find_spec("matplotlib") is not None
    if plots and len(results.table):
        from kernel_agent.experiment.plots import save_plots

        drawn = save_plots(results.table, directory / "plots", confidence)
        print(terminal_safe("plots: " + ", ".join(str(path) for path in drawn)))


def _table_files(results: ExperimentResults, directory: Path, formats: tuple[str, ...], *,
                 written: bool) -> list[Path]:
    """The table's files: the ones the run wrote (or a report finds), plus any --format asked for."""
    files = []
    for format in ("csv", "parquet"):
        path = directory / f"results.{format}"
        if format in formats and not (written and path.is_file()):
            getattr(results, f"to_{format}")(path)
        if path.is_file() and (format in formats or not formats):
            files.append(path)
    return files
