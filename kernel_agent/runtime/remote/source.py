"""Kernels from a Jupyter server as a :class:`~kernel_agent.runtime.source.KernelSource`: started, or attached by id."""

from __future__ import annotations

from kernel_agent.runtime.remote.kernel import RemoteKernel
from kernel_agent.runtime.remote.server import JupyterServer
from kernel_agent.runtime.source import KernelLease
from kernel_agent.sandbox.policy import SandboxPolicy


class ServerLaunch:
    """A source that starts a new kernel on the server for each holder (the server's kernelspec confines it)."""

    def __init__(self, server: JupyterServer, startup_timeout: float, *, policy: SandboxPolicy | None = None) -> None:
        self.server = server
        self.startup_timeout = startup_timeout
        self._policy = policy or SandboxPolicy()

    @property
    def policy(self) -> SandboxPolicy:
        """The policy the session asked for; the kernel runs under the server's kernelspec, not this."""
        return self._policy

    async def acquire(self, holder: KernelLease) -> RemoteKernel:
        """Start a kernel on the server and wait until it answers (one that never does is shut down)."""
        return await self.server.start_kernel(timeout=self.startup_timeout)

    def release(self, holder: KernelLease) -> None:
        """Nothing to forget: the server keeps the record of its kernels."""


class ServerAttach:
    """A source that hands out one existing kernel of the server, by id (its state is what it is)."""

    def __init__(self, server: JupyterServer, kernel_id: str, startup_timeout: float, *,
                 policy: SandboxPolicy | None = None) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.startup_timeout = startup_timeout
        self._policy = policy or SandboxPolicy()

    @property
    def policy(self) -> SandboxPolicy:
        """The policy the session asked for; the kernel runs under whatever it was started with."""
        return self._policy

    async def acquire(self, holder: KernelLease) -> RemoteKernel:
        """Attach to the kernel (:class:`~kernel_agent.runtime.remote.errors.KernelNotFoundError` if it is gone)."""
        return await self.server.connect(self.kernel_id, timeout=self.startup_timeout)

    def release(self, holder: KernelLease) -> None:
        """Nothing to forget."""
