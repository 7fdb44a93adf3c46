"""A low-level MCP server on stdio that pages its tool list and returns every content type.

Used to test pagination, tool-name sanitising, the result mapping and a
server that dies mid-session.
"""

from __future__ import annotations

import base64
import os
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

PAGE_SIZE = 2
OBJECT: dict[str, Any] = {"type": "object", "properties": {}}

TOOLS = [
    types.Tool(name="echo", description="Echo the text back.",
               input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    types.Tool(name="mixed", description="Text, an image and audio.", input_schema=OBJECT),
    types.Tool(name="resources", description="Embedded resources and a resource link.", input_schema=OBJECT),
    types.Tool(name="empty", description="No content at all.", input_schema=OBJECT),
    types.Tool(name="get-config", description="Structured content without an output schema.", input_schema=OBJECT,
               annotations=types.ToolAnnotations(read_only_hint=True)),
    types.Tool(name="die", description="Write to stderr and exit.", input_schema=OBJECT,
               annotations=types.ToolAnnotations(destructive_hint=True)),
]

PNG = b"\x89PNG\r\n\x1a\nfake"
WAV = b"RIFF....WAVEfake"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    start = int(params.cursor) if params is not None and params.cursor else 0
    end = start + PAGE_SIZE
    return types.ListToolsResult(tools=TOOLS[start:end], next_cursor=str(end) if end < len(TOOLS) else None)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = params.arguments or {}
    content: list[types.ContentBlock]
    if params.name == "echo":
        return types.CallToolResult(content=[types.TextContent(text=arguments["text"])])
    if params.name == "mixed":
        content = [
            types.TextContent(text="a picture"),
            types.ImageContent(data=b64(PNG), mime_type="image/png"),
            types.AudioContent(data=b64(WAV), mime_type="audio/wav"),
        ]
        return types.CallToolResult(content=content)
    if params.name == "resources":
        content = [
            types.EmbeddedResource(resource=types.TextResourceContents(uri="mem://a.txt", mime_type="text/plain",
                                                                       text="alpha")),
            types.EmbeddedResource(resource=types.BlobResourceContents(uri="mem://b.bin",
                                                                       mime_type="application/octet-stream",
                                                                       blob=b64(b"\x00\x01"))),
            types.ResourceLink(uri="file:///tmp/c.txt", name="c.txt", mime_type="text/plain"),
        ]
        return types.CallToolResult(content=content)
    if params.name == "empty":
        return types.CallToolResult(content=[])
    if params.name == "get-config":
        return types.CallToolResult(content=[types.TextContent(text='{"debug": true}')],
                                    structured_content={"debug": True})
    if params.name == "die":
        print("paged server: dying on request", file=sys.stderr, flush=True)
        os._exit(3)
    return types.CallToolResult(content=[types.TextContent(text=f"unknown tool {params.name}")], is_error=True)


server = Server("Paged Tools!", version="1.0", on_list_tools=list_tools, on_call_tool=call_tool,
                instructions="\n  Paging test tools: echo, every content type, a server that dies.\nSecond line.")


async def main() -> None:
    print("paged server: starting", file=sys.stderr, flush=True)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
