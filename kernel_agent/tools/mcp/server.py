"""The lifecycle of one MCP server connection: start (handshake, tool listing), call, close.

See the package docstring (:mod:`kernel_agent.tools.mcp`) for what calls return and which error means what.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from kernel_agent.errors import McpServerError
from kernel_agent.tools.mcp.convert import build_tools, check_namespace, convert_result, identifier
from kernel_agent.tools.mcp.errors import (
    describe,
    is_connection_closed,
    leaf,
    not_connected_error,
    start_error,
    tool_call_error,
)
from kernel_agent.tools.mcp.transport import (
    StderrTail,
    list_all_tools,
    log_message,
    log_server_log,
    open_http,
    open_stdio,
    stdio_argv,
)
from kernel_agent.tools.tool import Tool

if TYPE_CHECKING:
    import mcp_types
    from mcp import ClientSession

__all__ = ["McpServer"]

logger = logging.getLogger("kernel_agent.tools.mcp")

_CLOSE_GRACE = 15.0  # seconds for a graceful shutdown before it is cancelled


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
            check_namespace(namespace)
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
        self._stderr: StderrTail | None = None
        self._failure: BaseException | None = None  # why the owner task ended early
        self._server_name: str | None = None
        self._server_version: str | None = None
        self._instructions = ""  # the start of what the server says of itself at initialize
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
        return cls(transport="stdio", command=stdio_argv(command), namespace=namespace, env=env, cwd=cwd,
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
        return identifier(self._server_name) or "mcp"

    @property
    def server_info(self) -> dict[str, str | None]:
        """The server's self-reported name and version (None before start)."""
        return {"name": self._server_name, "version": self._server_version}

    @property
    def namespace_descriptions(self) -> dict[str, str]:
        """The namespace's one line for the manifest: the first line of the server's instructions."""
        line = next((text for text in self._instructions.splitlines() if text.strip()), "")
        namespace = self._tools[0].namespace if self._tools else None
        return {namespace: line} if line and namespace else {}

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
        namespace = self._namespace or identifier(self._server_name or "") or None
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
            logger.debug("MCP server %s: owner task ended with %s", self._target, describe(exc))

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
        from mcp import ClientSession

        self._stderr = None  # a new process, a new stderr: never quote the previous one's
        stack = contextlib.AsyncExitStack()
        error: BaseException | None = None
        try:
            async with stack:
                read_stream, write_stream = await self._open_transport(stack)
                session = ClientSession(read_stream, write_stream,
                                        message_handler=functools.partial(log_message, self._target),
                                        logging_callback=functools.partial(log_server_log, self._target))
                await stack.enter_async_context(session)
                with anyio.fail_after(self._startup_timeout):
                    initialized = await session.initialize()
                    listed = await list_all_tools(session, target=self._target)
                self._server_name = initialized.server_info.name if initialized.server_info else None
                self._server_version = initialized.server_info.version if initialized.server_info else None
                instructions = getattr(initialized, "instructions", None)
                self._instructions = instructions[:1_000] if isinstance(instructions, str) else ""
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
        logger.warning("the connection to MCP server %s failed: %s", self._target, describe(leaf(error)))

    async def _open_transport(self, stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
        """Enter the SDK transport on ``stack``; returns its (read, write) streams."""
        if self._transport == "http":
            assert self._url is not None
            return await open_http(stack, self._url, headers=self._headers,
                                   startup_timeout=self._startup_timeout, call_timeout=self._call_timeout)
        assert self._command is not None
        self._stderr = stderr = StderrTail(self._target)
        return await open_stdio(stack, self._command, env=self._env, cwd=self._cwd, stderr=stderr,
                                target=self._target)

    # -- tools ----------------------------------------------------------------------------

    def _build_tools(self, listed: list[mcp_types.Tool]) -> list[Tool]:
        namespace = self._namespace
        if namespace is None:
            namespace = identifier(self._server_name or "") or "mcp"
        return build_tools(listed, namespace=namespace, source=f"mcp:{self._server_name or namespace}",
                           target=self._target, call=self.call_tool)

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

        try:
            result = await session.call_tool(name, dict(arguments), read_timeout_seconds=self._call_timeout)
        except (OSError, EOFError) as exc:
            raise await self._gone_error(exc) from None
        except Exception as exc:
            if is_connection_closed(exc):
                raise await self._gone_error() from None
            error = tool_call_error(exc, tool=name, server=self.name, call_timeout=self._call_timeout)
            if error is None:
                raise
            raise error from None
        return convert_result(result, tool=name, server=self.name)

    def _not_connected_error(self) -> McpServerError:
        return not_connected_error(self._target, failure=self._failure, listed=self._tools is not None,
                                   stderr_note=self._stderr_note())

    async def _gone_error(self, cause: BaseException | None = None) -> McpServerError:
        if self._transport == "stdio":
            if self._stderr is not None:
                await self._stderr.wait_closed(1.0)  # let the dying words arrive
            return McpServerError(f"MCP server {self._target} exited (its connection closed); "
                                  f"close() and start() it again{self._stderr_note()}")
        why = f": {describe(cause)}" if cause is not None else ""
        return McpServerError(f"the connection to MCP server {self._target} closed{why}")

    def _stderr_note(self) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"\n--- end of the server's stderr ---\n{tail}" if tail else ""

    def _start_error(self, error: BaseException) -> McpServerError:
        """Turn whatever stopped start() into one McpServerError saying what failed (no traceback)."""
        return start_error(error, target=self._target, command=self._command, stdio=self._transport == "stdio",
                           startup_timeout=self._startup_timeout, stderr_note=self._stderr_note())
