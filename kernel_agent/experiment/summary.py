"""An experiment's table summarised: success rates with their uncertainty, distributions, paired comparisons.

:func:`summarise` gives per-configuration success rates with Wilson intervals,
per task x configuration rates, token / cost / time distributions and
stop-reason counts; :func:`compare` sets two configurations side by side on
the (task, repeat) pairs both ran: who got which right, the exact McNemar
p-value, and the paired differences in tokens and time with a distribution-free
interval. Both read only :data:`~kernel_agent.experiment.results.COLUMNS`, and
treat the table as untrusted (a success is ``True`` and nothing else; numbers
that are not numbers are NaN).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from kernel_agent.experiment.columns import COLUMNS
from kernel_agent.experiment.stats import MedianInterval, mcnemar_p_value, median_interval, wilson_interval
from kernel_agent.terminal_text import terminal_safe

#: the measures whose distributions the summary gives: column -> the name it goes by
MEASURES: dict[str, str] = {"total_tokens": "tokens", "cost": "cost", "seconds": "seconds", "steps": "steps"}
_NUMERIC = ("repeat", "steps", "cells", "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "total_tokens", "cost", "seconds", "model_seconds", "model_calls", "cached_replies")


def normalised(table: Any) -> Any:
    """A copy of ``table`` fit to compute on: every column of COLUMNS there (else ValueError naming the missing
    ones), ``success`` True only for a real True, numbers numeric (anything else NaN), names as text."""
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"an experiment's table is a pandas DataFrame, got {type(table).__name__}")
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"the table is not an experiment's results table: it has no column {', '.join(missing)}")
    table = table.loc[:, list(COLUMNS)].copy()
    table["success"] = [_is_success(value) for value in table["success"]]
    for column in _NUMERIC:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    for column in ("configuration", "task", "stop_reason"):
        table[column] = table[column].astype(str)
    return table


def _is_success(value: object) -> bool:
    """A real True (Python's or NumPy's), or the text a CSV round trip makes of one; anything else is not."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return isinstance(value, str) and value.strip().lower() == "true"


def _configurations(table: Any) -> list[str]:
    """The configurations in the order they first appear (the spec's order, as the runner writes rows)."""
    return list(dict.fromkeys(table["configuration"]))


@dataclass(frozen=True, repr=False)
class Summary:
    """What an experiment's table says, per configuration (see :func:`summarise`)."""

    confidence: float
    #: per configuration: runs, successes, success_rate, ci_low, ci_high, and the medians of tokens, cost, seconds
    configurations: Any
    #: success rate per task (rows) and configuration (columns); NaN where a pair has no run
    tasks: Any
    #: per (configuration, measure): count, median, p10, p90, mean, for tokens, cost, seconds and steps
    distributions: Any
    #: runs per configuration (rows) and stop reason (columns)
    stop_reasons: Any

    def __str__(self) -> str:
        level = f"{self.confidence:.0%}"
        shown = self.configurations.apply(lambda row: {
            "runs": f"{row['runs']:.0f}",
            "success": f"{row['successes']:.0f}/{row['runs']:.0f} = {_percent(row['success_rate'])}",
            f"{level} CI": f"{_percent(row['ci_low'])} - {_percent(row['ci_high'])}",
            "tokens (median)": _number(row["median_tokens"]),
            "cost (median)": "-" if math.isnan(row["median_cost"]) else f"${row['median_cost']:.4f}",
            "seconds (median)": _number(row["median_seconds"], 2),
        }, axis=1, result_type="expand")
        shown.index.name = None
        tasks = self.tasks.map(_percent)
        tasks.index.name = None
        parts = [shown.to_string() if len(shown) else "(no runs)"]
        if len(self.tasks):
            parts.append("success rate per task:\n" + tasks.to_string())
        if len(self.stop_reasons):
            parts.append("stop reasons:\n" + self.stop_reasons.to_string())
        return terminal_safe("\n\n".join(parts))

    def __repr__(self) -> str:  # what a console shows: the text, not the fields
        return str(self)

    def _repr_html_(self) -> str:
        return str(f"<p><b>Success rates</b> ({self.confidence:.0%} Wilson intervals)</p>"
                + self.configurations.to_html(float_format=lambda v: f"{v:.3g}")
                + "<p><b>Success rate per task</b></p>" + self.tasks.to_html(float_format=_percent)
                + "<p><b>Stop reasons</b></p>" + self.stop_reasons.to_html())


def summarise(table: Any, confidence: float = 0.95) -> Summary:
    """Summarise an experiment's table (see :class:`Summary`); Wilson intervals at ``confidence``."""
    import pandas as pd

    table = normalised(table)
    order = _configurations(table)
    rows = []
    for name in order:
        runs = table[table["configuration"] == name]
        successes, count = int(runs["success"].sum()), len(runs)
        low, high = wilson_interval(successes, count, confidence)
        rows.append({"configuration": name, "runs": count, "successes": successes,
                     "success_rate": successes / count, "ci_low": low, "ci_high": high,
                     "median_tokens": _median(runs["total_tokens"]), "median_cost": _median(runs["cost"]),
                     "median_seconds": _median(runs["seconds"])})
    configurations = pd.DataFrame(rows, columns=["configuration", "runs", "successes", "success_rate", "ci_low",
                                                 "ci_high", "median_tokens", "median_cost", "median_seconds"])
    configurations = configurations.set_index("configuration")
    tasks = table.pivot_table(index="task", columns="configuration", values="success", aggfunc="mean", sort=False)
    tasks = tasks.astype(float).reindex(columns=[name for name in order if name in tasks.columns])
    tasks.columns.name = None
    distribution_rows = []
    for name in order:
        runs = table[table["configuration"] == name]
        for column, measure in MEASURES.items():
            values = runs[column].dropna()
            known = len(values) > 0  # pandas warns on the median of nothing
            distribution_rows.append({"configuration": name, "measure": measure, "count": len(values),
                                      "median": values.median() if known else math.nan,
                                      "p10": values.quantile(0.1) if known else math.nan,
                                      "p90": values.quantile(0.9) if known else math.nan,
                                      "mean": values.mean() if known else math.nan})
    distributions = pd.DataFrame(distribution_rows, columns=["configuration", "measure", "count", "median", "p10",
                                                             "p90", "mean"]).set_index(["configuration", "measure"])
    stop_reasons = pd.crosstab(table["configuration"], table["stop_reason"]).reindex(order).fillna(0).astype(int)
    stop_reasons.index.name, stop_reasons.columns.name = None, None
    return Summary(confidence, configurations, tasks, distributions, stop_reasons)


@dataclass(frozen=True, repr=False)
class Comparison:
    """Configuration ``a`` against ``b`` on the (task, repeat) pairs both ran (see :func:`compare`)."""

    a: str
    b: str
    confidence: float
    pairs: int
    both: int      # both right
    only_a: int    # a right, b wrong
    only_b: int    # b right, a wrong
    neither: int
    p_value: float  # exact McNemar: how surprising the split of only_a / only_b is if a and b were alike
    tokens: MedianInterval   # a's total tokens minus b's, per pair
    seconds: MedianInterval  # a's wall time minus b's, per pair
    unpaired: int  # runs of a or b with no partner run of the other (left out)

    def __str__(self) -> str:
        level = f"{self.confidence:.0%}"
        lines = [
            f"{self.a} vs {self.b}: {self.pairs} paired runs (same task and repeat)"
            + (f", {self.unpaired} unpaired left out" if self.unpaired else ""),
            f"  both right {self.both}, only {self.a} {self.only_a}, only {self.b} {self.only_b}, "
            f"neither {self.neither}",
            f"  exact McNemar p = {self.p_value:.4g}",
            f"  tokens ({self.a} - {self.b}): median {_difference(self.tokens, level)}",
            f"  seconds ({self.a} - {self.b}): median {_difference(self.seconds, level, 2)}",
        ]
        return terminal_safe("\n".join(lines))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"


def compare(table: Any, a: str, b: str, confidence: float = 0.95) -> Comparison:
    """Compare configurations ``a`` and ``b`` run by run, on the (task, repeat) pairs both have.

    A configuration the table does not have is a ValueError naming the ones it has.
    """
    table = normalised(table)
    known = _configurations(table)
    for name in (a, b):
        if name not in known:
            raise ValueError(f"no configuration {name!r} in the table; it has {', '.join(map(repr, known)) or 'none'}")
    if a == b:
        raise ValueError(f"compare two different configurations, got {a!r} twice")
    keys = ["task", "repeat"]
    left = table[table["configuration"] == a].drop_duplicates(keys, keep="last")
    right = table[table["configuration"] == b].drop_duplicates(keys, keep="last")
    paired = left.merge(right, on=keys, suffixes=("_a", "_b"))
    success_a, success_b = paired["success_a"].astype(bool), paired["success_b"].astype(bool)
    both = int((success_a & success_b).sum())
    only_a = int((success_a & ~success_b).sum())
    only_b = int((~success_a & success_b).sum())
    neither = len(paired) - both - only_a - only_b
    return Comparison(
        a, b, confidence, len(paired), both, only_a, only_b, neither, mcnemar_p_value(only_a, only_b),
        median_interval((paired["total_tokens_a"] - paired["total_tokens_b"]).tolist(), confidence),
        median_interval((paired["seconds_a"] - paired["seconds_b"]).tolist(), confidence),
        len(left) + len(right) - 2 * len(paired))


def _median(values: Any) -> float:
    """The median of the numbers among ``values`` (NaN when there is none, without numpy's warning)."""
    known = values.dropna()
    return float(known.median()) if len(known) else math.nan


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _difference(interval: MedianInterval, level: str, digits: int | None = None) -> str:
    """A paired difference's median and interval, signed; ``digits`` None: whole numbers unless a half."""
    def signed(value: float) -> str:
        places = (0 if float(value).is_integer() else 1) if digits is None else digits
        return f"{value:+,.{places}f}"

    if interval.count == 0:
        return "- (no pair)"
    if math.isnan(interval.low):
        return f"{signed(interval.median)} (too few pairs for a {level} interval)"
    return (f"{signed(interval.median)}, {interval.confidence:.1%} interval {signed(interval.low)} to "
            f"{signed(interval.high)}")
