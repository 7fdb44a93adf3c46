"""After a cell's reply, output still on its way is waited for while it keeps arriving, within a ceiling.

The host read a 5,000-line burst slower than the kernel wrote it on a loaded machine (load 8-12): more than
2 s passed between the reply and the idle status, and a fixed 2 s wait cut the output with "output lost"
(tests/session/test_output_fidelity.py failed so). The waiting is driven here by a stand-in for
``asyncio.wait_for`` that says "the window passed" and delivers messages as it goes: no clock involved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from kernel_agent.runtime.outputs import OutputCollector
from kernel_agent.session import cells


def _windows(monkeypatch: pytest.MonkeyPatch, idle: asyncio.Event, collector: OutputCollector,
             messages_per_window: list[int]) -> list[float]:
    """Each wait for the idle status is one silent-or-busy window; after the listed ones, the idle status comes."""
    timeouts: list[float] = []

    async def window(awaitable: Awaitable[Any], timeout: float) -> Any:
        timeouts.append(timeout)
        if len(timeouts) <= len(messages_per_window):
            for _ in range(messages_per_window[len(timeouts) - 1]):
                collector.wants_content(10)  # a message addressed to the cell arrived in this window
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise TimeoutError
        idle.set()
        return await awaitable

    monkeypatch.setattr(cells.asyncio, "wait_for", window)
    return timeouts


def _lost(collector: OutputCollector) -> str:
    return "".join(o.get("text", "") for o in collector.finish())


async def test_output_that_keeps_coming_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    idle, collector = asyncio.Event(), OutputCollector()
    timeouts = _windows(monkeypatch, idle, collector, [300, 1, 50, 7])
    await cells._settle_iopub(idle, collector)
    assert len(timeouts) == 5 and collector.output_lost == 0 and "lost" not in _lost(collector)


async def test_a_silent_window_ends_the_wait_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    idle, collector = asyncio.Event(), OutputCollector()
    timeouts = _windows(monkeypatch, idle, collector, [20, 0, 5])
    await cells._settle_iopub(idle, collector)
    assert len(timeouts) == 2 and collector.output_lost == 1
    assert f"none came for {cells.IOPUB_SETTLE_SECONDS:.0f} s" in _lost(collector)


async def test_a_kernel_that_never_stops_sending_is_cut_at_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel forging messages addressed to the cell, and never its idle status, cannot hold the cell open.
    monkeypatch.setattr(cells, "IOPUB_SETTLE_MAX_SECONDS", 0.0)
    idle, collector = asyncio.Event(), OutputCollector()
    timeouts = _windows(monkeypatch, idle, collector, [1] * 1000)
    await cells._settle_iopub(idle, collector)
    assert len(timeouts) == 1 and timeouts[0] == 0.0 and collector.output_lost == 1
    assert "still coming" in _lost(collector)
