"""Wait until a freshly started (or attached) kernel answers: written once for every backend."""

from __future__ import annotations

import asyncio

from kernel_agent.errors import KernelStartError
from kernel_agent.runtime.kernel import Kernel


async def wait_ready(kernel: Kernel) -> None:
    """Wait for a kernel_info reply on shell, then for proof that iopub is subscribed; fill ``kernel_info``.

    Shell requests queue until the socket connects, so one request is
    enough however slow the start. iopub is a PUB/SUB "slow joiner" (over
    zmq; a websocket has the same shape while the server connects): the idle
    status of a request is only seen once the subscription is live, so
    probes are repeated until one is seen (all stay routed until then, so a
    late answer still counts). The caller bounds the wait.
    """
    connection = kernel.connection
    if connection is None:
        raise KernelStartError("the kernel has no connection")
    first = connection.send("shell", "kernel_info_request", {})
    probes = [first]
    try:
        while not first.reply.done():
            if not kernel.alive():
                raise KernelStartError("kernel exited")
            await asyncio.wait({first.reply}, timeout=0.1)
        content = first.reply.result()["content"]
        kernel.kernel_info = content if isinstance(content, dict) else {}
        while not any(probe.idle.is_set() for probe in probes):
            if not kernel.alive():
                raise KernelStartError("kernel exited")
            waiters = [asyncio.ensure_future(probe.idle.wait()) for probe in probes]
            await asyncio.wait(waiters, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            probes.append(connection.send("shell", "kernel_info_request", {}))
    finally:
        for probe in probes:
            connection.forget(probe)
