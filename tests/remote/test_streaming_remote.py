"""Live output from a kernel on a Jupyter Server (over its websocket), while the cell runs."""

from __future__ import annotations

import asyncio

from kernel_agent import Session, tool
from kernel_agent.runtime.remote import JupyterServer
from kernel_agent.runtime.streaming import OutputChunk

from .conftest import RunningServer

SEEN: dict[str, asyncio.Event] = {}


@tool
async def wait_until_seen() -> bool:
    """Return once the host has seen the cell's first line (the cell is blocked in this call until then)."""
    await SEEN["first"].wait()
    return True


async def test_output_streams_from_a_server_kernel_while_the_cell_runs(jupyter_server: RunningServer) -> None:
    SEEN["first"] = asyncio.Event()
    chunks: list[OutputChunk] = []

    def on_output(chunk: OutputChunk) -> None:
        chunks.append(chunk)
        if "first" in chunk.text:
            SEEN["first"].set()

    server = JupyterServer(jupyter_server.url, token=jupyter_server.token)
    async with Session(server=server, tools=[wait_until_seen], notebook=False) as session:
        result = await session.execute("print('first', flush=True)\nassert tools.wait_until_seen()\nprint('second')",
                                       on_output=on_output)
    assert result.ok, result
    assert "".join(chunk.text for chunk in chunks if chunk.output_type == "stream") == "first\nsecond\n"
