"""Tool sources: things that must be started before they have tools, and closed after.

An MCP server is the source we have today; remote tool services of later issues
plug in here. A source is recognised by its shape (:class:`ToolSource`), never
by importing its class, so a session without MCP servers never imports the
``mcp`` SDK. This module is the one place that decides "is this a source that
must be started": the session, resume, the registry and the command line ask
:func:`is_tool_source` and use :func:`start_sources` / :func:`close_sources`.

Plain tools (a :class:`~kernel_agent.tools.tool.Tool`, a function) are not
sources: they need no start and are added to a registry as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Protocol, TypeGuard

from kernel_agent.tools.tool import Tool

__all__ = ["ToolSource", "close_sources", "is_tool_source", "start_sources"]

_MEMBERS = ("start", "close", "started", "tools")


class ToolSource(Protocol):
    """Something that gives tools once started: ``await start()``, read ``tools``, ``await close()``.

    ``tools`` is a read-only property (as on :class:`~kernel_agent.tools.mcp.McpServer`),
    valid after :meth:`start`; what :meth:`start` returns is ignored (McpServer returns itself).
    Not runtime-checkable on purpose: ``isinstance`` would read ``tools``, which raises
    before start; ask :func:`is_tool_source`.
    """

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`close` has not been called since."""
        ...

    @property
    def tools(self) -> list[Tool]:
        """The source's tools (after :meth:`start`)."""
        ...

    async def start(self) -> object:
        """Connect and list the tools; a no-op when started."""
        ...

    async def close(self) -> None:
        """Disconnect; idempotent."""
        ...


def is_tool_source(item: object) -> TypeGuard[ToolSource]:
    """Whether ``item`` is a tool source (has start, close, started and tools), judged by its class.

    The class is inspected, not the instance: reading ``tools`` on a source that
    is not started raises, and ``isinstance`` against a runtime-checkable
    protocol would read it.
    """
    if isinstance(item, type):
        return False
    cls = type(item)
    if not all(hasattr(cls, name) for name in _MEMBERS):
        return False
    return callable(getattr(cls, "start", None)) and callable(getattr(cls, "close", None))


async def start_sources(items: Iterable[Any]) -> list[ToolSource]:
    """Start every item that is a tool source not yet started; return those started here.

    When one fails to start, the ones started here are closed again (never
    raising) and the failure propagates, so nothing half-started survives.
    """
    started: list[ToolSource] = []
    try:
        for item in items:
            if is_tool_source(item) and not item.started:
                await item.start()
                started.append(item)
    except BaseException:
        await close_sources(started)
        raise
    return started


async def close_sources(sources: Iterable[ToolSource]) -> None:
    """Close every source, in the order given; never raises (a failing close is skipped)."""
    for source in list(sources):
        with contextlib.suppress(Exception):
            await source.close()
