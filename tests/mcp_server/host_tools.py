"""Host tools the MCP server tests serve: they show where they run, and one is destructive (for approvals)."""

from __future__ import annotations

import os

from kernel_agent.tools.tool import tool

DELETED: list[str] = []


@tool(namespace="host", read_only=True)
def process_id() -> int:
    """The process id of the process this tool runs in (the MCP server's, on the host)."""
    return os.getpid()


@tool(namespace="host", read_only=True)
def add(a: int, b: int = 1) -> int:
    """Add two integers on the host."""
    return a + b


@tool(namespace="files", destructive=True)
def delete_record(name: str) -> str:
    """Delete a record by name (destructive: needs approval under --ask-destructive)."""
    DELETED.append(name)
    return f"deleted {name}"


TOOLS = [process_id, add, delete_record]
