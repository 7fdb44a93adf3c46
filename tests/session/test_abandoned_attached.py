"""A dropped Session attached to a kernel it did not start (a connection file) lets it go, never kills it (review
of kernel_agent.session.abandon: the finalizer must not stop someone else's kernel)."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel_agent import SandboxPolicy, Session
from kernel_agent.runtime.process import KernelProcess
from kernel_agent.session import abandon


@pytest.fixture
async def kernel_started_elsewhere(tmp_path: Path) -> AsyncIterator[tuple[KernelProcess, Path]]:
    """A sandboxed kernel this test launched, and a connection file for it in a place of the caller's."""
    workspace = tmp_path / "elsewhere"
    workspace.mkdir()
    kernel = KernelProcess(SandboxPolicy(), workspace)
    await kernel.start(30)
    info = dict(kernel._manager.get_connection_info())
    info["key"] = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
    connection_file = tmp_path / "kernel.json"
    connection_file.write_text(json.dumps(info))
    try:
        yield kernel, connection_file
    finally:
        await kernel.kill()


async def test_a_dropped_attached_session_leaves_the_kernel_and_its_state(
        kernel_started_elsewhere: tuple[KernelProcess, Path]) -> None:
    kernel, connection_file = kernel_started_elsewhere
    session = Session(connection_file=connection_file, notebook=False, default_timeout=60)
    await session.start()
    await session.execute("kept = 'still here'")
    with pytest.warns(ResourceWarning, match="garbage-collected without close"):
        del session
        gc.collect()
    await abandon.finished()
    assert kernel.alive()
    async with Session(connection_file=connection_file, notebook=False, default_timeout=60) as again:
        assert (await again.execute("kept")).result == "'still here'"
