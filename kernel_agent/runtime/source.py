"""Where a session's kernel comes from: the :class:`KernelSource` seam and the cold launch.

A source hands out a started :class:`~kernel_agent.runtime.kernel.Kernel` to a
holder and is told when the holder is done with it: :class:`ColdLaunch` (a
kernel launched on demand on a given workspace), the warm pool
(:class:`~kernel_agent.runtime.pool.WarmPool`: a kernel launched ahead of time
on a workspace of its own, or started ahead on a server),
:class:`~kernel_agent.runtime.attached.ConnectionFileSource` (an existing
kernel) and the server sources of :mod:`kernel_agent.runtime.remote`
(a kernel started on, or attached from, Jupyter Server or a gateway).

A holder is a :class:`KernelLease`: what a source may ask of whoever holds one
of its kernels (when it was last active, to close itself if idle, to close).
The session satisfies it; the runtime layer never knows what a Session is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kernel_agent.runtime.kernel import Kernel
from kernel_agent.runtime.process import KernelProcess
from kernel_agent.sandbox.policy import SandboxPolicy


class KernelLease(Protocol):
    """Whoever holds a kernel from a source: enough for the source to cull it when idle, or close it."""

    @property
    def id(self) -> str:
        """A stable identifier, for logs."""
        ...

    @property
    def last_activity(self) -> float:
        """``time.monotonic()`` of the holder's last activity."""
        ...

    async def close_if_idle(self, idle_timeout: float) -> bool:
        """Close if idle for ``idle_timeout`` seconds (work in progress is not idleness); return whether it did."""
        ...

    async def close(self) -> None:
        """Close, giving the kernel back (idempotent)."""
        ...


class KernelSource(Protocol):
    """Hands out started kernels: ``await acquire(holder)``, then ``release(holder)`` once the kernel is killed."""

    @property
    def policy(self) -> SandboxPolicy:
        """The sandbox policy every kernel of this source runs under."""
        ...

    async def acquire(self, holder: KernelLease) -> Kernel:
        """A started kernel, unused by anyone else, for ``holder`` (its workspace is ``kernel.workspace``)."""
        ...

    def release(self, holder: KernelLease) -> None:
        """Forget ``holder`` (it closed, or failed to start); the kernel was killed, never handed out again."""
        ...


class ColdLaunch:
    """A :class:`KernelSource` that launches a kernel when asked, on a workspace given up front."""

    def __init__(self, policy: SandboxPolicy, workspace: Path, startup_timeout: float) -> None:
        self._policy = policy
        self.workspace = workspace
        self.startup_timeout = startup_timeout

    @property
    def policy(self) -> SandboxPolicy:
        """The sandbox policy of the kernels it launches."""
        return self._policy

    async def acquire(self, holder: KernelLease) -> KernelProcess:
        """Launch a kernel on the workspace and wait until it answers; nothing survives a failure."""
        kernel = KernelProcess(self._policy, self.workspace)
        await kernel.start(self.startup_timeout)
        return kernel

    def release(self, holder: KernelLease) -> None:
        """Nothing to forget: a cold launch keeps no record of its holders."""
