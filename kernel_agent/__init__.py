"""kernel-agent: stateful code agents in sandboxed, recorded IPython kernels.

The public API is the list below and nothing else. Names are imported lazily
so that the in-kernel runtime (``python -m kernel_agent.kernel``, run inside
the sandbox) does not pay for, or see, the host-side modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kernel_agent._version import __version__

_EXPORTS = {
    "Session": "kernel_agent.session",
    "KernelPool": "kernel_agent.pool",
    "SyncSession": "kernel_agent.sync",
    "CellResult": "kernel_agent.cell",
    "CellError": "kernel_agent.cell",
    "CellStatus": "kernel_agent.cell",
    "SandboxPolicy": "kernel_agent.sandbox.policy",
    "SandboxMode": "kernel_agent.sandbox.policy",
    "ResourceLimits": "kernel_agent.sandbox.policy",
    "KernelAgentError": "kernel_agent.errors",
    "SandboxError": "kernel_agent.errors",
    "SandboxUnavailableError": "kernel_agent.errors",
    "SandboxPolicyError": "kernel_agent.errors",
    "UnconfinedWarning": "kernel_agent.errors",
    "KernelStartError": "kernel_agent.errors",
    "SessionClosedError": "kernel_agent.errors",
    "PoolError": "kernel_agent.errors",
    "WorkspaceError": "kernel_agent.errors",
    "ToolDefinitionError": "kernel_agent.errors",
    "McpServerError": "kernel_agent.errors",
    "tool": "kernel_agent.tools.tool",
    "tool_from_schema": "kernel_agent.tools.tool",
    "tool_from_function": "kernel_agent.tools.tool",
    "Tool": "kernel_agent.tools.tool",
    "ToolRegistry": "kernel_agent.tools.registry",
    "McpServer": "kernel_agent.tools.mcp",
    "ToolCall": "kernel_agent.tools.calls",
    "CallStatus": "kernel_agent.tools.calls",
    "ProgressEvent": "kernel_agent.tools.calls",
    "Decision": "kernel_agent.tools.policy",
    "CallRequest": "kernel_agent.tools.policy",
    "ask_for_destructive": "kernel_agent.tools.policy",
    "Agent": "kernel_agent.agent",
    "AgentEvent": "kernel_agent.agent",
    "AgentResult": "kernel_agent.agent",
    "Step": "kernel_agent.agent",
    "StopReason": "kernel_agent.agent",
    "Pricing": "kernel_agent.agent",
    "Usage": "kernel_agent.models",
    "model_from_spec": "kernel_agent.models",
    "ScriptedModel": "kernel_agent.models.scripted",
    "AnthropicModel": "kernel_agent.models.anthropic",
    "OpenAIModel": "kernel_agent.models.openai",
    "ModelError": "kernel_agent.errors",
    "ModelConfigError": "kernel_agent.errors",
    "ModelUnreachableError": "kernel_agent.errors",
    "ModelResponseError": "kernel_agent.errors",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from kernel_agent.cell import CellError, CellResult, CellStatus
    from kernel_agent.errors import (
        KernelAgentError,
        KernelStartError,
        SandboxError,
        SandboxPolicyError,
        SandboxUnavailableError,
        SessionClosedError,
        UnconfinedWarning,
        McpServerError,
        PoolError,
        ToolDefinitionError,
        WorkspaceError,
    )
    from kernel_agent.agent import Agent, AgentEvent, AgentResult, Pricing, Step, StopReason
    from kernel_agent.errors import ModelConfigError, ModelError, ModelResponseError, ModelUnreachableError
    from kernel_agent.models import Usage, model_from_spec
    from kernel_agent.models.anthropic import AnthropicModel
    from kernel_agent.models.openai import OpenAIModel
    from kernel_agent.models.scripted import ScriptedModel
    from kernel_agent.tools.calls import CallStatus, ProgressEvent, ToolCall
    from kernel_agent.tools.mcp import McpServer
    from kernel_agent.tools.policy import CallRequest, Decision, ask_for_destructive
    from kernel_agent.tools.registry import ToolRegistry
    from kernel_agent.tools.tool import Tool, tool, tool_from_function, tool_from_schema
    from kernel_agent.pool import KernelPool
    from kernel_agent.sandbox.policy import ResourceLimits, SandboxMode, SandboxPolicy
    from kernel_agent.session import Session
    from kernel_agent.sync import SyncSession


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
