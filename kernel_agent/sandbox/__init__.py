"""How a kernel process is launched and confined (host side)."""

from kernel_agent.sandbox.policy import ResourceLimits, SandboxMode, SandboxPolicy

__all__ = ["ResourceLimits", "SandboxMode", "SandboxPolicy"]
