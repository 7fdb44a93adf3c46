"""The results of an experiment: one row per run, in a pandas DataFrame.

The columns are a contract between the runner (which fills them) and the
summary, plots and command line (which read them); :data:`COLUMNS` names them
in order with what each holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel_agent.experiment.columns import COLUMNS  # re-exported: results.COLUMNS is the contract

if TYPE_CHECKING:
    from kernel_agent.experiment.summary import Comparison, Summary

__all__ = ["COLUMNS", "ExperimentResults"]


@dataclass(frozen=True)
class ExperimentResults:
    """An experiment's table (:data:`COLUMNS`), and the directory it was run in (None: not kept on disk)."""

    table: Any  # pandas.DataFrame (pandas is imported lazily: the analysis extra)
    directory: Path | None = None

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ExperimentResults:
        """The table of the runs journaled in an experiment's ``directory`` (read as hostile input: bounded, strict).

        Raises :class:`~kernel_agent.errors.ExperimentError` for a directory
        that is not an experiment's, or a journal that cannot be used.
        """
        from kernel_agent.experiment.table import load_table

        path = Path(directory).resolve()
        return cls(load_table(path), path)

    # The readers (summary, plots, files) live in their own modules; these delegate to them.

    def summary(self, confidence: float = 0.95) -> Summary:
        """Success rates with Wilson intervals, per-task rates, distributions, stop reasons (experiment/summary.py)."""
        from kernel_agent.experiment.summary import summarise

        return summarise(self.table, confidence)

    def compare(self, a: str, b: str, confidence: float = 0.95) -> Comparison:
        """Configuration ``a`` against ``b`` on the same (task, repeat) pairs: McNemar, paired differences."""
        from kernel_agent.experiment.summary import compare

        return compare(self.table, a, b, confidence)

    def plot_success(self, confidence: float = 0.95) -> Any:
        """A matplotlib Figure: success rate per configuration with its interval (experiment/plots.py)."""
        from kernel_agent.experiment.plots import plot_success

        return plot_success(self.table, confidence)

    def plot_tasks(self) -> Any:
        """A matplotlib Figure: the task x configuration heatmap of success rates."""
        from kernel_agent.experiment.plots import plot_tasks

        return plot_tasks(self.table)

    def plot_distribution(self, column: str = "total_tokens") -> Any:
        """A matplotlib Figure: ``column`` (total_tokens, cost, seconds, ...) per configuration, each run a dot."""
        from kernel_agent.experiment.plots import plot_distribution

        return plot_distribution(self.table, column)

    def to_csv(self, path: str | PathLike[str]) -> Path:
        """Write the table as CSV at ``path`` (one row per run, :data:`COLUMNS` in order); returns the path."""
        from kernel_agent.experiment.files import write_table

        return write_table(self.table, Path(path), "csv")

    def to_parquet(self, path: str | PathLike[str]) -> Path:
        """Write the table as Parquet at ``path`` (needs pyarrow); returns the path."""
        from kernel_agent.experiment.files import write_table

        return write_table(self.table, Path(path), "parquet")
