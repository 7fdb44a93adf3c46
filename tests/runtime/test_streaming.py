"""OutputStream, on its own: order, merging behind a slow callback, the bound on what waits, failures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kernel_agent.runtime.streaming import MAX_PENDING_CHUNKS, OutputChunk, OutputStream


def out(text: str, name: str = "stdout") -> OutputChunk:
    return OutputChunk("stream", text, name)


async def test_a_plain_function_gets_each_chunk_at_once_in_order() -> None:
    got: list[OutputChunk] = []
    stream = OutputStream(got.append)
    stream.put(out("a"))
    stream.put(OutputChunk("display_data", "<Figure>", data={"text/plain": "<Figure>"}))
    stream.put(out("b", "stderr"))
    assert [chunk.text for chunk in got] == ["a", "<Figure>", "b"]  # no await in between: called inline
    await stream.close()


async def test_what_piles_up_behind_a_slow_coroutine_is_merged_and_bounded() -> None:
    """While the callback is held up: stream text of one name merges into one chunk; past MAX_PENDING_CHUNKS
    waiting chunks the rest is counted, and a note says so once the callback catches up."""
    release, holding = asyncio.Event(), asyncio.Event()
    got: list[OutputChunk] = []

    async def slow(chunk: OutputChunk) -> None:
        got.append(chunk)
        holding.set()
        await release.wait()

    stream = OutputStream(slow)
    stream.put(out("first\n"))
    await holding.wait()
    for i in range(1000):
        stream.put(out(f"{i}\n"))  # one name: all merged into one waiting chunk
    for i in range(2 * MAX_PENDING_CHUNKS):
        stream.put(out("o") if i % 2 else out("e", "stderr"))  # alternating names: one chunk each, bounded
    release.set()
    await stream.close()
    assert got[0].text == "first\n"
    assert got[1].text == "".join(f"{i}\n" for i in range(1000))
    assert len(got) == 1 + MAX_PENDING_CHUNKS + 1
    assert got[-1].output_type == "note" and "were not delivered here" in got[-1].text


async def test_a_raising_callback_is_logged_once_and_not_called_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[OutputChunk] = []

    def broken(chunk: OutputChunk) -> None:
        calls.append(chunk)
        raise ValueError("broken")

    stream = OutputStream(broken)
    with caplog.at_level(logging.WARNING, logger="kernel_agent.streaming"):
        for text in "abc":
            stream.put(out(text))
        await stream.close()
    assert [chunk.text for chunk in calls] == ["a"]
    assert sum("on_output callback raised" in record.message for record in caplog.records) == 1


async def test_a_plain_function_that_returns_a_coroutine_is_awaited_in_order() -> None:
    got: list[str] = []

    async def record(chunk: OutputChunk) -> None:
        await asyncio.sleep(0)
        got.append(chunk.text)

    stream = OutputStream(lambda chunk: record(chunk))
    for text in "abc":
        stream.put(out(text))
    await stream.close()
    assert got == ["a", "bc"]  # the first awaited as returned; what came meanwhile was merged


async def test_a_callback_stuck_past_the_drain_grace_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    never = asyncio.Event()

    async def stuck(chunk: OutputChunk) -> None:
        await never.wait()

    stream = OutputStream(stuck)
    stream.put(out("a"))
    with caplog.at_level(logging.WARNING, logger="kernel_agent.streaming"):
        await stream.close(grace=0.01)
    assert any("did not take the cell's output" in record.message for record in caplog.records)
