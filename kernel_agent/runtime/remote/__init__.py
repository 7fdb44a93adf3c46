"""Kernels on Jupyter Server, Kernel Gateway or Enterprise Gateway: REST for their lifecycle, a websocket for messages.

:class:`JupyterServer` starts, attaches to, interrupts, restarts and shuts
down kernels; each is a :class:`RemoteKernel` (the
:class:`~kernel_agent.runtime.kernel.Kernel` seam) whose channels are a
:class:`WebSocketChannels`. :class:`ServerLaunch` and :class:`ServerAttach`
hand them to sessions as kernel sources. Errors: :mod:`.errors`.
"""

from kernel_agent.runtime.remote.errors import (
    JupyterServerError,
    KernelNotFoundError,
    KernelSpecNotFoundError,
    ServerAuthError,
    ServerHTTPError,
    ServerUnreachableError,
    ServerURLError,
)
from kernel_agent.runtime.remote.kernel import RemoteKernel, ServerKernel
from kernel_agent.runtime.remote.server import JupyterServer
from kernel_agent.runtime.remote.source import ServerAttach, ServerLaunch
from kernel_agent.runtime.remote.websocket import WebSocketChannels

__all__ = [
    "JupyterServer",
    "JupyterServerError",
    "KernelNotFoundError",
    "KernelSpecNotFoundError",
    "RemoteKernel",
    "ServerAttach",
    "ServerAuthError",
    "ServerHTTPError",
    "ServerKernel",
    "ServerLaunch",
    "ServerURLError",
    "ServerUnreachableError",
    "WebSocketChannels",
]
