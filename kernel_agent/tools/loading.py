"""Tools named on a command line: ``MODULE:OBJECT`` specs and MCP server commands, loaded once, the same way."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import Any


def load_object(spec: str) -> object:
    """Import ``MODULE:OBJECT`` (OBJECT may be dotted); the current directory is importable."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:OBJECT, got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def load_tools(specs: Iterable[str] = (), mcp_commands: Iterable[str] = (), *, openapi: Iterable[str] = (),
               openapi_header: Iterable[str] = (), openapi_auth: Iterable[str] = ()) -> list[Any]:
    """The tools ``specs`` name (a tool, a list of tools or a ToolRegistry each), one McpServer per command,
    and one OpenApiSource per ``openapi`` document (see :mod:`kernel_agent.tools.openapi.options`).

    The MCP servers are not started: whoever uses them starts them (a Session does). The OpenAPI
    documents are read and checked here (OpenApiError), before any kernel starts.
    """
    from kernel_agent.tools.mcp import McpServer

    items: list[Any] = []
    for spec in specs:
        loaded = load_object(spec)
        items.extend(loaded if isinstance(loaded, (list, tuple)) else [loaded])
    items.extend(McpServer.stdio(command) for command in mcp_commands)
    openapi = list(openapi)
    if openapi or openapi_header or openapi_auth:
        from kernel_agent.tools.openapi.options import sources_from_options

        items.extend(sources_from_options(openapi, openapi_header, openapi_auth))
    return items
