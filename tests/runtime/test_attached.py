"""Sessions on an existing kernel, reached through its connection file: attach, detach, shut down on request."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel_agent import KernelStartError, SandboxPolicy, Session, SessionOptionError, tool_from_function
from kernel_agent.runtime.process import KernelProcess


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


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


async def test_a_session_attaches_runs_tools_and_detaches_leaving_the_kernel_and_its_state(
        kernel_started_elsewhere: tuple[KernelProcess, Path]) -> None:
    kernel, connection_file = kernel_started_elsewhere
    tools = [tool_from_function(add)]
    async with Session(connection_file=connection_file, tools=tools, notebook=False) as first:
        assert first.backend == {"kind": "connection-file", "connection_file": str(connection_file),
                                 "kernel_name": None}
        result = await first.execute("x = tools.add(40, 2)\nprint(x)")
        assert result.stdout == "42\n", result
        assert [call.result for call in result.tool_calls] == [42]
    assert kernel.alive(), "closing a session on a kernel it did not start must only detach"
    async with Session(connection_file=connection_file, tools=tools, notebook=False) as second:
        result = await second.execute("print(x, tools.add(x, 1))")
        assert result.stdout == "42 43\n", result


async def test_shutdown_on_close_ends_the_kernel(kernel_started_elsewhere: tuple[KernelProcess, Path]) -> None:
    kernel, connection_file = kernel_started_elsewhere
    async with Session(connection_file=connection_file, notebook=False, shutdown_on_close=True) as session:
        assert (await session.execute("print('bye')")).stdout == "bye\n"
    process = kernel._manager.provisioner.process  # type: ignore[union-attr]
    assert process is not None
    assert await asyncio.to_thread(process.wait, 30) is not None


async def test_an_interrupt_reaches_an_attached_kernel(kernel_started_elsewhere: tuple[KernelProcess, Path]) -> None:
    _, connection_file = kernel_started_elsewhere
    async with Session(connection_file=connection_file, notebook=False) as session:
        result = await session.execute("import time\nwhile True: time.sleep(0.05)", timeout=1)
        assert result.status.value == "timeout" and result.error is not None
        assert result.error.ename == "KeyboardInterrupt" and not result.state_lost
        assert (await session.execute("print('still here')")).stdout == "still here\n"


async def test_a_kernel_that_went_away_is_named(kernel_started_elsewhere: tuple[KernelProcess, Path]) -> None:
    kernel, connection_file = kernel_started_elsewhere
    async with Session(connection_file=connection_file, notebook=False) as session:
        await kernel.kill()
        with pytest.raises(KernelStartError, match="started outside kernel-agent"):
            await session.execute("print(1)")


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read the connection file"),
    ("not json", "is not a connection file"),
    ('{"shell_port": "1"}', "bad or missing"),
    ("[1, 2]", "not a JSON object"),
    ("x" * 70_000, "larger than"),
])
async def test_bad_connection_files_are_named(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "kernel.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KernelStartError, match=message):
        await Session(connection_file=path, notebook=False).start()


async def test_a_link_as_connection_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"key": "s3cret"}')
    link = tmp_path / "kernel.json"
    os.symlink(secret, link)
    with pytest.raises(KernelStartError, match="cannot read the connection file") as raised:
        await Session(connection_file=link, notebook=False).start()
    assert "s3cret" not in str(raised.value)


def test_options_that_cannot_go_together_are_named(tmp_path: Path) -> None:
    with pytest.raises(SessionOptionError, match="workspace"):
        Session(tmp_path, connection_file=tmp_path / "k.json")
    with pytest.raises(SessionOptionError, match="restore_on_death"):
        Session(connection_file=tmp_path / "k.json", restore_on_death=True)
