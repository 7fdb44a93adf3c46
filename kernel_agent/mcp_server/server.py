"""The MCP server: Code Mode tools over a persistent, sandboxed, recorded kernel session per client session.

Tools: ``run_python`` (the cell's bounded observation, plots as images),
``search_tools`` and ``describe_tool`` (progressive discovery of the host
tools the code can call), ``list_files`` and ``read_file`` (what the session
wrote), ``reset_session`` and ``session_info``. Every error a client can cause
comes back as a tool result whose text starts with the error's name
(:mod:`kernel_agent.mcp_server.errors`), never as a traceback.
"""

import asyncio
import base64
import contextlib
import functools
import json
import platform
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, ImageContent, InputRequiredResult, TextContent, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field, ValidationError

from kernel_agent._version import __version__
from kernel_agent.agent.images import images_of_record
from kernel_agent.mcp_server import files
from kernel_agent.mcp_server.catalogue import Catalogue
from kernel_agent.mcp_server.clients import ClientSession, ClientSessions
from kernel_agent.mcp_server.config import ClientLimits, ServeConfig
from kernel_agent.mcp_server.errors import (
    BadArgumentError,
    McpServeError,
    SessionGoneError,
    UnsupportedClientError,
    error_text,
)
from kernel_agent.mcp_server.inert import inert
from kernel_agent.mcp_server.observe import cell_content
from kernel_agent.session.session import Session

_STATE_KEY = "kernel_agent.client"

_RULES = """\
Run Python in a persistent, sandboxed IPython kernel (Python {python}) that belongs to this conversation. \
You get back what the cell printed, the value of its last expression and any error (a short traceback), \
cut to about {limit:,} characters (start and end kept; the whole output is saved in the workspace), \
and the plots it showed as images.
- State persists between calls: variables, imports, functions and files. Build on earlier cells.
- Print only what you need; keep large data in variables and look at summaries.
- Host tools are a Python SDK already imported as `tools`: call `tools.<name>(...)` or \
`tools.<namespace>.<name>(...)` like functions; they run on the host and return Python values. \
search_tools finds tools, describe_tool (or help(tools.<name>) in a cell) shows one's parameters.
- The kernel has no network access. Its working directory is the session's workspace (read_file and \
list_files read it). A cell runs at most {timeout:g} s. Every cell is recorded in an auditable notebook.

{manifest}"""

P = ParamSpec("P")


def named_errors(function: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    """A client-caused error becomes a tool result (``is_error``) that starts with the error's name."""

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return await function(*args, **kwargs)
        except McpServeError as exc:
            return CallToolResult(content=[TextContent(text=error_text(exc))], is_error=True)

    return wrapper


def client_of(context: Context, clients: ClientSessions) -> ClientSession:
    """The client session a request belongs to: one per connection, ended when the connection ends."""
    request = context.request_context
    if request.protocol_version in MODERN_PROTOCOL_VERSIONS:
        raise UnsupportedClientError(
            f"protocol {request.protocol_version} has no sessions, and this server keeps a kernel per client "
            "session: connect with the initialize handshake (protocol 2025-11-25 or earlier)")
    # The SDK keeps per-connection state and teardown on its Connection (``state``, ``exit_stack``); the
    # request context reaches it only through the session until the SDK's context rework exposes it.
    connection = getattr(request.session, "_connection", None)
    state = getattr(connection, "state", None)
    if connection is None or not isinstance(state, dict):
        raise UnsupportedClientError("this MCP SDK does not expose the client's connection")
    client = state.get(_STATE_KEY)
    if not isinstance(client, ClientSession):
        client = clients.open(request.session.client_params.client_info if request.session.client_params else None)
        state[_STATE_KEY] = client
        connection.exit_stack.push_async_callback(client.end)
    return client


class CodeModeServer(MCPServer[ClientSessions]):
    """The SDK's server, with arguments that fail validation (or an unknown tool) named BadArgumentError.

    ``clients`` are its client sessions and their pool: started and closed by the lifespan, and closed
    directly by a transport that must stop without the SDK's help (SIGTERM over stdio).
    """

    clients: ClientSessions

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[ClientSessions, Any] | None = None) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):  # field names and messages only: the values are the client's
                text = "; ".join(f"argument {'.'.join(str(part) for part in error['loc']) or '?'}: {error['msg']}"
                                 for error in cause.errors()[:10])
            else:
                text = str(exc)[:500]
            return CallToolResult(content=[TextContent(text=error_text(BadArgumentError(text)))], is_error=True)


def build_server(config: ServeConfig, catalogue: Catalogue) -> CodeModeServer:
    """The MCP server for ``config``: its tools, and a lifespan that owns the pool and every client session."""

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[ClientSessions]) -> AsyncIterator[ClientSessions]:
        await server.clients.start()
        try:
            yield server.clients
        finally:
            await server.clients.close()

    limits = config.limits
    server = CodeModeServer(
        config.name, version=__version__, lifespan=lifespan, log_level="WARNING",
        instructions=("Code Mode: write Python for run_python; it runs in a sandboxed, recorded kernel that keeps "
                      "its state for this conversation and calls the host tools as a Python SDK."))
    server.clients = ClientSessions(config)

    def clients_of(context: Context) -> ClientSessions:
        clients = context.request_context.lifespan_context
        assert isinstance(clients, ClientSessions)
        return clients

    # Searching thousands of tools and describing one is CPU in a worker thread, holding the GIL the event loop
    # needs: one such call at a time server-wide keeps the loop's share whatever clients send, and each client
    # (but one of the sessionless era) has at most a few calls in flight.
    catalogue_slot = asyncio.Semaphore(1)

    async def catalogue_work(context: Context, work: Callable[[], str]) -> str:
        sessionless = context.request_context.protocol_version in MODERN_PROTOCOL_VERSIONS
        with contextlib.nullcontext() if sessionless else client_of(context, clients_of(context)).side_call():
            async with catalogue_slot:
                return await asyncio.to_thread(work)

    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)

    @server.tool(description=_RULES.format(python=platform.python_version(), limit=limits.observation_limit,
                                           timeout=limits.cell_timeout, manifest=catalogue.manifest),
                 annotations=ToolAnnotations(title="Run Python", destructive_hint=False, open_world_hint=False))
    @named_errors
    async def run_python(
        code: Annotated[str, Field(description="Python source of one cell")], ctx: Context,
    ) -> CallToolResult:
        if len(code) > limits.max_code_chars:
            raise BadArgumentError(f"code is {len(code):,} characters; at most {limits.max_code_chars:,} run")
        client = client_of(ctx, clients_of(ctx))
        with client.approvals.asking_through(ctx):
            session, cell = await client.execute(code)
        return await cell_content(session, cell, limits, client.cells)

    @server.tool(description="Find host tools by words (every tool for an empty query): one line each, with "
                             "the SDK path the code calls.", annotations=read_only)
    @named_errors
    async def search_tools(ctx: Context, query: str = "", limit: Annotated[int, Field(ge=1, le=50)] = 20) -> str:
        return await catalogue_work(ctx, functools.partial(catalogue.search, query, limit))

    @server.tool(description="One host tool's SDK signature and documentation, as help(tools.<name>) shows it.",
                 annotations=read_only)
    @named_errors
    async def describe_tool(name: Annotated[str, Field(max_length=300)], ctx: Context) -> str:
        return await catalogue_work(ctx, functools.partial(catalogue.describe, name))

    @server.tool(description="List a directory of the session's workspace (path relative to it; '' is the "
                             "workspace). Links are shown, never followed.", annotations=read_only)
    @named_errors
    async def list_files(ctx: Context, path: str = "") -> str:
        client = client_of(ctx, clients_of(ctx))
        with client.side_call():
            workspace = _local_workspace(await client.kernel_session())
            entries, total = await asyncio.to_thread(files.list_files, workspace, path)
        more = {"not_listed": total - len(entries)} if total > len(entries) else {}
        return json.dumps({"path": path or ".", "entries": entries, **more}, ensure_ascii=True)

    @server.tool(description=f"Read a file the session wrote (path relative to its workspace): text, or an image "
                             f"for PNG and JPEG; at most {limits.max_read_bytes:,} bytes. Links are not followed.",
                 annotations=read_only)
    @named_errors
    async def read_file(path: str, ctx: Context) -> CallToolResult:
        client = client_of(ctx, clients_of(ctx))
        with client.side_call():
            read = await asyncio.to_thread(files.read_file, _local_workspace(await client.kernel_session()), path,
                                           max(limits.max_read_bytes, limits.image_limits.max_bytes))
            return await _file_content(path, read, limits)

    @server.tool(description="Start over: the session's kernel is stopped (its notebook sealed) and a fresh "
                             "kernel, workspace and notebook take its place. Every variable and file is gone.",
                 annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=False, open_world_hint=False))
    @named_errors
    async def reset_session(ctx: Context) -> str:
        session = await client_of(ctx, clients_of(ctx)).reset()
        return f"A fresh session started; it is recorded in {session.notebook}."

    @server.tool(description="This session's notebook, workspace, budgets and what it used so far (JSON).",
                 annotations=read_only)
    @named_errors
    async def session_info(ctx: Context) -> str:
        client = client_of(ctx, clients_of(ctx))
        session = await client.kernel_session(live=False)
        return json.dumps({
            "live": session.started,
            "session_id": session.id, "notebook": str(session.notebook) if session.notebook else None,
            "workspace": str(session.local_workspace) if session.local_workspace else None,
            "resets": client.generation, "cells": client.cells, "totals": session.totals,
            "approvals": {"asked": client.approvals.asked, "approved": client.approvals.approved},
            "budgets": {"cell_timeout": limits.cell_timeout, "max_cells": limits.max_cells,
                        "max_tool_calls": limits.max_tool_calls, "max_session_seconds": limits.max_session_seconds,
                        "idle_timeout": limits.idle_timeout},
            "tools": len(catalogue.registry),
        }, default=str)

    return server


def _local_workspace(session: Session) -> Path:
    workspace = session.local_workspace
    if workspace is None:
        raise SessionGoneError("this session's kernel runs on a server: its workspace is not on this host")
    return workspace


async def _file_content(path: str, read: files.FileRead, limits: ClientLimits) -> CallToolResult:
    """A file as MCP content: an image within the image limits (checked, downscaled), or text within the read limit."""
    if read.media_type is not None:
        why = "it is larger than the read limit" if read.truncated else "this server sends no images"
        if limits.images and not read.truncated:
            output = {"output_type": "display_data",
                      "data": {read.media_type: base64.b64encode(read.data).decode("ascii")}}
            images = await asyncio.to_thread(images_of_record, [output], [{"output": 0, "sent": True}],
                                             limits.image_limits)
            if images:
                return CallToolResult(content=[ImageContent(data=images[0].data, mime_type=images[0].media_type)])
            why = "it is not a valid image within the image limits"
        return CallToolResult(content=[TextContent(
            text=f"{path} is a {read.media_type} image of {read.size:,} bytes, not sent: {why}")])
    if b"\x00" in read.data:
        return CallToolResult(content=[TextContent(
            text=f"{path} is a binary file of {read.size:,} bytes; read it from run_python code")])
    text = inert(read.data[:limits.max_read_bytes].decode("utf-8", errors="replace"))  # the kernel wrote it
    if read.size > limits.max_read_bytes:
        text += f"\n[{path}: the first {limits.max_read_bytes:,} of {read.size:,} bytes]"
    return CallToolResult(content=[TextContent(text=text)])
