"""Cells that will not stop: interrupted, or killed after the grace period, with the state kept when possible.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_agent import CellStatus, Session

from .support import (
    HostBaseline,
    assert_host_healthy,
    assert_session_healthy,
    describe,
    sandbox_tree,
    wait_until_gone,
)

# --------------------------------------------------------------------------
# Cells that will not stop
# --------------------------------------------------------------------------


async def test_infinite_loop_is_interrupted_and_state_survives(session: Session, host_baseline: HostBaseline) -> None:
    """Attack: `while True: pass`. The timeout interrupts it; the kernel and its variables survive."""
    await session.execute("kept = 42")
    cell = await session.execute("while True:\n    pass", timeout=2)
    assert cell.status is CellStatus.TIMEOUT and cell.timed_out and not cell.state_lost, describe(cell)
    assert (await session.execute("kept")).result == "42"
    assert_host_healthy(host_baseline)


@pytest.mark.parametrize(
    "stubborn",
    [
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass",
        "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
    ],
    ids=["ignores-SIGINT", "swallows-KeyboardInterrupt", "stops-itself"],
)
async def test_uninterruptible_cell_is_killed_after_grace(
    workspace: Path, host_baseline: HostBaseline, stubborn: str
) -> None:
    """Attack: a cell that defeats the interrupt. Killed after the grace; state_lost; old sandbox gone; session works."""
    async with Session(workspace, default_timeout=60, interrupt_grace=1.0) as session:
        await session.execute("kept = 1")
        old = sandbox_tree(session)
        cell = await session.execute(stubborn, timeout=1)
        assert cell.status is CellStatus.TIMEOUT and cell.timed_out, describe(cell)
        assert cell.kernel_restarted and cell.state_lost
        assert wait_until_gone(old) == []
        await assert_session_healthy(session)
        assert (await session.execute("'kept' in dir()")).result == "False"
    assert_host_healthy(host_baseline)
