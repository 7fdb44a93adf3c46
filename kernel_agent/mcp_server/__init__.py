"""``kernel-agent mcp``: Code Mode for any MCP client, over stdio or streamable HTTP.

Each MCP client session gets its own sandboxed kernel (from a warm pool),
workspace and recorded notebook; its model writes Python that calls the
host's tools as an SDK. See docs/mcp.md.
"""

from kernel_agent.mcp_server.catalogue import Catalogue
from kernel_agent.mcp_server.config import ClientLimits, ServeConfig
from kernel_agent.mcp_server.errors import (
    BadArgumentError,
    BudgetSpentError,
    McpServeError,
    SessionBusyError,
    SessionGoneError,
    TooManySessionsError,
    UnsupportedClientError,
)
from kernel_agent.mcp_server.server import build_server

__all__ = [
    "BadArgumentError",
    "BudgetSpentError",
    "Catalogue",
    "ClientLimits",
    "McpServeError",
    "ServeConfig",
    "SessionBusyError",
    "SessionGoneError",
    "TooManySessionsError",
    "UnsupportedClientError",
    "build_server",
]
