"""Shared helpers for the benchmarks: result rows, percentiles, memory, tables.

Every benchmark module (``bench/bench_*.py``) exposes ``run(quick: bool) ->
list[Row]``; ``run_all.py`` turns those rows into bench/RESULTS.md. Rows
carry the baseline measured in the same run, so a figure is never read
without the stock number it should be compared with: this machine is shared
and several times slower than the reference machine the issue's targets
were set on, so absolute figures alone would mislead.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import psutil

MB = 1_000_000  # the targets say "MB"; decimal megabytes are the stricter reading


class Row(TypedDict):
    """One measured figure, its same-run baseline, and its target.

    ``met`` judges the absolute target (set on the reference machine).
    ``met_vs_stock`` judges the same target expressed as a ratio to the stock
    baseline (target / stock-on-reference-machine), which is what carries
    over to a slower machine. Either is None where it does not apply.
    """

    benchmark: str
    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str | None
    ratio: float | None
    target: str | None
    met: bool | None
    met_vs_stock: bool | None
    note: str


@dataclass(frozen=True)
class Target:
    """A bound from the issue, and the stock figure it was set against.

    An upper bound by default (latency, memory); ``at_least`` makes it a
    lower bound, for figures where more is better (throughput).
    """

    limit: float
    unit: str
    stock_reference: float | None = None
    at_least: bool = False

    @property
    def ratio_limit(self) -> float | None:
        """The target as a multiple of stock: the part that survives a slower machine."""
        return None if self.stock_reference is None else self.limit / self.stock_reference

    def describe(self) -> str:
        """Human text, e.g. '<= 0.5 s (stock ref 0.6 s: <= 0.83x stock)' or '>= 10000 calls/s'."""
        bound = ">=" if self.at_least else "<="
        text = f"{bound} {_num(self.limit)} {self.unit}"
        if self.stock_reference is not None and self.ratio_limit is not None:
            text += f" (stock ref {_num(self.stock_reference)} {self.unit}: {bound} {self.ratio_limit:.2f}x stock)"
        return text

    def holds(self, value: float, limit: float) -> bool:
        """Whether ``value`` is within ``limit`` in this target's direction."""
        return value >= limit if self.at_least else value <= limit


def make_row(
    benchmark: str,
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_name: str | None = None,
    target: Target | None = None,
    note: str = "",
) -> Row:
    """Build a row, deriving the ratio and both target verdicts from the numbers."""
    ratio = value / baseline if baseline else None
    met = None if target is None else target.holds(value, target.limit)
    met_vs_stock = None
    if target is not None and target.ratio_limit is not None and ratio is not None:
        met_vs_stock = target.holds(ratio, target.ratio_limit)
    return Row(
        benchmark=benchmark, name=name, value=value, unit=unit, baseline=baseline,
        baseline_name=baseline_name, ratio=ratio, target=target.describe() if target else None,
        met=met, met_vs_stock=met_vs_stock, note=note,
    )


def percentile(samples: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default), without needing numpy."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = (len(ordered) - 1) * pct / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(samples: Iterable[float]) -> float:
    """Median that tolerates an empty list (NaN rather than an exception)."""
    values = list(samples)
    return statistics.median(values) if values else math.nan


@dataclass(frozen=True)
class TreeMemory:
    """Memory of the interesting processes in a process tree, in bytes.

    ``rss`` counts shared pages once per process (what `ps` shows); ``uss``
    is memory only these processes hold (freed when they exit); ``pss``
    splits shared pages between their users. USS/PSS are None when the
    platform or permissions do not provide them.
    """

    rss: int
    uss: int | None
    pss: int | None
    other_rss: int  # processes not counted above (e.g. the bwrap supervisors)
    processes: int


def tree_memory(root_pid: int, *, only_python: bool) -> TreeMemory:
    """Sum memory over ``root_pid`` and its descendants.

    With ``only_python`` the figure is the Python interpreter(s) alone, so
    sandbox plumbing (bwrap, sh) is reported separately in ``other_rss``.
    """
    root = psutil.Process(root_pid)
    rss = other = counted = 0
    uss: int | None = 0
    pss: int | None = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            is_python = process.name().startswith("python")
            if only_python and not is_python:
                other += process.memory_info().rss
                continue
            full = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        counted += 1
        rss += full.rss
        uss = None if uss is None or not hasattr(full, "uss") else uss + full.uss
        pss = None if pss is None or not hasattr(full, "pss") else pss + full.pss
    return TreeMemory(rss=rss, uss=uss, pss=pss, other_rss=other, processes=counted)


def _num(value: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, no scientific notation for our ranges."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def _verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "NOT met")


TABLE_HEADER = ("Metric", "Value", "Stock baseline (same run)", "Ratio", "Target", "Absolute", "Vs stock", "Note")


def row_cells(row: Row) -> tuple[str, ...]:
    """The table cells for one row, in TABLE_HEADER order."""
    baseline = "-" if row["baseline"] is None else f"{_num(row['baseline'])} {row['unit']} ({row['baseline_name']})"
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x" if row["ratio"] >= 0.1 else f"{_num(row['ratio'])}x"
    return (
        row["name"], f"{_num(row['value'])} {row['unit']}", baseline, ratio, row["target"] or "-",
        _verdict(row["met"]), _verdict(row["met_vs_stock"]), row["note"],
    )


def markdown_table(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured markdown table of the rows."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [line(TABLE_HEADER), line(["---"] * len(TABLE_HEADER))]
    out += [line(row_cells(row)) for row in rows]
    return "\n".join(out)


def console_table(rows: Sequence[Row]) -> str:
    """A plain aligned table for the terminal (the note column goes last, unpadded)."""
    table = [TABLE_HEADER, *(row_cells(row) for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(TABLE_HEADER) - 1)]
    lines = []
    for cells in table:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
    return "\n".join(lines)


def bench_main(run: Callable[[bool], list[Row]], description: str, quick_help: str,
               argv: Sequence[str] | None = None) -> None:
    """The command line every bench module shares: ``[--quick] [--json PATH]``, then a console table."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(console_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
