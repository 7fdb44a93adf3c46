"""smolagents' CodeAgent running its code in a sandboxed, recorded kernel-agent session.

``CodeAgent(tools=[...], model=model, executor=KernelAgentExecutor())``: the agent's tools stay on the
host and are called through the bridge; see docs/smolagents.md. Needs the ``smolagents`` extra.
"""

from __future__ import annotations

try:
    import smolagents as _smolagents  # noqa: F401 - only to say what is missing, before the modules that need it
except ImportError as exc:  # pragma: no cover - tested in a subprocess without smolagents
    from kernel_agent.integrations.smolagents.errors import INSTALL_HINT

    raise ImportError(INSTALL_HINT) from exc

from kernel_agent.integrations.smolagents.errors import (
    ExecutorBusyError,
    SmolagentsToolError,
    SmolagentsVariableError,
)
from kernel_agent.integrations.smolagents.executor import KernelAgentExecutor
from kernel_agent.integrations.smolagents.tools import tool_from_smolagents

__all__ = ["ExecutorBusyError", "KernelAgentExecutor", "SmolagentsToolError", "SmolagentsVariableError",
           "tool_from_smolagents"]
