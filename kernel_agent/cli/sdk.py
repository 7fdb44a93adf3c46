"""``kernel-agent sdk``: print the tool SDK and manifest a model would see."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from kernel_agent.cli.openapi import openapi_options


def _with_openapi_options(function: Any) -> Any:
    for option in reversed(openapi_options()):
        function = option(function)
    return function


@click.command("sdk", short_help="print the tool SDK and manifest a model would see")
@click.option("--tools", multiple=True, metavar="MODULE:OBJECT",
              help="a tool, a list of tools or a ToolRegistry to load (repeatable)")
@click.option("--mcp", multiple=True, metavar="COMMAND",
              help="an MCP server to start over stdio, e.g. 'python -m mcp_server_time' (repeatable)")
@_with_openapi_options
def command(tools: tuple[str, ...], mcp: tuple[str, ...], **openapi: tuple[str, ...]) -> int:
    """Print the tool SDK and manifest a model would see for these tools."""
    return asyncio.run(_sdk(list(tools), list(mcp), openapi))


async def _sdk(tool_specs: list[str], mcp_commands: list[str], openapi: dict[str, tuple[str, ...]]) -> int:
    from kernel_agent.cli.terminal_text import terminal_safe
    from kernel_agent.tools.loading import load_tools
    from kernel_agent.tools.mcp import McpServer
    from kernel_agent.tools.registry import ToolRegistry
    from kernel_agent.tools.sdkgen import render_sdk

    loaded = load_tools(tool_specs, mcp_commands, **openapi)
    servers = [item for item in loaded if isinstance(item, McpServer)]
    items = [item for item in loaded if not isinstance(item, McpServer)]
    try:
        for server in servers:
            await server.start()
        # A tool's description comes from a server or a document: no escape sequence reaches the terminal.
        print(terminal_safe(render_sdk(ToolRegistry([*items, *servers]))))
    finally:
        for server in servers:
            await server.close()
    return 0
