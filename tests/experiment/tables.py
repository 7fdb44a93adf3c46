"""Results tables made by hand (the COLUMNS the runner fills), for testing what reads them."""

from __future__ import annotations

from typing import Any

from kernel_agent.experiment.columns import COLUMNS


def row(configuration: str, task: str, repeat: int, success: bool, **values: Any) -> dict[str, Any]:
    """One run's row: the given values, plausible defaults for the rest."""
    defaults: dict[str, Any] = {
        "answer": "42" if success else "41", "checker_error": "", "error": "",
        "stop_reason": "final_answer" if success else "max_steps", "steps": 2, "cells": 2, "tool_calls": 0,
        "input_tokens": 900, "output_tokens": 100, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "total_tokens": 1000, "cost": float("nan"), "seconds": 1.0, "model_seconds": 0.0, "model_calls": 2,
        "cached_replies": 0, "notebook": f"notebooks/{configuration}/{task}/repeat-{repeat}.ipynb",
        "started_at": "2026-11-26T04:00:00+00:00",
    }
    made = {"configuration": configuration, "task": task, "repeat": repeat, "success": success,
            **defaults, **values}
    assert set(made) == set(COLUMNS), set(made) ^ set(COLUMNS)
    return {column: made[column] for column in COLUMNS}


def table(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=list(COLUMNS))
