"""One kernel session per MCP client session: made on first use, closed when the client goes, capped, budgeted.

An MCP client session is a stdio connection or a streamable-HTTP
``Mcp-Session-Id``: the SDK gives each its own connection object, whose
exit stack it unwinds when the session ends (the client disconnects or
sends DELETE, the HTTP idle timeout fires, the server shuts down). A
:class:`ClientSession` hangs off that connection; its kernel session comes
from the shared warm pool the first time the client needs one, so a client
that only searches tools costs no kernel. The pool's ``idle_timeout``
closes a kernel session nobody used for that long (its notebook sealed);
the client's next cell then gets SessionGoneError, and ``reset_session``
gives it a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

from kernel_agent.errors import SessionClosedError
from kernel_agent.mcp_server.approvals import Approvals
from kernel_agent.mcp_server.config import ClientLimits, ServeConfig
from kernel_agent.mcp_server.errors import (
    BudgetSpentError,
    SessionBusyError,
    SessionGoneError,
    TooManySessionsError,
)
from kernel_agent.runtime.results import CellResult
from kernel_agent.session.pool import KernelPool
from kernel_agent.session.session import Session

logger = logging.getLogger("kernel_agent.mcp_server")

MAX_SIDE_CALLS = 4  # read_file, list_files, search_tools and describe_tool calls of one client session at once
_CLIENT_TEXT_LIMIT = 200  # characters of a client's self-description kept in the record (the client chose them)


class ClientSession:
    """What one MCP client session has: its kernel session (or none yet), its budgets, its approvals."""

    def __init__(self, registry: ClientSessions, number: int, client: dict[str, str]) -> None:
        self.registry = registry
        self.number = number
        self.client = client
        self.approvals = Approvals(registry.config)
        self.session: Session | None = None
        self.generation = 0  # reset_session bumps it: each kernel session of this client has its own notebook
        self.cells = 0
        self.pending = 0  # run_python calls running or waiting for the kernel
        self.side_calls = 0  # read_file, list_files, search_tools and describe_tool calls in flight
        self.started: float | None = None
        self.ended = False
        self._lock = asyncio.Lock()
        self._closing: asyncio.Future[None] | None = None

    async def kernel_session(self, *, live: bool = True) -> Session:
        """The client's kernel session, started from the pool on first use.

        With ``live``, a session that was closed meanwhile (idle timeout) is SessionGoneError.
        """
        if self.ended:
            raise SessionGoneError("this client session has ended")
        async with self._lock:
            if self.ended:  # it ended while this call waited for the lock: a kernel started now would never close
                raise SessionGoneError("this client session has ended")
            if self.session is None:
                self.session = await self.registry.start_session(self)
                self.started, self.cells = time.monotonic(), 0
            if live and not self.session.started:
                raise SessionGoneError("this session was closed (it was idle longer than the server's idle "
                                       "timeout, or the server is stopping); call reset_session for a fresh one")
            return self.session

    @contextlib.contextmanager
    def side_call(self) -> Iterator[None]:
        """Bound this client's calls served in worker threads (read_file, list_files, search_tools, describe_tool):
        each takes a thread every client shares (and up to a megabyte, or CPU), and a client can send hundreds."""
        if self.side_calls >= MAX_SIDE_CALLS:
            raise SessionBusyError(f"{self.side_calls} read_file, list_files, search_tools or describe_tool calls of "
                                   "this session are already in flight; wait for their results")
        self.side_calls += 1
        try:
            yield
        finally:
            self.side_calls -= 1

    async def execute(self, code: str) -> tuple[Session, CellResult]:
        """Run ``code`` in the client's kernel session within its budgets."""
        limits = self.registry.config.limits
        if self.pending >= limits.max_pending_calls:
            raise SessionBusyError(f"{self.pending} run_python calls of this session are already running or "
                                   "waiting for its kernel; wait for their results")
        self.pending += 1
        try:
            return await self._execute(code, limits)
        finally:
            self.pending -= 1

    async def _execute(self, code: str, limits: ClientLimits) -> tuple[Session, CellResult]:
        session = await self.kernel_session(live=False)  # a closed one says why when it is asked to run
        if limits.max_cells is not None and self.cells >= limits.max_cells:
            raise BudgetSpentError(f"this session has run its {limits.max_cells} cells (max_cells); call "
                                   "reset_session for a fresh session")
        timeout = limits.cell_timeout
        if limits.max_session_seconds is not None and self.started is not None:
            left = limits.max_session_seconds - (time.monotonic() - self.started)
            if left <= 0:
                raise BudgetSpentError(f"this session has used its {limits.max_session_seconds:g} s of wall time "
                                       "(max_session_seconds); call reset_session for a fresh session")
            timeout = min(timeout, left)
        self.cells += 1
        try:
            cell = await session.execute(code, timeout=timeout, record_extras={"via": "mcp"})
        except SessionClosedError as exc:
            raise SessionGoneError(f"{exc} (call reset_session for a fresh session)") from None
        return session, cell

    async def reset(self) -> Session:
        """Close the kernel session (its notebook sealed) and start a fresh one, with a new notebook."""
        async with self._lock:
            old, self.session = self.session, None
            if old is not None:
                await old.close()
            if self.ended:
                raise SessionGoneError("this client session has ended")
            self.generation += 1
            self.session = await self.registry.start_session(self)
            self.started, self.cells = time.monotonic(), 0
            return self.session

    async def end(self) -> None:
        """The client went away: close its kernel session (never raises).

        A second call (the server stopping while the client's own end is under way) waits for the same
        close, so nobody returns before the notebook is sealed.
        """
        self.ended = True
        async with self._lock:
            session, self.session = self.session, None
            if session is not None:
                self._closing = asyncio.ensure_future(session.close())
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._closing)
        self.registry.forget(self)


class ClientSessions:
    """Every client session of the server, the warm pool their kernels come from, and the cap on them."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.pool = KernelPool(size=config.pool_size, policy=config.policy, workspace_root=config.workspace_root,
                               idle_timeout=config.limits.idle_timeout)
        self.clients: set[ClientSession] = set()
        self._numbers = itertools.count(1)
        # Clients whose kernel session is being started: they count against the cap from the check on, or
        # clients whose first calls arrive together would all pass it before any of them holds a kernel.
        self._starting: set[ClientSession] = set()
        self._closing = False
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Fill the warm pool before serving: the first client's first cell finds a kernel ready, and a host
        where no sandbox can run fails here, at start, saying why (not at some client's first cell)."""
        await self.pool.start(wait=True)

    def open(self, client_info: Any) -> ClientSession:
        """A new client session (no kernel yet)."""
        client = {key: _bounded_text(getattr(client_info, key, None)) for key in ("name", "version")}
        state = ClientSession(self, next(self._numbers), client)
        self.clients.add(state)
        return state

    def forget(self, client: ClientSession) -> None:
        self.clients.discard(client)

    async def start_session(self, client: ClientSession) -> Session:
        """A kernel session for ``client`` (the lock of the client is held), within the cap."""
        if self._closing:
            raise SessionGoneError("the server is shutting down")
        holding = sum(1 for other in self.clients if other is not client and other.session is not None
                      and other.session.started) + sum(1 for other in self._starting if other is not client)
        limit = self.config.limits.max_sessions
        if holding >= limit:
            raise TooManySessionsError(f"{holding} client sessions already hold a kernel (the server's limit is "
                                       f"{limit}); try again when one ends")
        config = self.config
        self._starting.add(client)  # no await since the check: the reservation and the check are one step
        try:
            return await self.pool.session(
                tools=config.tools(), notebook=True, record_dir=config.record_dir,
                default_timeout=config.limits.cell_timeout, max_tool_calls=config.limits.max_tool_calls,
                tool_policy=client.approvals.policy, approver=client.approvals.approve,
                record_metadata={"mcp": {"client": client.client, "client_session": client.number,
                                         "generation": client.generation}},
                **config.session_options)
        except Exception as exc:  # noqa: BLE001 - a kernel or tool source that would not start: named for the client
            raise SessionGoneError(f"the session could not start: {type(exc).__name__}: {exc}") from None
        finally:
            self._starting.discard(client)  # the caller stores the session before anything else runs

    async def close(self) -> None:
        """Server shutdown: every client's kernel session closed (notebooks sealed), then the pool.

        Idempotent, and a second caller (a signal during the lifespan's own close) waits for the first.
        """
        self._closing = True
        if self._closed is None:
            self._closed = asyncio.ensure_future(self._close_all())
        await asyncio.shield(self._closed)

    async def _close_all(self) -> None:
        await asyncio.gather(*(client.end() for client in list(self.clients)), return_exceptions=True)
        await self.pool.close()


def _bounded_text(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text[:_CLIENT_TEXT_LIMIT]
