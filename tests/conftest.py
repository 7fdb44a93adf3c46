"""Shared fixtures: real sandboxed kernels, one per test unless a test shares one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel_agent import Session


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace directory for one test."""
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
async def session(workspace: Path) -> AsyncIterator[Session]:
    """A started session with the default (strict) sandbox policy."""
    async with Session(workspace, default_timeout=60) as started:
        yield started


def sandbox_processes(run_dir: Path | None = None) -> list[int]:
    """PIDs of host processes of kernel-agent sandboxes (only the one using ``run_dir`` if given)."""
    marker = str(run_dir).encode() if run_dir is not None else b"kernel_agent.kernel"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


class LoopStallMonitor:
    """The longest time the host's event loop could not run a task (beyond the tick's own sleep)."""

    def __init__(self, tick: float = 0.02) -> None:
        self.tick = tick
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last - self.tick)
            last = now

    async def __aenter__(self) -> LoopStallMonitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
