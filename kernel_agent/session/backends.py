"""Which kernel a session runs on, chosen from its options: launched here, on a server, or an existing one.

- default: a sandboxed kernel launched on this host (cold, or from a pool);
- ``server=JupyterServer(...)``: a kernel started on Jupyter Server, Kernel
  Gateway or Enterprise Gateway (the server's kernelspec confines it), or
  attached by id (:meth:`Session.attach <kernel_agent.Session.attach>`);
- ``connection_file=``: an existing kernel started elsewhere.

Tools always run on this host, whichever it is: the kernel only ever holds
the SDK, so secrets never reach the kernel's machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel_agent.errors import SessionOptionError
from kernel_agent.runtime.attached import ConnectionFileSource
from kernel_agent.runtime.source import KernelSource
from kernel_agent.sandbox.policy import SandboxPolicy

if TYPE_CHECKING:
    from kernel_agent.runtime.remote import JupyterServer


@dataclass
class KernelChoice:
    """Where the session's kernel comes from, when not from this host's own launch or pool."""

    server: JupyterServer | None = None
    connection_file: Path | None = None
    #: The server kernel to attach to instead of starting one (Session.attach).
    attach_id: str | None = None
    #: The SDK hash the kernel's recorded SDK has: the session's tools must generate the same.
    expected_sdk_hash: str | None = None
    shutdown_on_close: bool = True

    @classmethod
    def from_options(cls, server: JupyterServer | None, connection_file: str | os.PathLike[str] | None,
                     shutdown_on_close: bool | None) -> KernelChoice:
        """Check the options that say where the kernel is; a kernel started elsewhere is left running by default."""
        if server is not None and connection_file is not None:
            raise SessionOptionError("give a session either server= or connection_file=, not both")
        path = Path(connection_file).absolute() if connection_file is not None else None
        default = path is None  # a kernel this session did not start is only detached from, unless asked
        return cls(server, path, shutdown_on_close=default if shutdown_on_close is None else shutdown_on_close)

    @property
    def remote(self) -> bool:
        """Whether the kernel runs outside this host's sandbox launch (its workspace is not ours)."""
        return self.server is not None or self.connection_file is not None

    def check(self, *, workspace: object, pool: object, keep_workspace: bool, restore_on_death: bool) -> None:
        """Refuse options that only mean something for a kernel launched here."""
        if not self.remote:
            return
        where = "on a server" if self.server is not None else "from a connection file"
        if pool is not None:
            raise SessionOptionError(f"a session whose kernel is {where} cannot also take one from a pool "
                                     "(KernelPool(server=...) pools server kernels)")
        if workspace is not None or keep_workspace:
            raise SessionOptionError(f"a kernel {where} works in its own directory, where it was started: "
                                     "workspace= and keep_workspace= are for kernels launched on this host")
        if restore_on_death and self.connection_file is not None:
            raise SessionOptionError("restore_on_death needs a kernel kernel-agent can restart; one attached "
                                     "from a connection file was started elsewhere")

    def source(self, policy: SandboxPolicy, startup_timeout: float) -> KernelSource:
        """The kernel source these options name."""
        if self.connection_file is not None:
            return ConnectionFileSource(self.connection_file, policy=policy, startup_timeout=startup_timeout,
                                        shutdown_on_close=self.shutdown_on_close)
        from kernel_agent.runtime.remote import ServerAttach, ServerLaunch

        assert self.server is not None
        if self.attach_id is not None:
            return ServerAttach(self.server, self.attach_id, startup_timeout)
        return ServerLaunch(self.server, startup_timeout)

    def describe_server(self) -> dict[str, Any]:
        """The server's URL (never its token), for errors and the detach note."""
        return {"url": getattr(self.server, "url", None)}
