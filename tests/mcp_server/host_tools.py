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


_FLAGS: set[str] = set()


@tool(namespace="host", read_only=True)
def flag_is_set(name: str) -> bool:
    """Whether set_flag(name) was called (by any session of this server)."""
    return name in _FLAGS


@tool(namespace="host")
def set_flag(name: str) -> None:
    """Set a flag every session of this server sees (lets one client's cell wait for another client's call)."""
    _FLAGS.add(name)


TOOLS = [process_id, add, delete_record, flag_is_set, set_flag]
