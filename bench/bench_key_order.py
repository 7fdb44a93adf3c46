"""What keeping the tool schemas' key order costs a recording (kernel_agent.tools.key_order).

On the 2,500-operation OpenAPI document of bench_openapi (the largest
catalogue the issue names), each next to its baseline in the same run:

* the tool definitions' JSON in the session header, with ``key_order`` and
  without it (what a recording held before);
* rebuilding the tools from the recorded definitions (replay, resume), with
  the order put back and without, and putting the order back alone.

Nothing is asserted. Run: ``python bench/bench_key_order.py [--quick]``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import Row, bench_main, make_row, median
from bench_openapi import OPERATIONS, generated_document

from kernel_agent import OpenApiSource
from kernel_agent.session.toolbox import SessionTools
from kernel_agent.tools.key_order import with_recorded_order
from kernel_agent.tools.recorded import RecordedTools, recorded_tools
from kernel_agent.tools.registry import ToolRegistry

BENCHMARK = "key_order"


def stored_definitions() -> list[dict[str, Any]]:
    """The catalogue's definitions as a notebook gives them back (keys sorted)."""
    source = OpenApiSource(generated_document(OPERATIONS))
    tools = SessionTools([source])
    tools.registry = ToolRegistry([source])
    stored: list[dict[str, Any]] = json.loads(json.dumps(tools.definitions(), sort_keys=True))
    return stored


def rebuild_times(with_order: list[dict[str, Any]], without: list[dict[str, Any]], rounds: int) -> tuple[float, float]:
    """Median rebuild time of each, measured alternately after a warm-up (the machine is shared)."""
    recorded_tools(without[:50], RecordedTools())
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for definitions, samples in ((with_order, times[0]), (without, times[1])):
            start = time.perf_counter()
            recorded_tools(definitions, RecordedTools())
            samples.append(time.perf_counter() - start)
    return median(times[0]), median(times[1])


def order_time(definitions: list[dict[str, Any]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for definition in definitions:
            with_recorded_order(definition)
        times.append(time.perf_counter() - start)
    return median(times)


def run(quick: bool) -> list[Row]:
    rounds = 1 if quick else 3
    with_order = stored_definitions()
    without = [{k: v for k, v in d.items() if k != "key_order"} for d in with_order]
    size = len(json.dumps(with_order, sort_keys=True, separators=(",", ":")))
    size_before = len(json.dumps(without, sort_keys=True, separators=(",", ":")))
    rebuilt, rebuilt_before = rebuild_times(with_order, without, rounds)
    ordering = order_time(with_order, rounds)
    ms = 1000.0
    return [
        make_row(BENCHMARK, f"tool definitions of a {OPERATIONS}-operation document in the header", size / 1000,
                 "kB", baseline=size_before / 1000, baseline_name="the same definitions without key_order"),
        make_row(BENCHMARK, f"rebuilding {OPERATIONS} recorded tools (replay, resume)", rebuilt * ms, "ms",
                 baseline=rebuilt_before * ms, baseline_name="the same without putting the key order back",
                 note="recorded schemas are not checked with jsonschema (bench_catalogue_rebuild)"),
        make_row(BENCHMARK, f"putting the key order back into {OPERATIONS} definitions", ordering * ms, "ms",
                 baseline=rebuilt_before * ms, baseline_name="rebuilding the tools without it"),
    ]


if __name__ == "__main__":
    bench_main(run, __doc__ or "", "fewer rounds")
