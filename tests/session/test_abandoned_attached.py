"""A dropped Session attached to a kernel it did not start (a connection file) lets it go, never kills it (review
of kernel_agent.session.abandon: the finalizer must not stop someone else's kernel)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.runtime.process import KernelProcess
from kernel_agent.session import abandon
from tests.runtime import test_attached

kernel_started_elsewhere = test_attached.kernel_started_elsewhere  # the fixture: a kernel and its connection file


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
