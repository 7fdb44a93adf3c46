"""Send an execute_request and wait for its reply, the kernel's death or a deadline: written once.

A session's cells, the silent tool-SDK install and the pool's warm-up all
run code this way; they differ only in what they do with the outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kernel_agent.runtime.channels import Message, Request
from kernel_agent.runtime.kernel import Kernel

#: How a wait for an execute reply ended.
WaitOutcome = Literal["replied", "timeout", "died"]

# How often a waiting execution checks that its kernel is still alive.
LIVENESS_POLL_SECONDS = 0.1
# While a reply is overdue, a kernel_info nudge after 2, 4, 8 ... up to 60 s (see await_reply).
_FIRST_NUDGE_SECONDS = 2.0
_MAX_NUDGE_SECONDS = 60.0


def send_execute(
    kernel: Kernel,
    code: str,
    *,
    silent: bool,
    on_iopub: Callable[[Message], None] = lambda message: None,
    wants_content: Callable[[int], bool] = lambda size: True,
) -> Request:
    """Send ``code`` to the kernel's shell; a silent one keeps no history and shows no execution count."""
    connection = kernel.connection
    if connection is None:
        raise RuntimeError("the kernel has no connection (not started, or killed)")
    return connection.send(
        "shell", "execute_request",
        {"code": code, "silent": silent, "store_history": not silent, "user_expressions": {},
         "allow_stdin": False, "stop_on_error": False},
        on_iopub=on_iopub, wants_content=wants_content)


async def await_reply(kernel: Kernel, reply: asyncio.Future[Any], deadline: float | None) -> WaitOutcome:
    """Wait for the reply, the deadline (``time.monotonic()``), or the kernel's death, whichever comes first.

    While a reply is overdue the kernel is nudged with a kernel_info
    request now and then (2, 4, 8 ... 60 s): ipykernel 7's shell stream can
    miss the wake-up of a request that arrives while it sends a reply
    (ipykernel #1554), and any later message makes it read what is waiting.
    """
    nudge_after = _FIRST_NUDGE_SECONDS
    next_nudge = time.monotonic() + nudge_after
    while True:
        connection = kernel.connection
        if time.monotonic() >= next_nudge and connection is not None:
            connection.forget(connection.send("shell", "kernel_info_request", {}))
            nudge_after = min(nudge_after * 2, _MAX_NUDGE_SECONDS)
            next_nudge = time.monotonic() + nudge_after
        wait = LIVENESS_POLL_SECONDS
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return "timeout"
        done, _ = await asyncio.wait({reply}, timeout=wait)
        if done:
            return "replied"
        if not kernel.alive():
            return "died"


@dataclass
class SilentRun:
    """How a silent execution ended: ``outcome``, and the reply's content when it replied."""

    outcome: WaitOutcome
    content: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the kernel replied and the code raised nothing."""
        return self.outcome == "replied" and self.content.get("status") == "ok"


async def run_silently(
    kernel: Kernel,
    code: str,
    timeout: float,
    *,
    on_iopub: Callable[[Message], None] = lambda message: None,
    wants_content: Callable[[int], bool] = lambda size: True,
) -> SilentRun:
    """Run ``code`` silently (no history, no execution count) and wait at most ``timeout`` seconds for it."""
    request = send_execute(kernel, code, silent=True, on_iopub=on_iopub, wants_content=wants_content)
    try:
        outcome = await await_reply(kernel, request.reply, time.monotonic() + timeout)
    finally:
        if kernel.connection is not None:
            kernel.connection.forget(request)
    content = request.reply.result()["content"] if outcome == "replied" else {}
    if not isinstance(content, dict):  # the kernel's: a reply whose content is not an object is an empty one
        content = {}
    return SilentRun(outcome, content)
