"""The results table from an experiment's journal, and the files it is written to at the end.

Reading goes through :func:`~kernel_agent.experiment.journal.read_journal`
(hostile input: bounded, strict, typed), ordered as the directory's
``experiment.json`` lists the configurations and tasks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from kernel_agent.errors import ExperimentError
from kernel_agent.experiment.files import write_table
from kernel_agent.experiment.journal import ExperimentDirectory, RunKey, RunRow, read_journal


def table_from_rows(rows: dict[RunKey, RunRow], spec: dict[str, Any] | None = None) -> Any:
    """A DataFrame with one row per run, ordered as ``spec`` lists configurations and tasks, then by repeat."""
    import pandas as pd

    configurations, tasks = _ranks(spec, "configurations"), _ranks(spec, "tasks")
    last = len(rows) + 1

    def place(key: RunKey) -> tuple[int, int, int]:
        return (configurations.get(key[0], last), tasks.get(key[1], last), key[2])

    keys = sorted(rows, key=place)
    table = pd.DataFrame([rows[key].table_row() for key in keys], columns=list(RunRow.model_fields))
    return table.astype({"repeat": "int64", "success": "bool", "cost": "float64", "seconds": "float64",
                         "model_seconds": "float64", **{column: "int64" for column in _COUNTS}})


_COUNTS = ("steps", "cells", "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens",
           "cache_write_tokens", "total_tokens", "model_calls", "cached_replies")


def _ranks(spec: dict[str, Any] | None, kind: str) -> dict[str, int]:
    """Name -> position in the spec's list of ``kind`` (empty when the spec is not of the expected shape)."""
    items = spec.get(kind) if isinstance(spec, dict) else None
    if not isinstance(items, list):
        return {}
    names = [item.get("name") for item in items if isinstance(item, dict)]
    return {name: index for index, name in enumerate(names) if isinstance(name, str)}


def load_table(directory: Path) -> Any:
    """The table of the runs journaled in ``directory`` (ExperimentError for a missing or unusable one)."""
    place = ExperimentDirectory(directory)
    document = place.read_spec()
    if document is None:
        raise ExperimentError(f"{place.path} is not an experiment's directory (it has no experiment.json)")
    return table_from_rows(read_journal(place.journal), document["spec"])


def write_results(table: Any, directory: Path) -> None:
    """``results.csv``, and ``results.parquet`` when pyarrow is installed (each whole or not at all)."""
    write_table(table, directory / "results.csv", "csv")
    if importlib.util.find_spec("pyarrow") is not None:
        write_table(table, directory / "results.parquet", "parquet")
