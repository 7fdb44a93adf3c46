"""A small MCP server on streamable HTTP for the McpServer.http tests.

Binds 127.0.0.1 on a free port itself (no race with the test picking one),
prints ``PORT <n>`` on stdout, then serves ``/mcp`` until killed.
"""

from __future__ import annotations

import socket
import sys
from typing import TypedDict

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("Demo HTTP-Server", version="1.0", log_level="WARNING")


class Sum(TypedDict):
    sum: int


@server.tool()
def add(a: int, b: int) -> Sum:
    """Add two integers; the result is structured content."""
    return {"sum": a + b}


@server.tool(structured_output=False)
def greet(name: str) -> str:
    """Greet someone; the result is a single text item."""
    return f"Hello, {name}!"


@server.tool(structured_output=False)
async def sleep(seconds: float) -> str:
    """Sleep, then answer (for call timeouts)."""
    await anyio.sleep(seconds)
    return "done"


@server.tool(structured_output=False)
def fail(message: str) -> str:
    """Always fail with the given message."""
    raise ToolError(message)


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the port is announced: a client that connects while uvicorn is still starting waits in
    # the backlog instead of being refused (under load the test connected first and failed).
    sock.listen(128)
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    sys.stdout.close()  # the test reads the port line, then nothing more
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
