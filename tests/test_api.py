"""The public API is one curated list, and the in-kernel runtime stays independent of the host."""

from __future__ import annotations

import subprocess
import sys

import kernel_agent

EXPECTED_PUBLIC_NAMES = {
    "__version__", "Session", "SyncSession", "JupyterServer", "JupyterServerError", "ServerUnreachableError",
    "ServerAuthError", "KernelNotFoundError", "CellResult", "CellError", "CellStatus",
    "SandboxPolicy", "SandboxMode", "ResourceLimits", "KernelAgentError", "SandboxError",
    "SandboxUnavailableError", "SandboxPolicyError", "UnconfinedWarning", "KernelStartError",
    "SessionClosedError", "SessionOptionError", "WorkspaceError", "ToolDefinitionError", "McpServerError",
    "tool", "tool_from_schema", "tool_from_function", "Tool", "ToolRegistry", "McpServer",
    "OpenApiSource", "OpenApiError",
    "ToolCall", "CallStatus", "ProgressEvent", "Decision", "CallRequest", "ask_for_destructive",
    "KernelPool", "PoolError",
    "PackagePolicy", "PackageError", "PackageNotAllowedError", "PackageInstallError", "PythonEnvironmentError",
    "Agent", "AgentEvent", "AgentResult", "Step", "StopReason", "Pricing", "ImageLimits", "Usage", "model_from_spec",
    "ScriptedModel", "AnthropicModel", "OpenAIModel",
    "ModelError", "ModelConfigError", "ModelUnreachableError", "ModelResponseError",
    "RecordingError", "RecordLocationError", "UnusableRecordError", "audit_notebook", "AuditReport", "replay",
    "ReplayReport",
}


def test_public_names_are_exactly_the_curated_list() -> None:
    """Everything in __all__ resolves, and nothing else is advertised."""
    assert set(kernel_agent.__all__) == EXPECTED_PUBLIC_NAMES
    for name in kernel_agent.__all__:
        assert getattr(kernel_agent, name) is not None


def test_errors_form_one_tree() -> None:
    """Every host exception is a KernelAgentError, so callers can catch by meaning."""
    for name in ("SandboxError", "SandboxUnavailableError", "SandboxPolicyError", "KernelStartError",
                 "SessionClosedError", "SessionOptionError", "WorkspaceError", "ToolDefinitionError", "McpServerError", "PoolError",
                 "ModelError", "ModelConfigError", "ModelUnreachableError", "ModelResponseError",
                 "RecordingError", "RecordLocationError", "UnusableRecordError", "PackageError",
                 "PackageNotAllowedError", "PackageInstallError", "PythonEnvironmentError"):
        assert issubclass(getattr(kernel_agent, name), kernel_agent.KernelAgentError)
    assert issubclass(kernel_agent.SandboxUnavailableError, kernel_agent.SandboxError)
    assert issubclass(kernel_agent.ModelConfigError, kernel_agent.ModelError)
    assert issubclass(kernel_agent.PackageNotAllowedError, kernel_agent.PackageError)
    assert issubclass(kernel_agent.PythonEnvironmentError, kernel_agent.SandboxPolicyError)


def test_kernel_runtime_imports_no_host_code() -> None:
    """Importing the in-kernel package loads no host module: only itself, the protocol layer (what both processes
    agree on, standard library only) and _version (the process boundary is real)."""
    probe = ("import sys, kernel_agent.kernel.limits, kernel_agent.kernel.agent_kernel, kernel_agent.kernel.bridge\n"
             "import kernel_agent.kernel.replay\n"
             "host = [m for m in sys.modules if m.startswith('kernel_agent.')"
             " and not m.startswith(('kernel_agent.kernel', 'kernel_agent.protocol')) and m != 'kernel_agent._version']\n"
             "print(host)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
