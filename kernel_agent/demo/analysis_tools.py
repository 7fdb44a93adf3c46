"""Example tools for the analysis demo: a year of daily sensor readings as a pandas DataFrame.

The data is generated from a fixed seed, so every run (and every replay)
sees the same values. Station "harbour" has a fault that the demo's model
finds in its plot: from 2026-08-01 its readings drift upward by about
0.05 °C a day, which no summary statistic of the whole year makes obvious.
pandas and numpy are imported when a tool is called, not when this module
is: they come with the ``analysis`` extra.
"""

from __future__ import annotations

from typing import Any

from kernel_agent.tools.tool import tool

STATIONS = ("airport", "harbour", "hills", "park")
_BASE = {"airport": 11.5, "harbour": 10.8, "hills": 8.9, "park": 11.9}
_DRIFT_FROM = "2026-08-01"


@tool(namespace="sensors", read_only=True)
def readings(station: str) -> Any:
    """Daily mean temperatures (°C) of one station for 2026 as a pandas DataFrame indexed by date, with columns
    temp_c (float; NaN where the sensor was offline) and samples (nullable int: readings that day)."""
    import numpy as np
    import pandas as pd

    if station not in STATIONS:
        raise ValueError(f"unknown station {station!r}; stations: {', '.join(STATIONS)}")
    rng = np.random.default_rng(STATIONS.index(station) + 2026)
    days = pd.date_range("2026-01-01", "2026-12-31", freq="D", name="date")
    season = -7.5 * np.cos(2 * np.pi * (days.dayofyear.to_numpy() - 15) / 365)
    temp = _BASE[station] + season + rng.normal(0, 1.2, len(days))
    if station == "harbour":
        drifting = days >= pd.Timestamp(_DRIFT_FROM)
        temp[drifting] += 0.05 * np.arange(int(drifting.sum()))
    offline = rng.random(len(days)) < 0.02
    temp[offline] = np.nan
    samples = pd.array(np.where(offline, 0, 24 - rng.integers(0, 3, len(days))), dtype="Int64")
    samples[offline] = pd.NA
    return pd.DataFrame({"temp_c": temp.round(2), "samples": samples}, index=days)


@tool(namespace="sensors", read_only=True)
def stations() -> list[dict[str, Any]]:
    """The stations: name and the year their sensor was installed."""
    return [{"name": name, "installed": 2019 + index} for index, name in enumerate(STATIONS)]


ANALYSIS_TOOLS = [readings, stations]
