"""The plots show the summary's numbers: bar heights, error bars at the Wilson bounds, the heatmap's cells."""

from __future__ import annotations

import io

import numpy as np
import pytest

from kernel_agent.experiment.results import ExperimentResults

from .tables import row, table

WILSON_2_OF_4 = (0.1500, 0.8500)  # 95%, by the formula: centre 0.5, half z/(1+z^2/4) * sqrt(1/16 + z^2/64)


@pytest.fixture(scope="module")
def results() -> ExperimentResults:
    rows = [row("fast", task, repeat, repeat < 1, seconds=1.0 + repeat) for task in ("a", "b") for repeat in range(2)]
    rows += [row("careful", "a", repeat, True, total_tokens=2000 + repeat) for repeat in range(4)]
    rows += [row("odd\x1b[31m name", "b", 0, False)]
    return ExperimentResults(table(rows))


def png(figure: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")  # type: ignore[attr-defined]
    return buffer.getvalue()


def test_success_bars_carry_the_wilson_intervals(results: ExperimentResults) -> None:
    figure = results.plot_success()
    axes = figure.axes[0]
    assert [bar.get_height() for bar in axes.patches] == [0.5, 1.0, 0.0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["fast", "careful", "odd name"]
    (bars,) = [collection for collection in axes.collections if collection.get_segments()]
    low, high = bars.get_segments()[0][:, 1]
    assert (low, high) == pytest.approx(WILSON_2_OF_4, abs=5e-5)
    assert png(figure).startswith(b"\x89PNG")
    assert figure._repr_png_().startswith(b"\x89PNG")  # Jupyter shows it without pyplot's inline backend


def test_the_heatmap_holds_each_task_and_configuration_rate(results: ExperimentResults) -> None:
    figure = results.plot_tasks()
    image = figure.axes[0].get_images()[0].get_array()
    expected = np.array([[0.5, 1.0, np.nan], [0.5, np.nan, 0.0]])
    assert np.allclose(np.ma.filled(image.astype(float), np.nan), expected, equal_nan=True)
    assert png(figure).startswith(b"\x89PNG")


def test_distributions_plot_every_run(results: ExperimentResults) -> None:
    figure = results.plot_distribution("seconds")
    points = [collection for collection in figure.axes[0].collections if len(collection.get_offsets())]
    assert sorted(len(c.get_offsets()) for c in points) == [1, 4, 4]
    assert figure.axes[0].get_ylabel() == "seconds"
    assert png(figure).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="no numeric column 'answer'"):
        results.plot_distribution("answer")


def test_an_empty_table_is_a_clear_error_not_a_broken_figure() -> None:
    empty = ExperimentResults(table([]))
    assert "(no runs)" in str(empty.summary())
    for plot in (empty.plot_success, empty.plot_tasks, empty.plot_distribution):
        with pytest.raises(ValueError, match="no runs to plot"):
            plot()


def test_plots_are_written_as_pngs_and_never_through_a_planted_link(results: ExperimentResults,
                                                                     tmp_path: object) -> None:
    from pathlib import Path

    from kernel_agent.errors import UnsafePathError
    from kernel_agent.experiment.plots import PLOT_FILES, save_plots

    root = Path(str(tmp_path))
    written = save_plots(results.table, root / "plots")
    assert [path.name for path in written] == list(PLOT_FILES)
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in written)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    (root / "crafted").mkdir()
    (root / "crafted" / "plots").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError):
        save_plots(results.table, root / "crafted" / "plots")
    assert list(elsewhere.iterdir()) == []
