"""Output floods and huge messages: host memory and event-loop time stay bounded.

Attacks run from inside a real sandboxed kernel; the host is checked afterwards (see support.py)."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from kernel_agent import CellResult, CellStatus, Session

from ..conftest import LoopStallMonitor, PeakRss
from .support import (
    HostBaseline,
    MiB,
    assert_host_healthy,
    assert_session_healthy,
    describe,
    module_loop,
)

# serial: host RSS is what is measured, and the floods load the machine (tests/run_suite.py runs these alone).
pytestmark = pytest.mark.serial

# --------------------------------------------------------------------------
# Output floods and huge messages
# --------------------------------------------------------------------------


@dataclass
class FloodOutcome:
    """What the host observed while a kernel flooded it with output."""

    cell: CellResult
    rss_growth_after: int
    peak_rss_growth: int
    max_loop_gap: float
    elapsed: float
    health: CellResult


async def _flood(root: Path, code: str, timeout: float) -> FloodOutcome:
    workspace = root / "workspace"
    workspace.mkdir()
    async with Session(workspace, default_timeout=60) as session:
        await session.execute("1")
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        started = time.monotonic()
        async with LoopStallMonitor() as stalls:
            with PeakRss() as rss:
                cell = await session.execute(code, timeout=timeout)
        elapsed = time.monotonic() - started
        health = await session.execute("1 + 1", timeout=30)
    gc.collect()
    return FloodOutcome(cell, psutil.Process().memory_info().rss - rss_before, rss.growth, stalls.max_gap,
                        elapsed, health)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def print_flood(tmp_path_factory: pytest.TempPathFactory) -> FloodOutcome:
    """The kernel prints 1 MB lines forever; the cell has a 5 s timeout."""
    return await _flood(tmp_path_factory.mktemp("print-flood"), "while True:\n    print('x' * 10**6)", timeout=5)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def message_flood(tmp_path_factory: pytest.TempPathFactory) -> FloodOutcome:
    """The kernel sends 60 MB display messages (just under the host's 64 MiB cap); the cell has a 3 s timeout."""
    code = "from IPython.display import display\nfor i in range(4):\n    display({'text/plain': 'x' * 60_000_000}, raw=True)"
    return await _flood(tmp_path_factory.mktemp("message-flood"), code, timeout=3)


@module_loop
async def test_output_flood_does_not_balloon_host_memory(print_flood: FloodOutcome, host_baseline: HostBaseline) -> None:
    """Attack: `while True: print('x' * 10**6)`. Host RSS stays bounded, the timeout stops it, the session works."""
    assert print_flood.cell.status is CellStatus.TIMEOUT and print_flood.cell.timed_out, describe(print_flood.cell)
    assert print_flood.rss_growth_after < 300 * MiB
    assert print_flood.peak_rss_growth < 300 * MiB
    assert print_flood.health.result == "2", describe(print_flood.health)
    assert_host_healthy(host_baseline)


@module_loop
async def test_output_flood_loss_is_reported(print_flood: FloodOutcome) -> None:
    """Attack: `while True: print('x' * 10**6)`. The result must say that output was dropped (dropped_output_bytes)."""
    assert print_flood.cell.dropped_output_bytes > 0


@module_loop
async def test_huge_output_messages_do_not_stall_the_host(message_flood: FloodOutcome) -> None:
    """Attack: four 60 MB display messages. None is kept, the loss is said, and the session answers afterwards.

    How long the host's loop waited meanwhile is a figure, not an assertion: bench/bench_hostile.py and
    bench/bench_scale.py measure it next to a baseline in the same run."""
    assert not any(o.get("output_type") == "display_data" for o in message_flood.cell.outputs)
    assert "output" in message_flood.cell.stderr and "kernel-agent" in message_flood.cell.stderr
    assert message_flood.health.result == "2", describe(message_flood.health)


RAW_IOPUB_FLOOD = """
# Skip ipykernel's output path: sign one 60 MB stream message with the kernel's own key and push
# the same frames again and again, far faster than the host can verify them.
kernel = get_ipython().kernel
message = kernel.session.msg("stream", {"name": "stdout", "text": "x" * 60_000_000}, parent=kernel.get_parent())
frames = kernel.session.serialize(message)
for _ in range(16):
    kernel.iopub_socket.send_multipart(frames)
"""


async def test_huge_output_messages_do_not_balloon_host_memory(tmp_path: Path, host_baseline: HostBaseline) -> None:
    """Attack: re-send one signed 60 MB iopub message 16 times. The host's peak RSS grows by less than 300 MB."""
    flood = await _flood(tmp_path, RAW_IOPUB_FLOOD, timeout=10)
    assert flood.health.result == "2", describe(flood.health)
    assert_host_healthy(host_baseline)
    assert flood.rss_growth_after < 300 * MiB
    assert flood.peak_rss_growth < 300 * MiB, f"host RSS peaked {flood.peak_rss_growth / MiB:.0f} MB up"


async def test_oversized_output_message_does_not_break_the_session(
    session: Session, host_baseline: HostBaseline
) -> None:
    """Attack: one 80 MB display message (over the host's cap). It is dropped and counted; later cells still work."""
    cell = await session.execute(
        "from IPython.display import display\ndisplay({'text/plain': 'x' * 80_000_000}, raw=True)", timeout=30
    )
    assert cell.status is CellStatus.OK, describe(cell)
    assert_host_healthy(host_baseline)
    await assert_session_healthy(session)
    assert cell.dropped_output_bytes > 0
