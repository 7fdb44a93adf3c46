"""Opening an MCP server's transport (a stdio subprocess or streamable HTTP), its stderr, and paging tools/list."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kernel_agent.errors import McpServerError
from kernel_agent.tools.mcp.errors import describe

if TYPE_CHECKING:
    import mcp_types
    from mcp import ClientSession

logger = logging.getLogger("kernel_agent.tools.mcp")

_STDERR_KEEP = 16_384  # bytes of a stdio server's stderr kept for error messages
_STDERR_TAIL_LINES = 20
_MAX_LIST_PAGES = 1000  # a server whose cursor never ends must not hang start()

# Command names that mean "the Python running kernel-agent" (see McpServer.stdio).
_THIS_PYTHON = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})


def stdio_argv(command: str | Sequence[str]) -> list[str]:
    """The argument list of a stdio server's command, a bare ``python`` being this interpreter."""
    argv = shlex.split(command) if isinstance(command, str) else [os.fspath(part) for part in command]
    if not argv or not argv[0]:
        raise ValueError("an MCP server command cannot be empty")
    if argv[0] in _THIS_PYTHON:
        # `python -m some_server` means this interpreter (its venv has the server installed),
        # not whichever `python` comes first on PATH: that one may lack the package.
        argv = [sys.executable, *argv[1:]]
    return argv


async def open_http(stack: contextlib.AsyncExitStack, url: str, *, headers: Mapping[str, str] | None,
                    startup_timeout: float, call_timeout: float) -> tuple[Any, Any]:
    """Enter a streamable-HTTP transport on ``stack``; returns its (read, write) streams."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    client = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(startup_timeout, read=max(300.0, call_timeout + 5.0)),
    )
    await stack.enter_async_context(client)
    streams = await stack.enter_async_context(streamable_http_client(url, http_client=client))
    return streams[0], streams[1]


async def open_stdio(stack: contextlib.AsyncExitStack, command: list[str], *, env: Mapping[str, str] | None,
                     cwd: str | None, stderr: StderrTail, target: str) -> tuple[Any, Any]:
    """Start the server process on ``stack`` with its stderr going to ``stderr``; returns its (read, write) streams."""
    from mcp import StdioServerParameters, stdio_client

    if cwd is not None and not os.path.isdir(cwd):
        raise McpServerError(f"cannot start MCP server {target}: its working directory "
                             f"{cwd!r} does not exist")
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(env) if env is not None else None,
                                   cwd=cwd)
    errlog = await stderr.open()
    try:
        streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
    finally:
        errlog.close()  # the child has its copy; ours would keep the pipe from reaching EOF
    return streams[0], streams[1]


async def log_message(target: str, message: Any) -> None:
    """The client session's message handler: transport errors go to the DEBUG log."""
    if isinstance(message, Exception):
        logger.debug("MCP server %s: transport error: %s", target, describe(message))


async def log_server_log(target: str, params: Any) -> None:
    """The client session's logging callback: the server's log messages go to the DEBUG log."""
    logger.debug("MCP server %s log (%s): %s", target, getattr(params, "level", "?"), getattr(params, "data", params))


async def list_all_tools(session: ClientSession, *, target: str) -> list[mcp_types.Tool]:
    """Every tool, following ``nextCursor`` to the last page."""
    import mcp_types as types

    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(_MAX_LIST_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor is not None else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
        if cursor in seen:
            raise McpServerError(f"MCP server {target} repeated the tools/list cursor {cursor!r}")
        seen.add(cursor)
    raise McpServerError(f"MCP server {target} listed more than {_MAX_LIST_PAGES} pages of tools")


class StderrTail(asyncio.Protocol):
    """Reads a stdio server's stderr from a pipe: keeps the end for error messages, logs lines at DEBUG."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._buffer = bytearray()
        self._partial = b""
        self._closed = asyncio.Event()
        self._transport: asyncio.ReadTransport | None = None

    async def open(self) -> Any:
        """Start reading; returns the write end (a file object) to hand to the child as its stderr."""
        read_fd, write_fd = os.pipe()
        try:
            reader = os.fdopen(read_fd, "rb", buffering=0)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        self._transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: self, reader)
        return os.fdopen(write_fd, "w")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _STDERR_KEEP:
            del self._buffer[: len(self._buffer) - _STDERR_KEEP]
        if logger.isEnabledFor(logging.DEBUG):
            *lines, self._partial = (self._partial + data).split(b"\n")
            for line in lines:
                logger.debug("MCP server %s stderr: %s", self._target, line.decode("utf-8", "replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    async def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the server to close its stderr (it exited)."""
        if timeout > 0 and not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), timeout)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def tail(self, lines: int = _STDERR_TAIL_LINES) -> str:
        text = self._buffer.decode("utf-8", "replace").rstrip()
        return "\n".join(text.splitlines()[-lines:])
