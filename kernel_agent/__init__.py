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
    "Session": "kernel_agent.session.session",
    "KernelPool": "kernel_agent.session.pool",
    "JupyterServer": "kernel_agent.runtime.remote",
    "JupyterServerError": "kernel_agent.runtime.remote",
    "ServerUnreachableError": "kernel_agent.runtime.remote",
    "ServerAuthError": "kernel_agent.runtime.remote",
    "KernelNotFoundError": "kernel_agent.runtime.remote",
    "SyncSession": "kernel_agent.session.sync",
    "CellResult": "kernel_agent.runtime.results",
    "CellError": "kernel_agent.runtime.results",
    "CellStatus": "kernel_agent.runtime.results",
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
    "SessionOptionError": "kernel_agent.errors",
    "PoolError": "kernel_agent.errors",
    "WorkspaceError": "kernel_agent.errors",
    "ToolDefinitionError": "kernel_agent.errors",
    "McpServerError": "kernel_agent.errors",
    "PythonEnvironmentError": "kernel_agent.errors",
    "PackagePolicy": "kernel_agent.packages",
    "PackageError": "kernel_agent.errors",
    "PackageNotAllowedError": "kernel_agent.errors",
    "PackageInstallError": "kernel_agent.errors",
    "tool": "kernel_agent.tools.tool",
    "tool_from_schema": "kernel_agent.tools.tool",
    "tool_from_function": "kernel_agent.tools.tool",
    "Tool": "kernel_agent.tools.tool",
    "ToolRegistry": "kernel_agent.tools.registry",
    "McpServer": "kernel_agent.tools.mcp",
    "OpenApiSource": "kernel_agent.tools.openapi",
    "OpenApiError": "kernel_agent.errors",
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
    "ImageLimits": "kernel_agent.agent",
    "Usage": "kernel_agent.models",
    "model_from_spec": "kernel_agent.models",
    "ScriptedModel": "kernel_agent.models.scripted",
    "AnthropicModel": "kernel_agent.models.anthropic",
    "OpenAIModel": "kernel_agent.models.openai",
    "ModelError": "kernel_agent.errors",
    "ModelConfigError": "kernel_agent.errors",
    "ModelUnreachableError": "kernel_agent.errors",
    "ModelResponseError": "kernel_agent.errors",
    "RecordingError": "kernel_agent.errors",
    "RecordLocationError": "kernel_agent.errors",
    "UnusableRecordError": "kernel_agent.errors",
    "audit_notebook": "kernel_agent.verify.audit",
    "AuditReport": "kernel_agent.verify.audit",
    "replay": "kernel_agent.verify.replay",
    "ReplayReport": "kernel_agent.verify.replay",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # `X as X`: an explicit re-export, which strict type checkers require
    from kernel_agent.agent import Agent as Agent
    from kernel_agent.agent import AgentEvent as AgentEvent
    from kernel_agent.agent import AgentResult as AgentResult
    from kernel_agent.agent import ImageLimits as ImageLimits
    from kernel_agent.agent import Pricing as Pricing
    from kernel_agent.agent import Step as Step
    from kernel_agent.agent import StopReason as StopReason
    from kernel_agent.errors import KernelAgentError as KernelAgentError
    from kernel_agent.errors import KernelStartError as KernelStartError
    from kernel_agent.errors import McpServerError as McpServerError
    from kernel_agent.errors import ModelConfigError as ModelConfigError
    from kernel_agent.errors import ModelError as ModelError
    from kernel_agent.errors import ModelResponseError as ModelResponseError
    from kernel_agent.errors import ModelUnreachableError as ModelUnreachableError
    from kernel_agent.errors import OpenApiError as OpenApiError
    from kernel_agent.errors import PackageError as PackageError
    from kernel_agent.errors import PackageInstallError as PackageInstallError
    from kernel_agent.errors import PackageNotAllowedError as PackageNotAllowedError
    from kernel_agent.errors import PoolError as PoolError
    from kernel_agent.errors import PythonEnvironmentError as PythonEnvironmentError
    from kernel_agent.errors import RecordingError as RecordingError
    from kernel_agent.errors import RecordLocationError as RecordLocationError
    from kernel_agent.errors import SandboxError as SandboxError
    from kernel_agent.errors import SandboxPolicyError as SandboxPolicyError
    from kernel_agent.errors import SandboxUnavailableError as SandboxUnavailableError
    from kernel_agent.errors import SessionClosedError as SessionClosedError
    from kernel_agent.errors import SessionOptionError as SessionOptionError
    from kernel_agent.errors import ToolDefinitionError as ToolDefinitionError
    from kernel_agent.errors import UnconfinedWarning as UnconfinedWarning
    from kernel_agent.errors import UnusableRecordError as UnusableRecordError
    from kernel_agent.errors import WorkspaceError as WorkspaceError
    from kernel_agent.models import Usage as Usage
    from kernel_agent.models import model_from_spec as model_from_spec
    from kernel_agent.models.anthropic import AnthropicModel as AnthropicModel
    from kernel_agent.models.openai import OpenAIModel as OpenAIModel
    from kernel_agent.models.scripted import ScriptedModel as ScriptedModel
    from kernel_agent.packages import PackagePolicy as PackagePolicy
    from kernel_agent.runtime.remote import JupyterServer as JupyterServer
    from kernel_agent.runtime.remote import JupyterServerError as JupyterServerError
    from kernel_agent.runtime.remote import KernelNotFoundError as KernelNotFoundError
    from kernel_agent.runtime.remote import ServerAuthError as ServerAuthError
    from kernel_agent.runtime.remote import ServerUnreachableError as ServerUnreachableError
    from kernel_agent.runtime.results import CellError as CellError
    from kernel_agent.runtime.results import CellResult as CellResult
    from kernel_agent.runtime.results import CellStatus as CellStatus
    from kernel_agent.sandbox.policy import ResourceLimits as ResourceLimits
    from kernel_agent.sandbox.policy import SandboxMode as SandboxMode
    from kernel_agent.sandbox.policy import SandboxPolicy as SandboxPolicy
    from kernel_agent.session.pool import KernelPool as KernelPool
    from kernel_agent.session.session import Session as Session
    from kernel_agent.session.sync import SyncSession as SyncSession
    from kernel_agent.tools.calls import CallStatus as CallStatus
    from kernel_agent.tools.calls import ProgressEvent as ProgressEvent
    from kernel_agent.tools.calls import ToolCall as ToolCall
    from kernel_agent.tools.mcp import McpServer as McpServer
    from kernel_agent.tools.openapi import OpenApiSource as OpenApiSource
    from kernel_agent.tools.policy import CallRequest as CallRequest
    from kernel_agent.tools.policy import Decision as Decision
    from kernel_agent.tools.policy import ask_for_destructive as ask_for_destructive
    from kernel_agent.tools.registry import ToolRegistry as ToolRegistry
    from kernel_agent.tools.tool import Tool as Tool
    from kernel_agent.tools.tool import tool as tool
    from kernel_agent.tools.tool import tool_from_function as tool_from_function
    from kernel_agent.tools.tool import tool_from_schema as tool_from_schema
    from kernel_agent.verify.audit import AuditReport as AuditReport
    from kernel_agent.verify.audit import audit_notebook as audit_notebook
    from kernel_agent.verify.replay import ReplayReport as ReplayReport
    from kernel_agent.verify.replay import replay as replay


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
