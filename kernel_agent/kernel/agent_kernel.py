"""The kernel class our kernelspec launches: ipykernel's, with the agent's additions."""

from __future__ import annotations

from ipykernel.ipkernel import IPythonKernel

from kernel_agent._version import __version__


class AgentKernel(IPythonKernel):
    """IPython kernel used by every kernel-agent session."""

    implementation = "kernel-agent"
    implementation_version = __version__
