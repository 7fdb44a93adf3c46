"""KernelPool: the warm pool of the runtime layer, handing out started Sessions.

The runtime's :class:`~kernel_agent.runtime.pool.WarmPool` deals in kernels and
leases; this adds what a user asks for, ``await pool.session(**options)``,
here in the session layer so that nothing below imports Session.
"""

from __future__ import annotations

from typing import Any

from kernel_agent.runtime.pool import WarmPool
from kernel_agent.session.session import Session

__all__ = ["KernelPool"]


class KernelPool(WarmPool):
    """Pre-started sandboxed kernels for new sessions; each kernel serves one session, then is destroyed.

    Use it as an async context manager (``async with KernelPool(size=4) as
    pool``) and get started sessions with :meth:`session`. ``size`` spare
    kernels are kept ready; ``policy`` confines every one of them;
    ``workspace_root`` is where their workspaces are made (default: the
    temporary directory, where a dead host's leftovers are reaped);
    ``idle_timeout`` (seconds) closes sessions that ran no cell for that long;
    ``server=JupyterServer(...)`` starts the kernels on a Jupyter Server or
    gateway instead of launching them here.
    """

    async def start(self, *, wait: bool = True) -> KernelPool:
        """Begin filling the pool; with ``wait``, return once it is full (or raise why it cannot fill)."""
        await super().start(wait=wait)
        return self

    async def __aenter__(self) -> KernelPool:
        return await self.start()

    @property
    def sessions(self) -> tuple[Session, ...]:
        """The live sessions this pool handed out (closed ones are forgotten)."""
        return tuple(lease for lease in self.leases if isinstance(lease, Session))

    async def session(self, **options: Any) -> Session:
        """A started :class:`Session` on one of the pool's kernels; ``options`` are Session's (not ``workspace``).

        The session's workspace is the kernel's (``session.workspace``),
        removed on close unless ``keep_workspace=True`` (which needs the
        pool's ``workspace_root``). ``notebook=PATH`` records it as usual.
        """
        return await Session(pool=self, **options).start()
