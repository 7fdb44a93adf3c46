"""What goes wrong when smolagents meets kernel-agent, named (this module does not need smolagents)."""

from __future__ import annotations

from kernel_agent.errors import CellRunningError, KernelAgentError, ToolDefinitionError

INSTALL_HINT = 'the smolagents integration needs smolagents: pip install "kernel-agent[smolagents]"'


class SmolagentsToolError(ToolDefinitionError):
    """A smolagents tool cannot be offered in a kernel-agent session: its inputs or output have no schema
    the bridge can carry (``image``, ``audio``, an unknown type), or its name cannot be a global of the
    kernel (not an identifier, a Python builtin, or a name the kernel's SDK already uses), or the agent's
    tools changed after the session started with other ones."""


class SmolagentsVariableError(KernelAgentError, ValueError):
    """A variable the agent sends to the kernel (``additional_args``, the agent's state) cannot go there:
    its name is no identifier or would hide a tool, or its value cannot cross the bridge (no pickle)."""


class ExecutorBusyError(CellRunningError):
    """The executor was called while one of its steps runs: from another thread (two agents sharing it), or by
    a host tool of that very step calling back into it (a managed agent given its manager's executor), which
    would otherwise wait for itself until the step's timeout. One executor serves one agent, one step at a time;
    likewise a managed agent takes one task at a time (the kernel may call it concurrently)."""
