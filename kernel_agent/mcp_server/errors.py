"""The errors an MCP client meets, each named: the client's model reads the name and knows what to do next."""

from __future__ import annotations

from kernel_agent.errors import KernelAgentError
from kernel_agent.mcp_server.inert import inert


class McpServeError(KernelAgentError):
    """Something a client asked of ``kernel-agent mcp`` cannot be done; the message says why and what to do."""


class BadArgumentError(McpServeError):
    """A tool was called with an argument that is malformed, too large or names nothing."""


class SessionGoneError(McpServeError):
    """The client's kernel session was closed (idle timeout, a budget, shutdown, or it died at start)."""


class TooManySessionsError(McpServeError):
    """The server already serves its maximum number of client sessions."""


class SessionBusyError(McpServeError):
    """The client already has as many ``run_python`` calls waiting for its kernel as the server allows."""


class BudgetSpentError(McpServeError):
    """The client session has used up one of its budgets (cells, wall time)."""


class UnsupportedClientError(McpServeError):
    """The client speaks a protocol era without sessions: there is no session to keep a kernel for."""


def error_text(error: McpServeError) -> str:
    """How an error reads in a tool result: its name first, so a model can branch on it."""
    # The message may quote what a tool source or the kernel said (why a session could not start): inert.
    return inert(f"{type(error).__name__}: {error}")
