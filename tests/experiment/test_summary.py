"""The summary's numbers against values computed by hand (published Wilson intervals, binomial tails by counting),
never against the code under test; and a hostile table summarised without a crash or a terminal escape."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kernel_agent.experiment.results import ExperimentResults
from kernel_agent.experiment.stats import mcnemar_p_value, median_interval, wilson_interval

from .tables import row, table

# 95% Wilson score intervals, as published (e.g. Newcombe 1998, Table I; Brown, Cai & DasGupta 2001)
WILSON_0_OF_10 = (0.0, 0.2775)
WILSON_5_OF_10 = (0.2366, 0.7634)
WILSON_10_OF_10 = (0.7225, 1.0)
# A's extra tokens per (task, repeat) pair over B: 1..10 in a scrambled order
EXTRA = {("t0", 0): 7, ("t0", 1): 2, ("t1", 0): 10, ("t1", 1): 1, ("t2", 0): 5, ("t2", 1): 9, ("t3", 0): 3,
         ("t3", 1): 8, ("t4", 0): 6, ("t4", 1): 4}


@pytest.fixture(scope="module")
def results() -> ExperimentResults:
    """A: right on repeat 0 only (5/10); B: always right (10/10); C: always wrong (0/10), on repeats 1 and 2."""
    rows = []
    for task in ("t0", "t1", "t2", "t3", "t4"):
        for repeat in (0, 1):
            rows.append(row("A", task, repeat, repeat == 0, total_tokens=1000 + EXTRA[task, repeat], seconds=2.0))
            rows.append(row("B", task, repeat, True, total_tokens=1000, seconds=1.0))
        for repeat in (1, 2):
            rows.append(row("C", task, repeat, False, cost=0.01))
    return ExperimentResults(table(rows))


def test_wilson_intervals_match_published_values() -> None:
    assert wilson_interval(0, 10) == (0.0, pytest.approx(WILSON_0_OF_10[1], abs=5e-5))
    assert wilson_interval(5, 10) == pytest.approx(WILSON_5_OF_10, abs=5e-5)
    assert wilson_interval(10, 10) == (pytest.approx(WILSON_10_OF_10[0], abs=5e-5), 1.0)
    # 90%: z = 1.6449, centre 0.5, half-width z/(1+z^2/10) * sqrt(0.025 + z^2/400) = 0.2307 (by hand)
    assert wilson_interval(5, 10, 0.90) == pytest.approx((0.2693, 0.7307), abs=5e-5)
    assert all(math.isnan(bound) for bound in wilson_interval(0, 0))
    for bad in (0, 1, 1.5, -0.1, "0.95"):
        with pytest.raises(ValueError, match="confidence"):
            wilson_interval(1, 2, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_exact_mcnemar_is_the_binomial_tail_counted_by_hand() -> None:
    assert mcnemar_p_value(1, 6) == 2 * (1 + 7) / 2 ** 7  # 0.125
    assert mcnemar_p_value(6, 1) == 0.125
    assert mcnemar_p_value(0, 5) == 2 / 2 ** 5
    assert mcnemar_p_value(3, 3) == 1.0  # the tail doubled passes 1: capped
    assert mcnemar_p_value(0, 0) == 1.0
    assert mcnemar_p_value(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)


def test_the_sign_test_interval_uses_the_order_statistics_counted_by_hand() -> None:
    # n = 10: P(X <= 1) = 11/1024 <= 0.025 < P(X <= 2) = 56/1024, so k = 2: [x(2), x(9)], coverage 1 - 22/1024
    interval = median_interval([7, 2, 10, 1, 5, 9, 3, 8, 6, 4])
    assert (interval.median, interval.low, interval.high, interval.count) == (5.5, 2, 9, 10)
    assert interval.confidence == 1 - 22 / 1024
    few = median_interval([3, 1, 2, float("nan"), 5, 4])  # five values: no 95% interval exists
    assert few.median == 3 and few.count == 5 and math.isnan(few.low) and math.isnan(few.high)
    assert median_interval([]).count == 0


def test_summary_rates_intervals_tasks_distributions_and_stop_reasons(results: ExperimentResults) -> None:
    summary = results.summary()
    rates = summary.configurations
    assert list(rates.index) == ["A", "B", "C"]
    assert rates.loc["A", ["runs", "successes", "success_rate"]].tolist() == [10, 5, 0.5]
    assert (rates.loc["A", "ci_low"], rates.loc["A", "ci_high"]) == pytest.approx(WILSON_5_OF_10, abs=5e-5)
    assert (rates.loc["B", "ci_low"], rates.loc["B", "ci_high"]) == pytest.approx(WILSON_10_OF_10, abs=5e-5)
    assert (rates.loc["C", "ci_low"], rates.loc["C", "ci_high"]) == pytest.approx(WILSON_0_OF_10, abs=5e-5)
    assert rates.loc["A", "median_tokens"] == 1005.5 and rates.loc["C", "median_cost"] == 0.01
    assert math.isnan(rates.loc["A", "median_cost"])  # no pricing: no cost
    assert summary.tasks.loc["t0"].tolist() == [0.5, 1.0, 0.0]
    tokens = summary.distributions.loc[("A", "tokens")]
    # 1001..1010: median 1005.5, mean 1005.5; p10 and p90 by linear interpolation at ranks 0.9 and 8.1
    expected = [10, 1005.5, 1001.9, 1009.1, 1005.5]
    assert tokens[["count", "median", "p10", "p90", "mean"]].tolist() == pytest.approx(expected)
    assert summary.stop_reasons.loc["A"].to_dict() == {"final_answer": 5, "max_steps": 5}
    assert summary.stop_reasons.loc["C"].to_dict() == {"final_answer": 0, "max_steps": 10}
    text = str(summary)
    assert "5/10 = 50%" in text and "24% - 76%" in text and "0% - 28%" in text
    assert "<table" in summary._repr_html_()


def test_paired_comparison(results: ExperimentResults) -> None:
    comparison = results.compare("A", "B")
    counts = (comparison.pairs, comparison.both, comparison.only_a, comparison.only_b, comparison.neither)
    assert counts == (10, 5, 0, 5, 0)
    assert comparison.p_value == 2 / 2 ** 5 and comparison.unpaired == 0
    assert (comparison.tokens.median, comparison.tokens.low, comparison.tokens.high) == (5.5, 2, 9)
    assert (comparison.seconds.median, comparison.seconds.low, comparison.seconds.high) == (1.0, 1.0, 1.0)
    assert "exact McNemar p = 0.0625" in str(comparison) and "+5.5" in str(comparison)
    # B and C share only repeat 1: five pairs, B's repeat 0 and C's repeat 2 left out
    other = results.compare("B", "C")
    assert (other.pairs, other.only_a, other.unpaired) == (5, 5, 10)
    assert "too few pairs" in str(other)
    with pytest.raises(ValueError, match=r"no configuration 'D'.*'A', 'B', 'C'"):
        results.compare("A", "D")
    with pytest.raises(ValueError, match="two different"):
        results.compare("A", "A")


def test_a_hostile_table_is_summarised_not_trusted() -> None:
    rows = [row("x\x1b]52;c;aGk=\x07evil\x1b[2J", "t", 0, True), row("y", "t", 0, False)]
    rows[1]["success"] = "yes"  # not True: not a success
    rows[0]["total_tokens"] = "a lot"  # not a number: NaN
    odd = table([*rows, dict(row("y", "t", 1, False), success=1), dict(row("y", "t", 2, False), success="True")])
    summary = ExperimentResults(odd).summary()
    assert summary.configurations["successes"].tolist() == [1, 1]  # only the real True and CSV's "True"
    assert math.isnan(summary.configurations["median_tokens"].iloc[0])
    assert "\x1b" not in str(summary) and "\x07" not in str(summary)
    with pytest.raises(ValueError, match="no column success"):
        ExperimentResults(odd.drop(columns=["success"])).summary()
    with pytest.raises(TypeError):
        ExperimentResults([{"configuration": "x"}]).summary()


def test_the_table_is_written_as_csv_and_parquet(results: ExperimentResults, tmp_path: Path) -> None:
    import pandas as pd

    csv = results.to_csv(tmp_path / "results.csv")
    assert pd.read_csv(csv).equals(pd.read_csv(csv)) and len(pd.read_csv(csv)) == 30
    back = pd.read_parquet(results.to_parquet(tmp_path / "results.parquet"))
    pd.testing.assert_frame_equal(back, results.table)
    assert ExperimentResults(pd.read_csv(csv)).summary().configurations["successes"].tolist() == [5, 10, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.parquet"]  # no temporary left
