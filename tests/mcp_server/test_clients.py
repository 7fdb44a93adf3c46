"""Client sessions in-process, on real pooled kernels: the cap on sessions holding a kernel, a session closed
for idleness answering SessionGoneError until a reset, the wall-time budget, and shutdown closing them all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel_agent.mcp_server import (
    BudgetSpentError,
    ClientLimits,
    ServeConfig,
    SessionBusyError,
    SessionGoneError,
    TooManySessionsError,
)
from kernel_agent.mcp_server.clients import ClientSessions
from tests.mcp_server import host_tools


async def test_the_cap_idleness_and_reset_of_client_sessions(tmp_path: Path) -> None:
    clients = ClientSessions(ServeConfig(limits=ClientLimits(max_sessions=1), record_dir=tmp_path))
    await clients.start()
    try:
        first, second = clients.open(None), clients.open(None)
        session = await first.kernel_session()
        with pytest.raises(TooManySessionsError, match="the server's limit is 1"):
            await second.kernel_session()

        # The pool's idle culling closes the session (as after idle_timeout): the client is told by name.
        assert await session.close_if_idle(0.0)
        with pytest.raises(SessionGoneError, match=r"without activity.*call reset_session"):
            await first.execute("1 + 1")
        with pytest.raises(SessionGoneError, match="idle longer than the server's idle timeout"):
            await first.kernel_session()  # what read_file, list_files and the like get
        # A closed session no longer counts against the cap.
        other = await second.kernel_session()
        _, cell = await second.execute("40 + 2")
        assert cell.result == "42"
        await second.end()
        assert other.started is False and second not in clients.clients

        fresh = await first.reset()
        assert fresh is not session and fresh.notebook != session.notebook
        _, cell = await first.execute("'again'")
        assert cell.result == "'again'"
    finally:
        await clients.close()
    assert not clients.clients and first.session is None
    with pytest.raises(SessionGoneError, match="ended"):
        await first.kernel_session()


async def test_a_session_past_its_wall_time_budget_is_refused_by_name(tmp_path: Path) -> None:
    clients = ClientSessions(ServeConfig(limits=ClientLimits(max_session_seconds=1e-9), record_dir=tmp_path))
    await clients.start()
    try:
        client = clients.open(None)
        with pytest.raises(BudgetSpentError, match="max_session_seconds"):
            await client.execute("1")
    finally:
        await clients.close()


async def test_calls_queued_for_one_session_are_bounded(tmp_path: Path) -> None:
    config = ServeConfig(tools=lambda: list(host_tools.TOOLS), limits=ClientLimits(max_pending_calls=1),
                         record_dir=tmp_path)
    clients = ClientSessions(config)
    await clients.start()
    try:
        client = clients.open(None)
        waiting = asyncio.create_task(client.execute(
            "import time\nwhile not tools.host.flag_is_set('queued-go'):\n    time.sleep(0.02)\n'released'"))
        await asyncio.sleep(0)  # a scheduling point, not a wait: the call is now counted
        with pytest.raises(SessionBusyError, match="1 run_python calls of this session"):
            await client.execute("1")
        host_tools._FLAGS.add("queued-go")
        _, cell = await waiting
        assert cell.result == "'released'"
        _, cell = await client.execute("2")  # room again
        assert cell.result == "2"
    finally:
        await clients.close()
