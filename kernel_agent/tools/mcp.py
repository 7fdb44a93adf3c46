"""MCP servers as kernel-agent tools.

An :class:`McpServer` connects to one `Model Context Protocol`_ server (a
local command over stdio, or a remote one over streamable HTTP), lists all
its tools and turns each into a :class:`~kernel_agent.tools.tool.Tool` in
one namespace. The model's code calls them like any other tool; the call
runs on the host, which forwards it to the server::

    async with McpServer.stdio("mcp-server-time") as time_server:   # namespace "mcp_time"
        time_server.tools      # [Tool mcp_time.get_current_time, Tool mcp_time.convert_time]

Built on the official ``mcp`` SDK (2.x), which is imported only when a server
is started, so this module can be imported without it.

What a tool call returns
------------------------
The kernel's code gets back, from the server's ``CallToolResult``:

* an error result (``isError``): :class:`McpToolError` is raised, with the
  server's own text as the message (the bridge turns it into a ``ToolError``
  in the kernel, so the model can read it and correct itself);
* structured content (``structuredContent``): that value, usually a dict;
* otherwise the content blocks: a single text block is returned as its text
  (a ``str``); no block at all as ``None``; anything else as a list in which
  text blocks are ``str`` and the other blocks are dicts:

  - image/audio: ``{"type": "image" | "audio", "mime_type": str, "data": bytes}``
    (``data`` decoded from base64);
  - embedded resource: ``{"type": "resource", "uri": str, "mime_type": str | None}``
    plus ``"text": str`` or ``"data": bytes``;
  - resource link: ``{"type": "resource_link", "uri": str, "name": str,
    "mime_type": str | None, "description": str | None}``.

Failures are split by whose fault they are: :class:`McpToolError` when the
server answered that the call failed (including a JSON-RPC error such as an
unknown tool), :class:`McpToolTimeout` (also a :class:`TimeoutError`) when it
did not answer within ``call_timeout``, and
:class:`~kernel_agent.errors.McpServerError` when the server itself is gone
(its process exited, the HTTP connection closed) or was never started.

Names
-----
The namespace is the ``namespace=`` given, else the server's own name
(``serverInfo.name``) made into a lower_snake identifier (``"mcp-time"`` ->
``mcp_time``), because it becomes an attribute of ``tools`` in the kernel.
Tools keep the server's names (``"get-config"`` stays ``get-config``): the
name is what calls are recorded and sent under, and the registry picks the
Python identifier the kernel sees. ``Tool.source`` is ``"mcp:<serverInfo.name>"``.

Annotations
-----------
``readOnlyHint`` and ``destructiveHint`` become ``Tool.read_only`` and
``Tool.destructive`` with the MCP defaults: a tool that is not read-only and
does not say ``destructiveHint: false`` counts as destructive, as the spec
says, so ``ask_for_destructive`` asks before calling it.

.. _Model Context Protocol: https://modelcontextprotocol.io
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import keyword
import logging
import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from kernel_agent.errors import McpServerError, ToolDefinitionError
from kernel_agent.tools.tool import Tool, tool_from_schema

if TYPE_CHECKING:
    import mcp_types
    from mcp import ClientSession

__all__ = ["McpServer", "McpToolError", "McpToolTimeout"]

logger = logging.getLogger(__name__)

_STDERR_KEEP = 16_384  # bytes of a stdio server's stderr kept for error messages
_STDERR_TAIL_LINES = 20
_MAX_LIST_PAGES = 1000  # a server whose cursor never ends must not hang start()
_CLOSE_GRACE = 15.0  # seconds for a graceful shutdown before it is cancelled


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


# Command names that mean "the Python running kernel-agent" (see McpServer.stdio).
_THIS_PYTHON = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})

class McpServer:
    """A connection to one MCP server whose tools become a kernel-agent namespace.

    Make one with :meth:`stdio` or :meth:`http`, then ``await start()`` (or use
    ``async with``). The SDK's transports and session are async context
    managers that must be entered and exited by the same task, so one owner
    task holds them from :meth:`start` to :meth:`close`; tool calls from any
    task (or another event loop) go through the session it holds.
    """

    def __init__(
        self,
        *,
        transport: str,
        command: list[str] | None = None,
        url: str | None = None,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        call_timeout: float = 60.0,
    ) -> None:
        """Use :meth:`stdio` or :meth:`http` instead; this only records the configuration."""
        if namespace is not None:
            _check_namespace(namespace)
        if startup_timeout <= 0 or call_timeout <= 0:
            raise ValueError("startup_timeout and call_timeout must be positive")
        self._transport = transport
        self._command = command
        self._url = url
        self._namespace = namespace
        self._env = dict(env) if env is not None else None
        self._cwd = os.fspath(cwd) if cwd is not None else None
        self._headers = dict(headers) if headers is not None else None
        self._startup_timeout = float(startup_timeout)
        self._call_timeout = float(call_timeout)
        # connection state, owned by the task running _own()
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._session: ClientSession | None = None
        self._stderr: _StderrTail | None = None
        self._failure: BaseException | None = None  # why the owner task ended early
        self._server_name: str | None = None
        self._server_version: str | None = None
        self._tools: list[Tool] | None = None

    # -- construction ------------------------------------------------------------------

    @classmethod
    def stdio(
        cls,
        command: str | Sequence[str],
        *,
        namespace: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        call_timeout: float = 60.0,
    ) -> McpServer:
        """A server run as a subprocess speaking MCP on its stdin/stdout.

        ``command`` is an argument list, or a string split like a shell would
        (``shlex``; no shell runs). A bare ``python`` or ``python3`` is this
        host's interpreter (``sys.executable``), so ``"python -m server"``
        finds a server installed in the same environment as kernel-agent. The server gets the SDK's minimal
        environment (HOME, LOGNAME, PATH, SHELL, TERM, USER) plus ``env``, so
        secrets in the host's environment do not leak to it unless passed.
        Its stderr is kept (the last few KB) for error messages and logged at
        DEBUG level on ``kernel_agent.tools.mcp``.
        """
        argv = shlex.split(command) if isinstance(command, str) else [os.fspath(part) for part in command]
        if not argv or not argv[0]:
            raise ValueError("an MCP server command cannot be empty")
        if argv[0] in _THIS_PYTHON:
            # `python -m some_server` means this interpreter (its venv has the server installed),
            # not whichever `python` comes first on PATH: that one may lack the package.
            argv = [sys.executable, *argv[1:]]
        return cls(transport="stdio", command=argv, namespace=namespace, env=env, cwd=cwd,
                   startup_timeout=startup_timeout, call_timeout=call_timeout)

    @classmethod
    def http(
        cls,
        url: str,
        *,
        namespace: str | None = None,
        headers: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        call_timeout: float = 60.0,
    ) -> McpServer:
        """A remote server on MCP's streamable HTTP transport (``url`` is its endpoint, e.g. ``.../mcp``).

        ``headers`` go with every request (an ``Authorization`` header, for example).
        """
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"an MCP server URL must start with http:// or https://, not {url!r}")
        return cls(transport="http", url=url, namespace=namespace, headers=headers,
                   startup_timeout=startup_timeout, call_timeout=call_timeout)

    # -- state ----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`close` has not been called since."""
        return self._session is not None

    @property
    def name(self) -> str:
        """The namespace: ``namespace=`` if given, else the server's name as a lower_snake identifier."""
        if self._namespace is not None:
            return self._namespace
        if self._server_name is None:
            raise McpServerError(f"the namespace of MCP server {self._target} comes from the server; "
                                 "call start() first, or pass namespace=")
        return _identifier(self._server_name) or "mcp"

    @property
    def server_info(self) -> dict[str, str | None]:
        """The server's self-reported name and version (None before start)."""
        return {"name": self._server_name, "version": self._server_version}

    @property
    def tools(self) -> list[Tool]:
        """All the server's tools as kernel-agent Tools (after :meth:`start`)."""
        if self._tools is None:
            raise McpServerError(f"MCP server {self._target} is not started: await start() before asking for its tools")
        return list(self._tools)

    @property
    def _target(self) -> str:
        """The command or URL, for messages."""
        if self._command is not None:
            return f"`{shlex.join(self._command)}`"
        return f"at {self._url}"

    def __repr__(self) -> str:
        namespace = self._namespace or _identifier(self._server_name or "") or None
        return (f"McpServer({self._transport} {self._target}, namespace={namespace!r}, "
                f"started={self.started})")

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> Self:
        """Connect, run the MCP handshake and list every tool (all pages); a no-op when started.

        Raises McpServerError, saying what failed with the command or URL and
        the end of the server's stderr, when the server cannot be started,
        reached, initialized or listed within ``startup_timeout``.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop.is_closed():
            # started under an event loop that has since ended (asyncio.run returned): that connection is gone
            self._loop = self._task = self._session = None
        if self._loop is not None and self._loop is not loop and self._task is not None:
            raise McpServerError(f"MCP server {self._target} was started on another event loop; "
                                 "start and close it on that loop")
        if self._lock is None or self._loop is not loop:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._session is not None:
                return self
            await self._reset()
            self._loop = loop
            ready: asyncio.Future[None] = loop.create_future()
            self._stop = asyncio.Event()
            self._failure = None
            self._tools = None
            self._task = task = loop.create_task(self._own(ready), name=f"kernel-agent mcp {self._target}")
            try:
                await asyncio.shield(ready)
            except asyncio.CancelledError:
                # start() itself was cancelled: do not leave a half-started server behind.
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                if ready.done() and not ready.cancelled():
                    ready.exception()  # retrieved: nobody else will ask
                self._task = None
                self._session = None
                raise
            except BaseException:
                await self._finish_owner()
                self._task = None
                raise
            return self

    async def close(self) -> None:
        """Disconnect; a stdio server is asked to exit (stdin closed), then terminated, and reaped.

        Idempotent. After closing, :meth:`start` connects afresh.
        """
        task = self._task
        if task is None:
            return
        owner = self._loop
        if owner is not None and owner is not asyncio.get_running_loop():
            if owner.is_closed() or not owner.is_running():
                # The owner's loop is gone and took the task (and the SDK's cleanup) with it.
                self._task = None
                self._session = None
                return
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.close(), owner))
            return
        if self._stop is not None:
            self._stop.set()
        await self._finish_owner()
        self._task = None
        self._session = None
        self._failure = None  # closed on purpose: later calls say "closed", not why it broke

    async def _finish_owner(self) -> None:
        """Wait for the owner task to wind down, cancelling it if a graceful close hangs."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), _CLOSE_GRACE)
        except TimeoutError:
            logger.warning("MCP server %s did not shut down within %s s; cancelling its connection",
                           self._target, _CLOSE_GRACE)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the owner reported it through `ready` or the log
            logger.debug("MCP server %s: owner task ended with %s", self._target, _describe(exc))

    async def _reset(self) -> None:
        if self._task is not None:
            if self._stop is not None:
                self._stop.set()
            await self._finish_owner()
        self._task = None
        self._session = None

    # -- the owner task -------------------------------------------------------------------

    async def _own(self, ready: asyncio.Future[None]) -> None:
        """Hold the transport and session from start to close, in this one task (anyio requires it)."""
        import anyio
        import mcp_types as types
        from mcp import ClientSession

        self._stderr = None  # a new process, a new stderr: never quote the previous one's
        stack = contextlib.AsyncExitStack()
        error: BaseException | None = None
        try:
            async with stack:
                read_stream, write_stream = await self._open_transport(stack)
                session = ClientSession(read_stream, write_stream, message_handler=self._on_message,
                                        logging_callback=self._on_log)
                await stack.enter_async_context(session)
                with anyio.fail_after(self._startup_timeout):
                    initialized = await session.initialize()
                    listed = await self._list_all_tools(session, types)
                self._server_name = initialized.server_info.name if initialized.server_info else None
                self._server_version = initialized.server_info.version if initialized.server_info else None
                self._tools = self._build_tools(listed)
                self._session = session
                ready.set_result(None)
                assert self._stop is not None
                await self._stop.wait()
                self._session = None
        except asyncio.CancelledError:
            self._session = None
            if not ready.done():
                ready.cancel()
            raise
        except (KeyboardInterrupt, SystemExit):
            self._session = None
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none escapes as a traceback
            self._session = None
            error = exc
        finally:
            if self._stderr is not None:
                await self._stderr.wait_closed(0.5 if error is not None else 0.0)
                self._stderr.close()
        if error is None:
            return
        self._failure = error
        if not ready.done():
            ready.set_exception(self._start_error(error))
            return
        logger.warning("the connection to MCP server %s failed: %s", self._target, _describe(_leaf(error)))

    async def _open_transport(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        """Enter the SDK transport on ``stack``; returns its (read, write) streams."""
        if self._transport == "http":
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            client = httpx2.AsyncClient(
                headers=self._headers,
                timeout=httpx2.Timeout(self._startup_timeout, read=max(300.0, self._call_timeout + 5.0)),
            )
            await stack.enter_async_context(client)
            assert self._url is not None
            streams = await stack.enter_async_context(streamable_http_client(self._url, http_client=client))
            return streams[0], streams[1]

        from mcp import StdioServerParameters, stdio_client

        assert self._command is not None
        if self._cwd is not None and not os.path.isdir(self._cwd):
            raise McpServerError(f"cannot start MCP server {self._target}: its working directory "
                                 f"{self._cwd!r} does not exist")
        params = StdioServerParameters(command=self._command[0], args=self._command[1:], env=self._env,
                                       cwd=self._cwd)
        self._stderr = stderr = _StderrTail(self._target)
        errlog = await stderr.open()
        try:
            streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
        finally:
            errlog.close()  # the child has its copy; ours would keep the pipe from reaching EOF
        return streams[0], streams[1]

    async def _list_all_tools(self, session: ClientSession, types: Any) -> list[mcp_types.Tool]:
        """Every tool, following ``nextCursor`` to the last page."""
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
                raise McpServerError(f"MCP server {self._target} repeated the tools/list cursor {cursor!r}")
            seen.add(cursor)
        raise McpServerError(f"MCP server {self._target} listed more than {_MAX_LIST_PAGES} pages of tools")

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            logger.debug("MCP server %s: transport error: %s", self._target, _describe(message))

    async def _on_log(self, params: Any) -> None:
        logger.debug("MCP server %s log (%s): %s", self._target, getattr(params, "level", "?"),
                     getattr(params, "data", params))

    # -- tools ----------------------------------------------------------------------------

    def _build_tools(self, listed: list[mcp_types.Tool]) -> list[Tool]:
        namespace = self._namespace
        if namespace is None:
            namespace = _identifier(self._server_name or "") or "mcp"
        source = f"mcp:{self._server_name or namespace}"
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
                tool = tool_from_schema(definition, self._handler(mcp_tool.name), namespace=namespace,
                                        takes_mapping=True, source=source)
            except ToolDefinitionError as exc:
                logger.warning("MCP server %s: skipping tool %r: %s", self._target, mcp_tool.name, exc)
                continue
            tools.append(tool)
        return tools

    def _handler(self, mcp_name: str) -> Any:
        async def call_mcp_tool(arguments: dict[str, Any]) -> Any:
            return await self.call_tool(mcp_name, arguments)

        call_mcp_tool.__name__ = call_mcp_tool.__qualname__ = f"mcp_{_identifier(mcp_name) or 'tool'}"
        return call_mcp_tool

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """Call the server's tool ``name`` (its MCP name) and map the result as the module docstring says.

        No argument validation here (Tool.invoke does it); usable from any
        task, or from another event loop than the one that started the server.
        """
        owner = self._loop
        if owner is not None and owner is not asyncio.get_running_loop():
            if owner.is_closed() or not owner.is_running():
                raise McpServerError(f"MCP server {self._target} was started on an event loop that has stopped")
            future = asyncio.run_coroutine_threadsafe(self.call_tool(name, arguments), owner)
            return await asyncio.wrap_future(future)
        session = self._session
        if session is None:
            raise self._not_connected_error()

        import pydantic
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        label = f"{self.name}.{name}"
        try:
            result = await session.call_tool(name, dict(arguments), read_timeout_seconds=self._call_timeout)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise await self._gone_error() from None
            if exc.code == REQUEST_TIMEOUT:
                raise McpToolTimeout(f"{label}: no answer from the MCP server within {self._call_timeout:g} s",
                                     tool=name, server=self.name, code=exc.code) from None
            raise McpToolError(exc.message or f"error {exc.code}", tool=name, server=self.name,
                               code=exc.code) from None
        except pydantic.ValidationError as exc:
            raise McpToolError(f"{label}: the MCP server sent a malformed result: {exc.error_count()} "
                               f"validation error(s), first: {exc.errors()[0]['msg']}",
                               tool=name, server=self.name) from None
        except RuntimeError as exc:  # the SDK's output-schema check, or an input request we cannot answer
            raise McpToolError(f"{label}: {exc}", tool=name, server=self.name) from None
        except (OSError, EOFError) as exc:
            raise await self._gone_error(exc) from None
        return _convert_result(result, tool=name, server=self.name)

    def _not_connected_error(self) -> McpServerError:
        if self._failure is not None:
            return McpServerError(f"the connection to MCP server {self._target} failed: "
                                  f"{_describe(_leaf(self._failure))}{self._stderr_note()}")
        if self._tools is None:
            return McpServerError(f"MCP server {self._target} is not started: await start() first")
        return McpServerError(f"MCP server {self._target} is closed: await start() to reconnect")

    async def _gone_error(self, cause: BaseException | None = None) -> McpServerError:
        if self._transport == "stdio":
            if self._stderr is not None:
                await self._stderr.wait_closed(1.0)  # let the dying words arrive
            return McpServerError(f"MCP server {self._target} exited (its connection closed); "
                                  f"close() and start() it again{self._stderr_note()}")
        why = f": {_describe(cause)}" if cause is not None else ""
        return McpServerError(f"the connection to MCP server {self._target} closed{why}")

    def _stderr_note(self) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"\n--- end of the server's stderr ---\n{tail}" if tail else ""

    def _start_error(self, error: BaseException) -> McpServerError:
        """Turn whatever stopped start() into one McpServerError saying what failed (no traceback)."""
        leaf = _leaf(error)
        if isinstance(leaf, McpServerError):
            return McpServerError(f"{leaf}{self._stderr_note()}")
        what = "start" if self._transport == "stdio" else "reach"
        note = self._stderr_note()
        if isinstance(leaf, FileNotFoundError) and self._command is not None:
            message = f"cannot start MCP server {self._target}: command not found: {self._command[0]!r}"
        elif isinstance(leaf, PermissionError) and self._command is not None:
            message = f"cannot start MCP server {self._target}: {self._command[0]!r} is not executable"
        elif isinstance(leaf, TimeoutError):
            message = (f"MCP server {self._target} did not complete the MCP handshake and tool listing "
                       f"within {self._startup_timeout:g} s (startup_timeout)")
        elif _is_connection_closed(leaf):
            if self._transport == "stdio":
                message = f"MCP server {self._target} exited during startup (before answering initialize)"
            else:
                message = f"MCP server {self._target} closed the connection during startup"
        elif _is_mcp_error(leaf):
            message = f"MCP server {self._target} refused to start the session: {_describe(leaf)}"
        else:
            message = f"cannot {what} MCP server {self._target}: {_describe(leaf)}"
        return McpServerError(message + note)


# -- results ---------------------------------------------------------------------------


def _convert_result(result: Any, *, tool: str, server: str) -> Any:
    """A CallToolResult as kernel code sees it (see the module docstring)."""
    if result.is_error:
        texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
        message = "\n".join(texts).strip() or "the tool reported an error without a message"
        raise McpToolError(message, tool=tool, server=server)
    if result.structured_content is not None:
        return result.structured_content
    items = [_convert_block(block, tool=tool, server=server) for block in result.content]
    if not items:
        return None
    if len(items) == 1 and isinstance(items[0], str):
        return items[0]
    return items


def _convert_block(block: Any, *, tool: str, server: str) -> Any:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return {"type": kind, "mime_type": block.mime_type, "data": _b64(block.data, tool=tool, server=server)}
    if kind == "resource":
        resource = block.resource
        item: dict[str, Any] = {"type": "resource", "uri": str(resource.uri), "mime_type": resource.mime_type}
        if hasattr(resource, "text"):
            item["text"] = resource.text
        else:
            item["data"] = _b64(resource.blob, tool=tool, server=server)
        return item
    if kind == "resource_link":
        return {"type": "resource_link", "uri": str(block.uri), "name": block.name,
                "mime_type": block.mime_type, "description": block.description}
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)  # a block type newer than this code


def _b64(data: str, *, tool: str, server: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise McpToolError(f"{server}.{tool}: the MCP server sent binary content that is not valid base64",
                           tool=tool, server=server) from None


# -- names -------------------------------------------------------------------------------


def _identifier(text: str) -> str:
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


def _check_namespace(namespace: str) -> None:
    parts = namespace.split(".") if isinstance(namespace, str) else [""]
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        raise ToolDefinitionError(f"namespace {namespace!r} is not a Python identifier (dotted names allowed)")


# -- errors --------------------------------------------------------------------------------


def _leaf(error: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups, skipping cancellations."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (inner or list(error.exceptions))[0]
    return error


def _is_mcp_error(error: BaseException) -> bool:
    from mcp import MCPError

    return isinstance(error, MCPError)


def _is_connection_closed(error: BaseException) -> bool:
    from mcp_types import CONNECTION_CLOSED

    return _is_mcp_error(error) and getattr(error, "code", None) == CONNECTION_CLOSED


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# -- a stdio server's stderr -------------------------------------------------------------------


class _StderrTail(asyncio.Protocol):
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
