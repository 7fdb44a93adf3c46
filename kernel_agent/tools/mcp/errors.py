"""The errors of MCP tool calls, and how the SDK's failures are read (nested groups, closed connections)."""

from __future__ import annotations

import asyncio

from kernel_agent.errors import McpServerError

__all__ = ["McpToolError", "McpToolTimeout"]


class McpToolError(Exception):
    """An MCP server answered that a tool call failed; the message is the server's own text.

    A host exception rather than a return value so the bridge reports it to the
    kernel as a ``ToolError`` the model can read and react to.
    """

    def __init__(self, message: str, *, tool: str = "", server: str = "", code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tool = tool  # the tool's name on the server
        self.server = server  # the McpServer's namespace
        self.code = code  # the JSON-RPC error code, when the failure was a protocol error


class McpToolTimeout(McpToolError, TimeoutError):
    """The server did not answer a tool call within ``call_timeout`` seconds (also a :class:`TimeoutError`)."""


def leaf(error: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups, skipping cancellations."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (inner or list(error.exceptions))[0]
    return error


def is_mcp_error(error: BaseException) -> bool:
    """Whether ``error`` is the SDK's MCPError (a JSON-RPC error from the server)."""
    from mcp import MCPError

    return isinstance(error, MCPError)


def is_connection_closed(error: BaseException) -> bool:
    """Whether ``error`` is the SDK's "connection closed" error."""
    from mcp_types import CONNECTION_CLOSED

    return is_mcp_error(error) and getattr(error, "code", None) == CONNECTION_CLOSED


def describe(error: BaseException | None) -> str:
    """``Type: message`` for a log line or an error message."""
    if error is None:
        return "unknown error"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def start_error(error: BaseException, *, target: str, command: list[str] | None, stdio: bool,
                startup_timeout: float, stderr_note: str) -> McpServerError:
    """Turn whatever stopped start() into one McpServerError saying what failed (no traceback)."""
    cause = leaf(error)
    if isinstance(cause, McpServerError):
        return McpServerError(f"{cause}{stderr_note}")
    what = "start" if stdio else "reach"
    note = stderr_note
    if isinstance(cause, FileNotFoundError) and command is not None:
        message = f"cannot start MCP server {target}: command not found: {command[0]!r}"
    elif isinstance(cause, PermissionError) and command is not None:
        message = f"cannot start MCP server {target}: {command[0]!r} is not executable"
    elif isinstance(cause, TimeoutError):
        message = (f"MCP server {target} did not complete the MCP handshake and tool listing "
                   f"within {startup_timeout:g} s (startup_timeout)")
    elif is_connection_closed(cause):
        if stdio:
            message = f"MCP server {target} exited during startup (before answering initialize)"
        else:
            message = f"MCP server {target} closed the connection during startup"
    elif is_mcp_error(cause):
        message = f"MCP server {target} refused to start the session: {describe(cause)}"
    else:
        message = f"cannot {what} MCP server {target}: {describe(cause)}"
    return McpServerError(message + note)


def not_connected_error(target: str, *, failure: BaseException | None, listed: bool,
                        stderr_note: str) -> McpServerError:
    """Why a call finds no session: the connection failed, the server was never started, or it was closed."""
    if failure is not None:
        return McpServerError(f"the connection to MCP server {target} failed: "
                              f"{describe(leaf(failure))}{stderr_note}")
    if not listed:
        return McpServerError(f"MCP server {target} is not started: await start() first")
    return McpServerError(f"MCP server {target} is closed: await start() to reconnect")


def tool_call_error(error: Exception, *, tool: str, server: str, call_timeout: float) -> McpToolError | None:
    """The McpToolError for a failed tools/call, or None when ``error`` is no answer about the call.

    A closed connection is not handled here: it means the server is gone, not that the call failed.
    """
    import pydantic
    from mcp import MCPError
    from mcp_types import REQUEST_TIMEOUT

    label = f"{server}.{tool}"
    if isinstance(error, MCPError):
        if error.code == REQUEST_TIMEOUT:
            return McpToolTimeout(f"{label}: no answer from the MCP server within {call_timeout:g} s",
                                  tool=tool, server=server, code=error.code)
        return McpToolError(error.message or f"error {error.code}", tool=tool, server=server, code=error.code)
    if isinstance(error, pydantic.ValidationError):
        return McpToolError(f"{label}: the MCP server sent a malformed result: {error.error_count()} "
                            f"validation error(s), first: {error.errors()[0]['msg']}", tool=tool, server=server)
    if isinstance(error, RuntimeError):  # the SDK's output-schema check, or an input request we cannot answer
        return McpToolError(f"{label}: {error}", tool=tool, server=server)
    return None
