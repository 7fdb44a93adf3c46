"""A started kernel as a session sees it, wherever it runs: the :class:`Kernel` seam.

Implementations: :class:`~kernel_agent.runtime.process.KernelProcess` (a
sandboxed kernel this host launched, the default),
:class:`~kernel_agent.runtime.attached.AttachedKernel` (an existing kernel
reached through its connection file) and
:class:`~kernel_agent.runtime.remote.kernel.RemoteKernel` (a kernel on Jupyter
Server, Kernel Gateway or Enterprise Gateway). Where one comes from is a
:class:`~kernel_agent.runtime.source.KernelSource`.

Ending a kernel has two forms: :meth:`Kernel.kill` ends it (its state is
gone), :meth:`Kernel.detach` only stops talking to it (a kernel on a server
keeps running and keeps its state, to be attached again by id). A kernel the
host launched itself cannot outlive the host, so for it detaching is killing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from kernel_agent.runtime.channels import Channels


class Kernel(Protocol):
    """A started kernel: its channels, whether it lives, and how it ends."""

    #: The kernel's kernel_info reply content (filled when it is ready).
    kernel_info: dict[str, Any]

    @property
    def workspace(self) -> Path | None:
        """The directory the kernel works in, on this host (None: the kernel runs elsewhere)."""
        ...

    @property
    def connection(self) -> Channels | None:
        """The channels to the kernel (None once it was killed or detached)."""
        ...

    @property
    def backend(self) -> dict[str, Any]:
        """Where this kernel runs and how it is reached (recorded in the notebook; never a secret)."""
        ...

    @property
    def enforcement(self) -> dict[str, str]:
        """How each resource limit is enforced, as far as this host knows (limit -> how)."""
        ...

    def alive(self) -> bool:
        """Whether the kernel is still there (cheap: polled while a cell runs)."""
        ...

    def death_reason(self) -> str:
        """Why the kernel ended, as precisely as the host can tell."""
        ...

    async def interrupt(self) -> None:
        """Ask the running cell to stop (an interrupt_request on control, or the server's interrupt)."""
        ...

    async def restarted(self, timeout: float) -> Kernel:
        """A fresh kernel in this one's place (same workspace, or same server kernel id); this one is gone."""
        ...

    async def kill(self) -> None:
        """End the kernel and release what it used (idempotent)."""
        ...

    async def detach(self) -> None:
        """Stop talking to the kernel and leave it running where it can (idempotent)."""
        ...
