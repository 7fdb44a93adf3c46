"""``kernel-agent sdk``: print the tool SDK and manifest a model would see."""

from __future__ import annotations

import asyncio

import click


@click.command("sdk", short_help="print the tool SDK and manifest a model would see")
@click.option("--tools", multiple=True, metavar="MODULE:OBJECT",
              help="a tool, a list of tools or a ToolRegistry to load (repeatable)")
@click.option("--mcp", multiple=True, metavar="COMMAND",
              help="an MCP server to start over stdio, e.g. 'python -m mcp_server_time' (repeatable)")
def command(tools: tuple[str, ...], mcp: tuple[str, ...]) -> int:
    """Print the tool SDK and manifest a model would see for these tools."""
    return asyncio.run(_sdk(list(tools), list(mcp)))


async def _sdk(tool_specs: list[str], mcp_commands: list[str]) -> int:
    from kernel_agent.tools.loading import load_tools
    from kernel_agent.tools.mcp import McpServer
    from kernel_agent.tools.registry import ToolRegistry
    from kernel_agent.tools.sdkgen import render_sdk

    loaded = load_tools(tool_specs, mcp_commands)
    servers = [item for item in loaded if isinstance(item, McpServer)]
    items = [item for item in loaded if not isinstance(item, McpServer)]
    try:
        for server in servers:
            await server.start()
        print(render_sdk(ToolRegistry([*items, *servers])))
    finally:
        for server in servers:
            await server.close()
    return 0
