"""Tool sources: recognised by shape, started and closed together, nothing half-started left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kernel_agent.tools.registry import ToolRegistry
from kernel_agent.tools.sources import ToolSource, close_sources, is_tool_source, start_sources
from kernel_agent.tools.tool import Tool, tool_from_schema


class FakeSource:
    """A tool source that records what was done to it."""

    def __init__(self, name: str, *, fail_start: bool = False, fail_close: bool = False) -> None:
        self.name = name
        self.fail_start, self.fail_close = fail_start, fail_close
        self.starts = self.closes = 0
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def tools(self) -> list[Tool]:
        if not self._started:
            raise RuntimeError("not started")
        definition = {"name": "ping", "input_schema": {"type": "object", "properties": {}}}
        return [tool_from_schema(definition, lambda: "pong", namespace=self.name)]

    async def start(self) -> FakeSource:
        self.starts += 1
        if self.fail_start:
            raise OSError(f"{self.name} cannot start")
        self._started = True
        return self

    async def close(self) -> None:
        self.closes += 1
        self._started = False
        if self.fail_close:
            raise OSError(f"{self.name} cannot close")


def test_is_tool_source_judges_the_class_without_reading_tools() -> None:
    source = FakeSource("a")
    assert is_tool_source(source)
    assert not is_tool_source(FakeSource)  # the class itself is not a source
    assert not is_tool_source(lambda: None)
    assert not is_tool_source(ToolRegistry([]))

    class Listed:  # a `.tools` list on the instance: added as it is, never started
        def __init__(self) -> None:
            self.tools: list[Any] = []

    assert not is_tool_source(Listed())


def test_mcp_server_is_a_tool_source() -> None:
    from kernel_agent.tools.mcp import McpServer

    server = McpServer.stdio("python -m nothing", namespace="n")
    source: ToolSource = server  # checked by mypy: McpServer has the protocol's shape
    assert is_tool_source(source) and not source.started


def test_start_sources_starts_only_sources_not_started_and_returns_them() -> None:
    a, b, already = FakeSource("a"), FakeSource("b"), FakeSource("c")
    asyncio.run(already.start())

    started = asyncio.run(start_sources([a, "not a source", already, b]))

    assert started == [a, b] and a.starts == b.starts == 1 and already.starts == 1
    registry = ToolRegistry([a, b])
    assert [t.qualified_name for t in registry] == ["a.ping", "b.ping"]


def test_a_failing_start_closes_the_ones_started_before_it() -> None:
    a, bad, c = FakeSource("a"), FakeSource("bad", fail_start=True), FakeSource("c")

    with pytest.raises(OSError, match="bad cannot start"):
        asyncio.run(start_sources([a, bad, c]))

    assert a.closes == 1 and not a.started and c.starts == 0 and bad.closes == 0


def test_close_sources_closes_all_and_never_raises() -> None:
    sources = [FakeSource("a", fail_close=True), FakeSource("b")]
    for source in sources:
        asyncio.run(source.start())

    asyncio.run(close_sources(sources))

    assert [s.closes for s in sources] == [1, 1] and not sources[1].started
