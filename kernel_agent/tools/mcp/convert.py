"""MCP -> kernel-agent: tool definitions become Tools, call results become the values kernel code gets.

What a result becomes is described in the package docstring (:mod:`kernel_agent.tools.mcp`).
"""

from __future__ import annotations

import base64
import binascii
import keyword
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from kernel_agent.errors import ToolDefinitionError
from kernel_agent.tools.mcp.errors import McpToolError
from kernel_agent.tools.tool import Tool, tool_from_schema

if TYPE_CHECKING:
    import mcp_types

logger = logging.getLogger("kernel_agent.tools.mcp")


# -- tool definitions ------------------------------------------------------------------------


def build_tools(listed: list[mcp_types.Tool], *, namespace: str, source: str, target: str,
                call: Callable[[str, Mapping[str, Any]], Awaitable[Any]]) -> list[Tool]:
    """The listed MCP tools as Tools in ``namespace``; one the schema check refuses is skipped with a warning.

    ``call(mcp_name, arguments)`` calls a tool on the server (``McpServer.call_tool``).
    """
    tools: list[Tool] = []
    for mcp_tool in listed:
        annotations = mcp_tool.annotations
        read_only = bool(annotations and annotations.read_only_hint)
        destructive_hint = annotations.destructive_hint if annotations else None
        definition = {
            "name": mcp_tool.name,
            "description": mcp_tool.description or mcp_tool.title
            or (annotations.title if annotations else None) or "",
            "input_schema": mcp_tool.input_schema,
            "output_schema": mcp_tool.output_schema,
            "annotations": {
                "readOnlyHint": read_only,
                # MCP default: a tool that is not read-only may be destructive unless it says otherwise.
                "destructiveHint": (not read_only) and (destructive_hint is not False),
            },
        }
        try:
            tool = tool_from_schema(definition, _handler(call, mcp_tool.name), namespace=namespace,
                                    takes_mapping=True, source=source)
        except ToolDefinitionError as exc:
            logger.warning("MCP server %s: skipping tool %r: %s", target, mcp_tool.name, exc)
            continue
        tools.append(tool)
    return tools


def _handler(call: Callable[[str, Mapping[str, Any]], Awaitable[Any]], mcp_name: str) -> Any:
    async def call_mcp_tool(arguments: dict[str, Any]) -> Any:
        return await call(mcp_name, arguments)

    call_mcp_tool.__name__ = call_mcp_tool.__qualname__ = f"mcp_{identifier(mcp_name) or 'tool'}"
    return call_mcp_tool


# -- results ---------------------------------------------------------------------------


def convert_result(result: Any, *, tool: str, server: str) -> Any:
    """A CallToolResult as kernel code sees it (see the package docstring)."""
    if result.is_error:
        texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
        message = "\n".join(texts).strip() or "the tool reported an error without a message"
        raise McpToolError(message, tool=tool, server=server)
    if result.structured_content is not None:
        return result.structured_content
    items = [convert_block(block, tool=tool, server=server) for block in result.content]
    if not items:
        return None
    if len(items) == 1 and isinstance(items[0], str):
        return items[0]
    return items


def convert_block(block: Any, *, tool: str, server: str) -> Any:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return {"type": kind, "mime_type": block.mime_type, "data": b64(block.data, tool=tool, server=server)}
    if kind == "resource":
        resource = block.resource
        item: dict[str, Any] = {"type": "resource", "uri": str(resource.uri), "mime_type": resource.mime_type}
        if hasattr(resource, "text"):
            item["text"] = resource.text
        else:
            item["data"] = b64(resource.blob, tool=tool, server=server)
        return item
    if kind == "resource_link":
        return {"type": "resource_link", "uri": str(block.uri), "name": block.name,
                "mime_type": block.mime_type, "description": block.description}
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)  # a block type newer than this code


def b64(data: str, *, tool: str, server: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise McpToolError(f"{server}.{tool}: the MCP server sent binary content that is not valid base64",
                           tool=tool, server=server) from None



# -- names -------------------------------------------------------------------------------


def identifier(text: str) -> str:
    """``text`` as a lower_snake Python identifier ("" when nothing usable is left)."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    snake = re.sub(r"[^0-9A-Za-z]+", "_", snake).strip("_").lower()
    if not snake:
        return ""
    if snake[0].isdigit():
        snake = f"mcp_{snake}"
    if keyword.iskeyword(snake):
        snake += "_"
    return snake


def check_namespace(namespace: str) -> None:
    parts = namespace.split(".") if isinstance(namespace, str) else [""]
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        raise ToolDefinitionError(f"namespace {namespace!r} is not a Python identifier (dotted names allowed)")

