"""Plots of an experiment's table, where a person would rather look than read.

Each function returns a matplotlib :class:`~matplotlib.figure.Figure` made
without pyplot (no global figure state, no GUI backend: safe in a server, a
thread or a script; it renders with Agg when saved, and Jupyter shows it as
the value of a cell).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kernel_agent.experiment.summary import MEASURES, normalised, summarise
from kernel_agent.terminal_text import terminal_safe


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    class ExperimentFigure(Figure):
        """A Figure that shows itself in Jupyter as a PNG, with or without pyplot's inline backend."""

        def _repr_png_(self) -> bytes:
            import io

            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return ExperimentFigure(figsize=(width, height), layout="constrained")


def _require_runs(count: int) -> None:
    if count == 0:
        raise ValueError("the table has no runs to plot (yet)")


def _labels(names: Any) -> list[str]:
    """Names for axes: terminal-safe (no control characters) and bounded."""
    return [terminal_safe(str(name))[:40] for name in names]


def plot_success(table: Any, confidence: float = 0.95) -> Any:
    """Success rate per configuration, with its Wilson interval as error bars."""
    summary = summarise(table, confidence).configurations
    _require_runs(len(summary))
    figure = _figure(max(4.0, 1.2 * len(summary) + 2), 3.5)
    axes = figure.add_subplot()
    positions = range(len(summary))
    rates = summary["success_rate"].to_numpy(dtype=float)
    below = rates - summary["ci_low"].to_numpy(dtype=float)
    above = summary["ci_high"].to_numpy(dtype=float) - rates
    axes.bar(positions, rates, color="tab:blue", alpha=0.7)
    axes.errorbar(positions, rates, yerr=[below, above], fmt="none", ecolor="black", capsize=5)
    for position, (runs, successes) in enumerate(zip(summary["runs"], summary["successes"], strict=True)):
        axes.annotate(f"{successes:.0f}/{runs:.0f}", (position, 0.02), ha="center", va="bottom", fontsize=9)
    axes.set_xticks(list(positions), _labels(summary.index))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("success rate")
    axes.set_title(f"Success rate per configuration ({confidence:.0%} Wilson intervals)")
    return figure


def plot_tasks(table: Any) -> Any:
    """A task x configuration heatmap of success rates (grey where a pair has no run)."""
    tasks = summarise(table).tasks
    _require_runs(len(tasks))
    figure = _figure(max(4.0, 1.3 * len(tasks.columns) + 2.5), max(2.5, 0.45 * len(tasks) + 1.5))
    axes = figure.add_subplot()
    values = tasks.to_numpy(dtype=float)
    axes.set_facecolor("lightgrey")
    image = axes.imshow(values, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for row in range(values.shape[0]):
        for column in range(values.shape[1]):
            if values[row, column] == values[row, column]:  # not NaN
                axes.text(column, row, f"{values[row, column]:.0%}", ha="center", va="center", fontsize=9)
    axes.set_xticks(range(len(tasks.columns)), _labels(tasks.columns))
    axes.set_yticks(range(len(tasks.index)), _labels(tasks.index))
    figure.colorbar(image, ax=axes, label="success rate")
    axes.set_title("Success rate per task and configuration")
    return figure


def plot_distribution(table: Any, column: str = "total_tokens") -> Any:
    """The distribution of ``column`` (tokens, cost, seconds, steps, ...) per configuration, as box plots
    with each run as a dot (green: a success, red: a failure)."""
    table = normalised(table)
    if column not in table.columns or table[column].dtype.kind != "f":
        numeric = [name for name in table.columns if table[name].dtype.kind == "f"]
        raise ValueError(f"no numeric column {column!r} to plot; numeric columns: {', '.join(numeric)}")
    order = list(dict.fromkeys(table["configuration"]))
    _require_runs(len(order))
    figure = _figure(max(4.0, 1.2 * len(order) + 2), 3.5)
    axes = figure.add_subplot()
    groups = [table[table["configuration"] == name] for name in order]
    axes.boxplot([group[column].dropna().to_numpy() for group in groups], positions=range(len(order)),
                 widths=0.5, showfliers=False)
    for position, group in enumerate(groups):
        spread = [position + 0.15 * ((i % 5) - 2) / 2 for i in range(len(group))]  # deterministic jitter
        colours = ["tab:green" if success else "tab:red" for success in group["success"]]
        axes.scatter(spread, group[column], c=colours, s=14, alpha=0.8, zorder=3)
    axes.set_xticks(range(len(order)), _labels(order))
    axes.set_ylabel(MEASURES.get(column, column))
    axes.set_title(f"{MEASURES.get(column, column)} per run (green: success, red: failure)")
    return figure


#: The figures `save_plots` writes: file name -> what draws it (from the table and the confidence level).
PLOT_FILES: dict[str, Any] = {
    "success.png": lambda table, confidence: plot_success(table, confidence),
    "tasks.png": lambda table, confidence: plot_tasks(table),
    "tokens.png": lambda table, confidence: plot_distribution(table, "total_tokens"),
    "seconds.png": lambda table, confidence: plot_distribution(table, "seconds"),
}


def save_plots(table: Any, directory: Path, confidence: float = 0.95) -> list[Path]:
    """Every figure of :data:`PLOT_FILES` as a PNG in ``directory`` (made 0700 when missing), each replaced
    atomically through descriptors: a ``plots`` that is a link (a crafted experiment directory) is refused,
    never written through; the paths written."""
    import io
    import os

    from kernel_agent import safe_fs

    parent = safe_fs.open_dir(directory.parent)
    try:
        folder = safe_fs.open_subdir(parent, directory.name, create=True, mode=0o700)
    finally:
        os.close(parent)
    written = []
    try:
        for name, draw in PLOT_FILES.items():
            buffer = io.BytesIO()
            draw(table, confidence).savefig(buffer, format="png", dpi=110)
            safe_fs.replace_file(folder, name, buffer.getvalue(), mode=0o644)
            written.append(directory / name)
    finally:
        os.close(folder)
    return written
