"""close() while start() waits (review of issue 15: the tool registry and SDK are now made in a worker thread).

close() found no kernel to stop and returned; start() then went on, launched a kernel and began the notebook
for a session that was closed, and that kernel ran until someone closed the session a second time.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import SessionClosedError
from kernel_agent.tools.tool import Tool


@tool
def ping() -> str:
    """Answer pong."""
    return "pong"


class SlowToList:
    """Tools whose listing waits for the test: the session is held inside the SDK's worker thread."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    @property
    def tools(self) -> list[Tool]:
        self.entered.set()
        self.release.wait(120)
        return [ping.__kernel_agent_tool__]  # type: ignore[attr-defined]


async def test_a_session_closed_while_its_tools_are_prepared_launches_no_kernel(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()  # the caller's own workspace: close leaves it, so nothing else stops the start
    slow = SlowToList()
    session = Session(tools=[slow], workspace=tmp_path / "ws", notebook=tmp_path / "s.ipynb", default_timeout=60)
    starting = asyncio.create_task(session.start())
    assert await asyncio.to_thread(slow.entered.wait, 120)
    await session.close()
    slow.release.set()
    try:
        with pytest.raises(SessionClosedError, match="closed while it was starting"):
            await starting
        assert not session.started  # no kernel runs for the closed session
    finally:
        await session.close()
    with pytest.raises(SessionClosedError):
        await session.start()
