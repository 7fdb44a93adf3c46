"""close() or a second start() while start() waits (review of issue 15: the SDK is now made in a worker thread).

close() found no kernel to stop and returned; start() then went on, launched a kernel and began the notebook
for a session that was closed, and that kernel ran until someone closed the session a second time.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from kernel_agent import Session, tool
from kernel_agent.errors import SessionClosedError
from kernel_agent.runtime.kernel import Kernel
from kernel_agent.session import session as session_module
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


async def test_two_starts_at_once_launch_one_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both passed the 'no kernel yet' check while the SDK was made in a thread: two kernels were launched, the
    session kept the second, and close stopped only that one (the first ran on, held by nothing)."""
    launched: list[Kernel] = []
    launch = session_module.ColdLaunch.acquire

    async def counted(self: session_module.ColdLaunch, holder: Any) -> Kernel:  # the real launch, counted
        kernel = await launch(self, holder)
        launched.append(kernel)
        return kernel

    monkeypatch.setattr(session_module.ColdLaunch, "acquire", counted)
    (tmp_path / "ws").mkdir()
    session = Session(tmp_path / "ws", notebook=False, default_timeout=60)
    try:
        assert await asyncio.gather(session.start(), session.start()) == [session, session]
        assert (await session.execute("1 + 1")).result == "2"
    finally:
        await session.close()
        for kernel in launched[1:]:
            await kernel.kill()
    assert len(launched) == 1
    assert not launched[0].alive()
