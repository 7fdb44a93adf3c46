"""A cell's live output against a slow ``on_output`` callback: what waits for it stays bounded.

The cell's output cap bounds what a cell keeps, but ``clear_output`` starts
that budget again: a cell that prints its cap and clears, over and over,
sends without end. Stream text merged into the last waiting chunk (and
display data held by waiting chunks) grew host memory for as long as the
callback was held up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel_agent import Session
from kernel_agent.runtime import streaming
from kernel_agent.runtime.streaming import OutputChunk, OutputStream

FLOOD = """\
from IPython.display import clear_output, display
for _ in range(20):
    print("x" * 100_000, flush=True)
    display({"application/json": {"v": "y" * 100_000}}, raw=True)
    clear_output()
print("END", flush=True)
"""


async def test_a_flood_with_clear_output_behind_a_slow_callback_waits_within_a_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "MAX_PENDING_CHARS", 300_000, raising=False)  # before the fix: absent
    release, holding = asyncio.Event(), asyncio.Event()
    got: list[OutputChunk] = []
    real_put = OutputStream.put

    def put(self: OutputStream, chunk: OutputChunk) -> None:
        real_put(self, chunk)
        if chunk.output_type == "stream" and "END" in chunk.text:  # the whole flood reached the host's queue
            release.set()

    async def slow(chunk: OutputChunk) -> None:
        got.append(chunk)
        holding.set()
        await release.wait()

    monkeypatch.setattr(OutputStream, "put", put)
    workspace = tmp_path / "work"
    workspace.mkdir()
    async with Session(workspace, notebook=False, max_output_bytes=150_000) as session:
        result = await session.execute(FLOOD, on_output=slow)
    assert result.ok, result.error
    delivered = sum(len(chunk.text) + sum(len(str(v)) for v in chunk.data.values()) for chunk in got)
    assert delivered <= 300_000 + 200_000  # the bound, and the chunk the callback held while the rest waited
    assert any(chunk.output_type == "note" and "were not delivered here" in chunk.text for chunk in got)
