"""What the smolagents tests share: a scripted smolagents Model, a pool whose loop runs in a thread, host tools."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from smolagents import Model, Tool
from smolagents.models import ChatMessage, MessageRole
from smolagents.monitoring import TokenUsage

from kernel_agent import KernelPool


class ScriptedCodeModel(Model):  # type: ignore[misc]
    """A smolagents Model that answers each call with the next canned piece of code (in smolagents' <code> tags)."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(model_id="scripted")
        self.replies = list(replies)
        self.prompts: list[str] = []

    def generate(self, messages: list[Any], stop_sequences: list[str] | None = None, **kwargs: Any) -> ChatMessage:
        self.prompts.append(str(messages))
        code = self.replies.pop(0)
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"Thought: the next step.\n<code>\n{code}\n</code>",
                           token_usage=TokenUsage(input_tokens=1, output_tokens=1))


class PriceTool(Tool):  # type: ignore[misc]
    """A host tool with host-only state: a price table and the log of its calls (the kernel sees neither)."""

    name = "unit_price"
    description = "The unit price of an item, in euros."
    inputs = {  # noqa: RUF012 - smolagents reads class attributes
        "item": {"type": "string", "description": "the item's name"},
        "quantity": {"type": "integer", "description": "how many (default 1)", "nullable": True},
    }
    output_type = "number"
    api_key = "host-only-api-key-7f3a9c"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self.threads: set[str] = set()

    def forward(self, item: str, quantity: int = 1) -> float:
        self.calls.append((item, quantity))
        self.threads.add(threading.current_thread().name)
        return {"apple": 0.5, "pear": 0.75, "fig": 2.0}[item] * quantity


@contextmanager
def pool_in_thread(size: int = 2) -> Iterator[KernelPool]:
    """A started KernelPool whose event loop runs in a thread of its own (as a sync smolagents program has it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-pool-loop", daemon=True)
    thread.start()

    async def start() -> KernelPool:
        return await KernelPool(size=size).start()

    pool = asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        yield pool
    finally:
        asyncio.run_coroutine_threadsafe(pool.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
